/* The flow solver's full-codebook posterior in one pass over the codebook (ardistill.flow.native).

   For each row r of a block, with E_j = logp[rows[r], j] + <yaug[r], CaugT[:, j]> (yaug =
   [rho y, -rho^2 / 2], CaugT = [C, |c|^2]^T) and w = softmax(E):
     D[r, :] = sum_j w_j C_j (float64 out, float32 sums);  wmax[r] = max_j w_j;
     for the rows that may prune, w[r, :] and cnt[r] = #{j : w_j > thr}.
   The PyTorch path computes these with an addmm, a softmax, a GEMM and a count, each a pass
   over the (R, V) block through memory. Here the codebook is walked in tiles of TILE entries,
   each tile used by every row of the block while it sits in L1, with an online softmax (a
   running maximum per row, its sums rescaled when the maximum grows); the weights are written
   only for the rows the solver's pruning reads, in a second pass over just those rows.

   Rows never interact and every row runs the same instruction sequence whatever the block: a
   row's floats do not depend on the rows around it, nor on the thread count (the entry points
   split their rows over torch's OpenMP team, native_team.h). Entries more than 87.3 nats below
   the row's running maximum (and every zero-probability entry, E = -inf) get weight 0 exactly.
   Below: the pruning pass, the float64 pruned steps and certificate, and the solver's step
   loop (ard_flow_step / ard_flow_decide).

   Built by ardistill.flow.native with the machine's compiler (-O3 -march=native, FMA
   contraction but no reassociation, no finite-math assumption: -inf is data here). exp is a
   polynomial, so it vectorises without libmvec and without its slow path for -inf
   arguments. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "native_team.h"
#include "native_vec.h"

#ifndef TILE
#define TILE 512
#endif
#define MAX_D 64
/* tile_update2 sums the denoiser SUM_DIMS dimensions at a time: 2 rows x 8 dimensions of
   accumulators were more than AVX2's 16 registers (spilled: 7-14% slower on the pass) */
#define SUM_DIMS 4

static inline float hsum8i(v8i v) {  /* lanes hold minus counts (masks are -1) */
    return -(float)(((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])));
}
static inline float hsum8(v8f v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
static inline float hmax8(v8f v) {
    float m = v[0];
    for (int l = 1; l < 8; l++) m = v[l] > m ? v[l] : m;
    return m;
}

static inline float exp_nonpos(float x) {
    return exp_nonpos8(splat(x))[0];
}

/* The logits of one tile of one row into buf (n entries, a multiple of 8); returns their max.
   Two partial sums: one chain of k1 dependent FMAs was latency-bound. */
static inline __attribute__((always_inline)) float tile_logits(
        const int k1, int n, const float *restrict lp, const float *restrict pt,
        const v8f *restrict ykp, float *restrict buf) {
    /* the row's coefficients in registers (no reload after each store to buf) */
    v8f yk[MAX_D + 1];
    for (int k = 0; k < k1; k++) yk[k] = ykp[k];
    v8f vmax = splat(-INFINITY);
    for (int j = 0; j < n; j += 8) {
        const float *pj = pt + (int64_t)j * k1;
        v8f a0 = load8(lp + j), a1 = splat(0.0f);
        int k = 0;
        for (; k + 2 <= k1; k += 2) {
            a0 += yk[k] * load8(pj + 8 * k);
            a1 += yk[k + 1] * load8(pj + 8 * (k + 1));
        }
        if (k < k1) a0 += yk[k] * load8(pj + 8 * k);
        const v8f s = a0 + a1;
        store8(buf + j, s);
        vmax = select8(s > vmax, s, vmax);
    }
    return hmax8(vmax);
}

/* One row, one tile after its logits (buf, maximum tm): the running maximum and its
   rescaling, the weights' sum, the denoiser's sums ar, and the tile's (m_t, count) in tc. */
static inline __attribute__((always_inline)) void tile_update(
        const int k1, int n, int nd, const float *restrict pt, float gap, float *restrict buf,
        float tm, v8f *restrict ar, float *restrict mz, float *restrict tc) {
    const int d = k1 - 1;
    (void)nd;
    float *m = mz, *Z = mz + 1;
    if (tm > *m) {  /* the running maximum grows: rescale what was summed so far */
        const v8f s = splat(*m == -INFINITY ? 0.0f : exp_nonpos(*m - tm));
        *Z *= s[0];
        for (int k = 0; k < d; k++) ar[k] *= s;
        *m = tm;
    }
    tc[0] = *m;
    tc[1] = 0.0f;
    if (*m == -INFINITY) return;  /* nothing with probability > 0 so far */
    v8f z = splat(0.0f);
    v8i c = {0};
    const v8f vm = splat(*m), vgap = splat(-gap);
    if (d <= 8) {  /* weights and the denoiser's sums in one loop, the sums in registers */
        v8f a[8] = {0};
        for (int j = 0; j < n; j += 8) {
            const v8f x = load8(buf + j) - vm;
            const v8f e = exp_nonpos8(x);
            z += e;
            c += x > vgap;  /* -1 per entry above */
            const float *pj = pt + (int64_t)j * k1;
            for (int i = 0; i < d; i++) a[i] += e * load8(pj + 8 * i);
        }
        for (int i = 0; i < d; i++) ar[i] += a[i];
    } else {
        for (int j = 0; j < n; j += 8) {
            const v8f x = load8(buf + j) - vm;
            const v8f e = exp_nonpos8(x);
            store8(buf + j, e);
            z += e;
            c += x > vgap;  /* -1 per entry above */
        }
        /* the denoiser's sums, 8 dimensions at a time (their sums stay in registers) */
        for (int k0 = 0; k0 < d; k0 += 8) {
            const int nk = d - k0 < 8 ? d - k0 : 8;
            v8f a[8] = {0};
            for (int j = 0; j < n; j += 8) {
                const v8f e = load8(buf + j);
                const float *pj = pt + (int64_t)j * k1 + 8 * k0;
                for (int i = 0; i < nk; i++) a[i] += e * load8(pj + 8 * i);
            }
            for (int i = 0; i < nk; i++) ar[k0 + i] += a[i];
        }
    }
    *Z += hsum8(z);
    tc[1] = hsum8i(c);
}


/* tile_logits for two rows at once: the codebook loads shared, each row's arithmetic exactly
   tile_logits' (the same operations in the same order: a row's floats do not depend on its
   partner). */
static inline __attribute__((always_inline)) void tile_logits2(
        const int k1, int n, const float *restrict lpa, const float *restrict lpb,
        const float *restrict pt, const v8f *restrict yka, const v8f *restrict ykb,
        float *restrict bufa, float *restrict bufb, float *tma, float *tmb) {
    v8f ya[MAX_D + 1], yb[MAX_D + 1];
    for (int k = 0; k < k1; k++) { ya[k] = yka[k]; yb[k] = ykb[k]; }
    v8f ma = splat(-INFINITY), mb = splat(-INFINITY);
    for (int j = 0; j < n; j += 8) {
        const float *pj = pt + (int64_t)j * k1;
        v8f a0 = load8(lpa + j), a1 = splat(0.0f);
        v8f b0 = load8(lpb + j), b1 = splat(0.0f);
        int k = 0;
        for (; k + 2 <= k1; k += 2) {
            const v8f c0 = load8(pj + 8 * k), c1 = load8(pj + 8 * (k + 1));
            a0 += ya[k] * c0;
            a1 += ya[k + 1] * c1;
            b0 += yb[k] * c0;
            b1 += yb[k + 1] * c1;
        }
        if (k < k1) {
            const v8f c0 = load8(pj + 8 * k);
            a0 += ya[k] * c0;
            b0 += yb[k] * c0;
        }
        const v8f sa = a0 + a1, sb = b0 + b1;
        store8(bufa + j, sa);
        store8(bufb + j, sb);
        ma = select8(sa > ma, sa, ma);
        mb = select8(sb > mb, sb, mb);
    }
    *tma = hmax8(ma);
    *tmb = hmax8(mb);
}

/* The rescaling part of tile_update: returns 0 when the row has nothing yet. */
static inline __attribute__((always_inline)) int tile_rescale(
        const int d, float tm, v8f *restrict ar, float *restrict mz, float *restrict tc) {
    float *m = mz, *Z = mz + 1;
    if (tm > *m) {
        const v8f s = splat(*m == -INFINITY ? 0.0f : exp_nonpos(*m - tm));
        *Z *= s[0];
        for (int k = 0; k < d; k++) ar[k] *= s;
        *m = tm;
    }
    tc[0] = *m;
    tc[1] = 0.0f;
    return *m != -INFINITY;
}

/* tile_update for two rows (d <= 8), the codebook loads shared; each row's arithmetic exactly
   tile_update's. */
static inline __attribute__((always_inline)) void tile_update2(
        const int k1, int n, const float *restrict pt, float gap,
        const float *restrict bufa, const float *restrict bufb, float tma, float tmb,
        v8f *restrict ara, v8f *restrict arb, float *restrict mza, float *restrict mzb,
        float *restrict tca, float *restrict tcb) {
    const int d = k1 - 1;
    const int oka = tile_rescale(d, tma, ara, mza, tca);
    const int okb = tile_rescale(d, tmb, arb, mzb, tcb);
    if (!oka || !okb) {  /* rare (a row with nothing yet): one row at a time */
        if (oka) tile_update(k1, n, 0, pt, gap, (float *)bufa, tma, ara, mza, tca);
        if (okb) tile_update(k1, n, 0, pt, gap, (float *)bufb, tmb, arb, mzb, tcb);
        return;
    }
    v8f za = splat(0.0f), zb = splat(0.0f);
    v8i ca = {0}, cb = {0};
    const v8f vma = splat(*mza), vmb = splat(*mzb), vgap = splat(-gap);
    /* the weights first (into ea_ / eb_, in L1), then the denoiser's sums SUM_DIMS dimensions
       at a time: each sum accumulates the same products in the same order as one loop over
       all dimensions would (the floats of session 10's single loop, bit for bit) */
    float ea_[TILE] __attribute__((aligned(32))), eb_[TILE] __attribute__((aligned(32)));
    for (int j = 0; j < n; j += 8) {
        const v8f xa = load8(bufa + j) - vma, xb = load8(bufb + j) - vmb;
        const v8f ea = exp_nonpos8(xa), eb = exp_nonpos8(xb);
        store8(ea_ + j, ea);
        store8(eb_ + j, eb);
        za += ea;
        zb += eb;
        ca += xa > vgap;
        cb += xb > vgap;
    }
    for (int i0 = 0; i0 < d; i0 += SUM_DIMS) {
        const int ni = d - i0 < SUM_DIMS ? d - i0 : SUM_DIMS;
        v8f a[SUM_DIMS] = {0}, b[SUM_DIMS] = {0};
        for (int j = 0; j < n; j += 8) {
            const v8f ea = load8(ea_ + j), eb = load8(eb_ + j);
            const float *pj = pt + (int64_t)j * k1 + 8 * i0;
            for (int i = 0; i < ni; i++) {
                const v8f c = load8(pj + 8 * i);
                a[i] += ea * c;
                b[i] += eb * c;
            }
        }
        for (int i = 0; i < ni; i++) { ara[i0 + i] += a[i]; arb[i0 + i] += b[i]; }
    }
    mza[1] += hsum8(za);
    mzb[1] += hsum8(zb);
    tca[1] = hsum8i(ca);
    tcb[1] = hsum8i(cb);
}

/* Pass 1 over a block: tiles outer, rows inner, so that a tile of the packed codebook (TILE x
   k1 floats) stays in L1 while every row of the block uses it; per row a running maximum, the
   sum of weights and the denoiser's sums, rescaled whenever the maximum grows.
   Also a lower bound on each row's count of weights above thr (so that the solver skips the
   exact count, pass 2a, for rows that cannot prune): per tile, the entries with E_j > m_t -
   gap (m_t the running maximum after the tile, gap = -log(thr) - 4); at the end a tile's
   entries certainly have w_j > thr when m_t - gap >= m + log(thr Z). */
static inline __attribute__((always_inline)) int sums_block(
        int R, int V, const int k1, const float *yaug, const float *logp, int64_t ldl,
        const int64_t *rows, const float *P, float thr, double *D, float *mz, float *lb) {
    const int d = k1 - 1;
    const int ntiles = (V + TILE - 1) / TILE;
    const int nd = (d + 7) / 8 * 8;
    const float gap = -logf(thr) - 4.0f;
    /* v8f needs 32-byte alignment (malloc gives 16) */
    v8f *acc = aligned_alloc(32, sizeof(v8f) * (size_t)R * (size_t)(nd ? nd : 8));
    v8f *yk = aligned_alloc(32, sizeof(v8f) * (size_t)R * (size_t)k1);
    float *tm_c = malloc(sizeof(float) * 2 * (size_t)R * (size_t)ntiles);  /* m_t, count_t */
    if (!acc || !yk || !tm_c) { free(acc); free(yk); free(tm_c); return -2; }
    float buf[TILE], buf2[TILE];
    for (int r = 0; r < R; r++) {
        mz[2 * r] = -INFINITY;
        mz[2 * r + 1] = 0.0f;
        for (int k = 0; k < nd; k++) acc[(int64_t)r * nd + k] = splat(0.0f);
        for (int k = 0; k < k1; k++) yk[(int64_t)r * k1 + k] = splat(yaug[(int64_t)r * k1 + k]);
    }
    for (int t = 0; t < ntiles; t++) {
        const int j0 = t * TILE, n = V - j0 < TILE ? V - j0 : TILE;
        const float *pt = P + (int64_t)j0 * k1;
        int r = 0;
        if (d <= 8) {
            for (; r + 2 <= R; r += 2) {
                float tma, tmb;
                tile_logits2(k1, n, logp + rows[r] * ldl + j0, logp + rows[r + 1] * ldl + j0,
                             pt, yk + (int64_t)r * k1, yk + (int64_t)(r + 1) * k1, buf, buf2,
                             &tma, &tmb);
                tile_update2(k1, n, pt, gap, buf, buf2, tma, tmb, acc + (int64_t)r * nd,
                             acc + (int64_t)(r + 1) * nd, mz + 2 * r, mz + 2 * (r + 1),
                             tm_c + 2 * ((int64_t)r * ntiles + t),
                             tm_c + 2 * ((int64_t)(r + 1) * ntiles + t));
            }
        }
        for (; r < R; r++) {
            const float tm = tile_logits(k1, n, logp + rows[r] * ldl + j0, pt,
                                         yk + (int64_t)r * k1, buf);
            tile_update(k1, n, nd, pt, gap, buf, tm, acc + (int64_t)r * nd, mz + 2 * r,
                        tm_c + 2 * ((int64_t)r * ntiles + t));
        }
    }
    for (int r = 0; r < R; r++) {
        const float m = mz[2 * r], Z = mz[2 * r + 1];
        const double inv = 1.0 / (double)Z;
        for (int k = 0; k < d; k++)
            D[(int64_t)r * d + k] = (double)hsum8(acc[(int64_t)r * nd + k]) * inv;
        const float need = m + logf(thr * Z) + gap;  /* m_t >= need: the tile's count holds */
        float low = 0.0f;
        for (int t = 0; t < ntiles; t++) {
            const float *tc = tm_c + 2 * ((int64_t)r * ntiles + t);
            if (tc[0] >= need) low += tc[1];
        }
        lb[r] = low;
    }
    free(acc);
    free(yk);
    free(tm_c);
    return 0;
}

/* log x for x >= 0 (float32): -inf for 0 and for subnormals (what the solver's
   flush-to-zero mode makes of them), Cephes' logf polynomial otherwise (about 1 ulp). */
static inline v8f log8(v8f x) {
    const v8i bits = (v8i)x;
    const v8i tiny = bits < (v8i){0x00800000, 0x00800000, 0x00800000, 0x00800000,
                                  0x00800000, 0x00800000, 0x00800000, 0x00800000};
    v8i e = (bits >> 23) - 126;
    v8f m = (v8f)((bits & 0x007fffff) | 0x3f000000);  /* mantissa in [0.5, 1) */
    const v8i small = m < splat(0.70710678118654752f);
    m = select8(small, m + m, m);
    e = e + small;  /* small is -1 where true */
    const v8f f = m - splat(1.0f), z = f * f, ef = __builtin_convertvector(e, v8f);
    v8f p = splat(7.0376836292e-2f);
    p = p * f + splat(-1.1514610310e-1f);
    p = p * f + splat(1.1676998740e-1f);
    p = p * f + splat(-1.2420140846e-1f);
    p = p * f + splat(1.4249322787e-1f);
    p = p * f + splat(-1.6668057665e-1f);
    p = p * f + splat(2.0000714765e-1f);
    p = p * f + splat(-2.4999993993e-1f);
    p = p * f + splat(3.3333331174e-1f);
    v8f y = p * f * z + ef * splat(-2.12194440e-4f) - splat(0.5f) * z;
    y = f + y + ef * splat(0.693359375f);
    return select8(tiny, splat(-INFINITY), y);
}

/* cnt[r] = #{j : x[rows[r], j] > cut} for rows of V floats (V a multiple of 8) at stride ldx. */
void ard_count_above(int R, int V, const float *x, int64_t ldx, const int64_t *rows, float cut,
                     float *cnt) {
    const v8f vc = splat(cut);
    for (int r = 0; r < R; r++) {
        const float *xr = x + rows[r] * ldx;
        v8i c = {0};
        for (int j = 0; j + 8 <= V; j += 8) c += load8(xr + j) > vc;
        cnt[r] = hsum8i(c);
    }
}

/* out[i] = log x[i] for i in [i0, i1) (see log8; lane by lane, so any split gives the same). */
static void log_range(const float *x, float *out, int64_t i0, int64_t i1) {
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) store8(out + i, log8(load8(x + i)));
    if (i < i1) {
        float tmp[8] = {1, 1, 1, 1, 1, 1, 1, 1};
        memcpy(tmp, x + i, sizeof(float) * (size_t)(i1 - i));
        const v8f v = log8(load8(tmp));
        memcpy(out + i, &v, sizeof(float) * (size_t)(i1 - i));
    }
}

struct log_job { int64_t n; const float *x; float *out; };

static int log_part(void *p, int64_t s, int64_t e) {  /* [s, e) in groups of 4096 floats */
    const struct log_job *j = p;
    const int64_t i1 = e * 4096 < j->n ? e * 4096 : j->n;
    log_range(j->x, j->out, s * 4096, i1);
    return 0;
}

/* out[i] = log x[i] for n floats >= 0 (see log8), on nthreads team threads. */
void ard_log(int nthreads, int64_t n, const float *x, float *out) {
    struct log_job j = {n, x, out};
    team_run(nthreads, 0, (n + 4095) / 4096, log_part, &j);
}

/* The full-codebook entry points. yaug (R, k1) float32 = [rho y, -rho^2 / 2] per row; logp: log
   probabilities, row rows[r] at logp + rows[r] * ldl, V entries; P: the codebook [C, |c|^2]
   packed by chunks of 8 entries, P[c][k][l] = CaugT[k][8 c + l] ((V / 8, k1, 8) contiguous:
   each chunk's k1 vectors adjacent, one sequential stream; rows of CaugT V floats apart alias
   in the L1 cache, 10x slower at V = 4096); mz (R, 2): each row's logit maximum m and sum of
   e^(E - m) Z (out of the first, into the second).
   ard_posterior_sums -> D (R, k1 - 1) float64, mz (the largest weight is 1 / Z) and lb (R,),
   a lower bound on the count of weights > thr (0 < thr < 1);
   ard_posterior_prune (below) -> for the rows that may prune, the entries with w_j > thr.
   Return 0; -1 for unsupported sizes (V not a multiple of 8, k1 > MAX_D + 1); -2 out of
   memory. The codebook dimensions of the presets run as compile-time constants (unrolled). */
#define DISPATCH(CALL_K1) \
    switch (k1) { case 5: CALL_K1(5); case 9: CALL_K1(9); case 17: CALL_K1(17); \
                  case 33: CALL_K1(33); default: CALL_K1(k1); }

struct sums_job { int V, k1; const float *yaug, *logp; int64_t ldl; const int64_t *rows;
                  const float *P; float thr; double *D; float *mz, *lb; };

static int sums_range(void *p, int64_t s, int64_t e) {
    const struct sums_job *j = p;
    const int k1 = j->k1, R = (int)(e - s);
#define SUMS(K) return sums_block(R, j->V, K, j->yaug + s * k1, j->logp, j->ldl, j->rows + s, \
                                  j->P, j->thr, j->D + s * (k1 - 1), j->mz + 2 * s, j->lb + s)
    DISPATCH(SUMS)
#undef SUMS
}

int ard_posterior_sums(int nthreads, int R, int V, int k1, const float *yaug, const float *logp,
                       int64_t ldl, const int64_t *rows, const float *P, float thr, double *D,
                       float *mz, float *lb) {
    if (k1 > MAX_D + 1 || k1 < 1 || V % 8 || V < 8 || !(thr > 0.0f && thr < 1.0f)) return -1;
    struct sums_job j = {V, k1, yaug, logp, ldl, rows, P, thr, D, mz, lb};
    return team_run(nthreads, 0, R, sums_range, &j);
}

/* ---------------------------------------------------------------------------------------------
   Pruning: the entries a row keeps (replaces a count pass, a weights pass and a selection over
   the (R, V) weights). For each row: its logits E (tile_logits, as every pass) and the entries
   with E_j > m + log(thr Z) (that is, w_j > thr). Their count goes to
   cnt[r]; when it is <= M their indices, ascending, go to idx[r, :cnt] and -1 fills the rest.
   A row whose count passes M stops there (cnt[r] is then a lower bound, > M). */
static inline __attribute__((always_inline)) void prune_block(
        int R, int V, const int k1, const float *yaug, const float *logp, int64_t ldl,
        const int64_t *rows, const float *P, const float *mz, float thr, int M, float *cnt,
        int64_t *idx) {
    const int ntiles = (V + TILE - 1) / TILE;
    v8f yk[MAX_D + 1];
    float E[TILE];
    for (int r = 0; r < R; r++) {
        for (int k = 0; k < k1; k++) yk[k] = splat(yaug[(int64_t)r * k1 + k]);
        const float cut = mz[2 * r] + logf(thr * mz[2 * r + 1]);
        const v8f vcut = splat(cut);
        int64_t *out = idx + (int64_t)r * M;
        int n = 0;
        for (int t = 0; t < ntiles && n <= M; t++) {
            const int j0 = t * TILE, nt = V - j0 < TILE ? V - j0 : TILE;
            tile_logits(k1, nt, logp + rows[r] * ldl + j0, P + (int64_t)j0 * k1, yk, E);
            for (int j = 0; j < nt && n <= M; j += 8) {
                if (!any8(load8(E + j) > vcut)) continue;
                for (int l = 0; l < 8; l++) {
                    if (!(E[j + l] > cut)) continue;
                    if (n < M) out[n] = j0 + j + l;
                    n++;
                }
            }
        }
        cnt[r] = (float)n;
        for (int i = n; i < M; i++) out[i] = -1;
    }
}

struct prune_job { int V, k1; const float *yaug, *logp; int64_t ldl; const int64_t *rows;
                   const float *P, *mz; float thr; int M; float *cnt; int64_t *idx; };

static int prune_range(void *p, int64_t s, int64_t e) {
    const struct prune_job *j = p;
    const int k1 = j->k1, R = (int)(e - s);
#define PRUNE(K) do { prune_block(R, j->V, K, j->yaug + s * k1, j->logp, j->ldl, j->rows + s, \
                                  j->P, j->mz + 2 * s, j->thr, j->M, j->cnt + s, \
                                  j->idx + s * j->M); return 0; } while (0)
    DISPATCH(PRUNE)
#undef PRUNE
}

int ard_posterior_prune(int nthreads, int R, int V, int k1, const float *yaug,
                        const float *logp, int64_t ldl, const int64_t *rows, const float *P,
                        const float *mz, float thr, int M, float *cnt, int64_t *idx) {
    if (k1 > MAX_D + 1 || k1 < 1 || V % 8 || V < 8 || M < 1) return -1;
    struct prune_job j = {V, k1, yaug, logp, ldl, rows, P, mz, thr, M, cnt, idx};
    return team_run(nthreads, 0, R, prune_range, &j);
}

/* ---------------------------------------------------------------------------------------------
   The pruned steps (float64; `kernels.pruned_denoiser` and `kernels.collapse_margin`, same
   formulas, one row at a time: a row's result depends on its own entries only). Row r of the
   call is solver row rows[r]: its entries are the codebook rows C64[idx[rows[r], j]] (C64 (V,
   d) float64; read in place, no gathered (B, M, d) copy) with log probs lps[rows[r], j] (M);
   entries with log p = -inf (padding) are skipped: their weight is exactly 0. y (R, d) and rho
   (R,) per call row. */

/* E_j = lps_j - |y - rho c_j|^2 / 2 into E (M,). */
static inline void pruned_logits_row(int M, int d, const double *y, double rho,
                                     const double *C64, const int64_t *idx, const double *lps,
                                     double *E) {
    for (int j = 0; j < M; j++) {
        if (lps[j] == -INFINITY) { E[j] = -INFINITY; continue; }
        const double *c = C64 + idx[j] * d;
        double s = 0.0;
        for (int k = 0; k < d; k++) {
            const double u = y[k] - rho * c[k];
            s += u * u;
        }
        E[j] = lps[j] - 0.5 * s;
    }
}

/* D (R, d) = the posterior mean over each row's entries; gap (R,) = its top-2 log-weight gap
   (inf with one entry). */
static int pruned_denoiser_rows(int R, int M, int d, const int64_t *rows, const double *y,
                                const double *rho, const double *C64, const int64_t *idxs,
                                const double *lps, double *D, double *gap) {
    double *E = malloc(sizeof(double) * (size_t)M);
    if (!E) return -2;
    for (int r = 0; r < R; r++) {
        const int64_t *idx = idxs + rows[r] * (int64_t)M;
        const double *yr = y + (int64_t)r * d;
        pruned_logits_row(M, d, yr, rho[r], C64, idx, lps + rows[r] * (int64_t)M, E);
        double m1 = -INFINITY, m2 = -INFINITY;
        for (int j = 0; j < M; j++) {
            if (E[j] > m1) { m2 = m1; m1 = E[j]; }
            else if (E[j] > m2) m2 = E[j];
        }
        gap[r] = M < 2 ? INFINITY : m1 - m2;
        double z = 0.0, a[MAX_D] = {0};
        for (int j = 0; j < M; j++) {
            if (E[j] == -INFINITY) continue;  /* e = 0: adds exactly nothing */
            const double e = exp(E[j] - m1);
            z += e;
            const double *c = C64 + idx[j] * d;
            for (int k = 0; k < d; k++) a[k] += e * c[k];
        }
        for (int k = 0; k < d; k++) D[(int64_t)r * d + k] = a[k] / z;
    }
    free(E);
    return 0;
}

/* The winner k (R,) (index into M) and the smallest future log-weight gap (R,): see
   `kernels.collapse_margin`. */
static int collapse_margin_rows(int R, int M, int d, const int64_t *rows, const double *y,
                                const double *rho, const double *C64, const int64_t *idxs,
                                const double *lps, int64_t *win, double *margin) {
    double *E = malloc(sizeof(double) * (size_t)M);
    if (!E) return -2;
    for (int r = 0; r < R; r++) {
        const int64_t *idx = idxs + rows[r] * (int64_t)M;
        const double *yr = y + (int64_t)r * d;
        const double *lp = lps + rows[r] * (int64_t)M, rh = rho[r];
        pruned_logits_row(M, d, yr, rh, C64, idx, lp, E);
        int k = 0;
        for (int j = 1; j < M; j++) if (E[j] > E[k]) k = j;  /* first maximum, as argmax */
        const double *ck = C64 + idx[k] * d;
        double best = INFINITY;
        for (int j = 0; j < M; j++) {
            if (isinf(lp[j])) continue;
            const double *c = C64 + idx[j] * d;
            double dist2 = 0.0, slope = 0.0;
            for (int i = 0; i < d; i++) {
                const double diff = ck[i] - c[i];
                dist2 += diff * diff;
                slope += (yr[i] - rh * c[i]) * diff;
            }
            if (dist2 == 0.0) continue;  /* j == k, or c_j == c_k: indistinguishable */
            const double dip = slope < 0.0 ? slope * slope / (2.0 * dist2) : 0.0;
            const double g = (E[k] - E[j]) - dip;
            if (g < best) best = g;
        }
        win[r] = k;
        margin[r] = best;
    }
    free(E);
    return 0;
}

/* The entry points: rows split over the team (each row's result depends on its own data). */
struct pruned_job { int M, d; const int64_t *rows; const double *y, *rho, *C64;
                    const int64_t *idx; const double *lps; void *out; double *val; };

static int denoiser_range(void *p, int64_t s, int64_t e) {
    const struct pruned_job *j = p;
    return pruned_denoiser_rows((int)(e - s), j->M, j->d, j->rows + s, j->y + s * j->d,
                                j->rho + s, j->C64, j->idx, j->lps, (double *)j->out + s * j->d,
                                j->val + s);
}

static int margin_range(void *p, int64_t s, int64_t e) {
    const struct pruned_job *j = p;
    return collapse_margin_rows((int)(e - s), j->M, j->d, j->rows + s, j->y + s * j->d,
                                j->rho + s, j->C64, j->idx, j->lps, (int64_t *)j->out + s,
                                j->val + s);
}

int ard_pruned_denoiser(int nthreads, int R, int M, int d, const int64_t *rows,
                        const double *y, const double *rho, const double *C64,
                        const int64_t *idx, const double *lps, double *D, double *gap) {
    if (M < 1 || d < 1 || d > MAX_D) return -1;
    struct pruned_job j = {M, d, rows, y, rho, C64, idx, lps, D, gap};
    return team_run(nthreads, 0, R, denoiser_range, &j);
}

int ard_collapse_margin(int nthreads, int R, int M, int d, const int64_t *rows,
                        const double *y, const double *rho, const double *C64,
                        const int64_t *idx, const double *lps, int64_t *win, double *margin) {
    if (M < 1 || d < 1 || d > MAX_D) return -1;
    struct pruned_job j = {M, d, rows, y, rho, C64, idx, lps, win, margin};
    return team_run(nthreads, 0, R, margin_range, &j);
}

/* ---------------------------------------------------------------------------------------------
   The solver's step loop (`solver._Chunk.run` on this path): one call per grid step instead of
   about a hundred small PyTorch operations, each row's floats exactly those of the PyTorch
   bookkeeping around the kernels above (the same operations in the same order, products and
   sums rounded separately as tensor operations round them: no contraction here).

   State, indexed by row id (B rows in the chunk, d dimensions): y (B, d); the Adams history
   hist (slots, B, d), D at node n - i in slot slot[i] (k of them); pruned, cand_ok (B,) bool;
   the pruned rows' entries: their codebook indices idx (B, M) into C64 (V, d) and log probs
   lps (B, M); gap (B,); the
   evaluation counters. rows (n,): the active row ids, ascending. */

static void adams(int d, int k, const double *w, const double *y0, const double *hist,
                  int64_t lds, const int *slot, int64_t r, const double *first, double *out) {
    /* out = y0 (+ w[0] * first) + w[i] * hist[slot[i]][r] for each i, left to right, each
       product and sum rounded as the tensor operations `yp += b * D` round them (the volatile
       product cannot be contracted into an FMA, whatever the compiler's flags) */
    for (int j = 0; j < d; j++) out[j] = y0[j];
    if (first) {
        for (int j = 0; j < d; j++) { volatile double t = w[0] * first[j]; out[j] = out[j] + t; }
        w++;
    }
    for (int i = 0; i < k; i++) {
        const double *h = hist + slot[i] * lds + r * d;
        for (int j = 0; j < d; j++) { volatile double t = w[i] * h[j]; out[j] = out[j] + t; }
    }
}

static void augment_row(int d, const double *y, double rho, float *out) {  /* kernels.augment */
    for (int j = 0; j < d; j++) out[j] = (float)(rho * y[j]);
    out[d] = (float)(-0.5 * rho * rho);
}

/* One step of the active rows from node n to n + 1 (rho1: rho at n + 1): the predictor, one
   evaluation (full rows: the sums pass and, with check_prune, the pruning pass for rows whose
   largest weight reaches wmax_min with at most M entries certainly above thr, whose entries go
   to cand / cand_ok where they are at most M; pruned rows: their own entries, and gap), the
   corrector into y and the new D into hist slot new_slot. nthreads: for the full rows'
   passes; nthreads_p: for the pruned rows. Returns the number of rows that got candidates
   (>= 0), or a kernel's status (< 0). */
int ard_flow_step(int nthreads, int nthreads_p, int n, const int64_t *rows, int B, int d,
                  int V, int M, double *y, double *hist, const int *slot, int k, int new_slot,
                  const double *pred, const double *corr, double rho1, int check_prune,
                  float wmax_min, const float *logp, int64_t ldl, const float *P, float thr,
                  const uint8_t *pruned, const double *C64, const int64_t *pidx,
                  const double *lps, double *gap,
                  int32_t *full_evals, int32_t *pruned_evals, int64_t *cand, uint8_t *cand_ok) {
    const int k1 = d + 1;
    if (k1 > MAX_D + 1 || d < 1 || V % 8 || V < 8 || M < 1 || n < 0 || k < 1) return -1;
    if (n == 0) return 0;
    const int64_t lds = (int64_t)B * d;
    const size_t nd = (size_t)n * d, nk = (size_t)n * k1, nn = (size_t)n;
    /* doubles: yp, D1, Dq, yq (n d each), gq, rho (n each); int64: full, posf, prn, posp, pk
       (n each), idx (n M); floats: yaug, yaug_pk (n k1 each), mz, mz_pk (2 n each), lb, cnt */
    char *mem = malloc(sizeof(double) * (4 * nd + 2 * nn) + sizeof(int64_t) * (5 * nn + nn * M)
                       + sizeof(float) * (2 * nk + 6 * nn));
    if (!mem) return -2;
    double *yp = (double *)mem, *D1 = yp + nd, *Dq = D1 + nd, *yq = Dq + nd, *gq = yq + nd;
    double *rho = gq + nn;
    int64_t *full = (int64_t *)(rho + nn), *posf = full + nn, *prn = posf + nn;
    int64_t *posp = prn + nn, *pk = posp + nn, *idx = pk + nn;
    float *yaug = (float *)(idx + nn * M), *yaug_pk = yaug + nk, *mz = yaug_pk + nk;
    float *mz_pk = mz + 2 * nn, *lb = mz_pk + 2 * nn, *cnt = lb + nn;
    int nf = 0, np = 0, status = 0, ncand = 0;
    for (int i = 0; i < n; i++) {
        const int64_t r = rows[i];
        cand_ok[r] = 0;
        adams(d, k, pred, y + r * d, hist, lds, slot, r, 0, yp + (int64_t)i * d);
        if (pruned[r]) { prn[np] = r; posp[np++] = i; }
        else { full[nf] = r; posf[nf++] = i; }
    }
    if (nf) {  /* full rows */
        for (int i = 0; i < nf; i++) augment_row(d, yp + posf[i] * d, rho1, yaug + (int64_t)i * k1);
        struct sums_job sj = {V, k1, yaug, logp, ldl, full, P, thr, Dq, mz, lb};
        status = team_run(nthreads, 0, nf, sums_range, &sj);
        if (status) goto out;
        int npk = 0;
        for (int i = 0; i < nf; i++) {
            memcpy(D1 + posf[i] * d, Dq + (int64_t)i * d, sizeof(double) * d);
            full_evals[full[i]] += 1;
            if (check_prune && 1.0f / mz[2 * i + 1] >= wmax_min && lb[i] <= (float)M) {
                memcpy(yaug_pk + (int64_t)npk * k1, yaug + (int64_t)i * k1, sizeof(float) * k1);
                mz_pk[2 * npk] = mz[2 * i];
                mz_pk[2 * npk + 1] = mz[2 * i + 1];
                pk[npk++] = full[i];
            }
        }
        if (npk) {  /* the pruning pass */
            struct prune_job pj = {V, k1, yaug_pk, logp, ldl, pk, P, mz_pk, thr, M, cnt, idx};
            status = team_run(nthreads, 0, npk, prune_range, &pj);
            if (status) goto out;
            for (int i = 0; i < npk; i++) {
                if (cnt[i] <= (float)M) {
                    memcpy(cand + pk[i] * M, idx + (int64_t)i * M, sizeof(int64_t) * M);
                    cand_ok[pk[i]] = 1;
                    ncand++;
                }
            }
        }
    }
    if (np) {  /* pruned rows */
        for (int i = 0; i < np; i++) {
            memcpy(yq + (int64_t)i * d, yp + posp[i] * d, sizeof(double) * d);
            rho[i] = rho1;
        }
        struct pruned_job pj = {M, d, prn, yq, rho, C64, pidx, lps, Dq, gq};
        status = team_run(nthreads_p, 0, np, denoiser_range, &pj);
        if (status) goto out;
        for (int i = 0; i < np; i++) {
            memcpy(D1 + posp[i] * d, Dq + (int64_t)i * d, sizeof(double) * d);
            gap[prn[i]] = gq[i];
            pruned_evals[prn[i]] += 1;
        }
    }
    for (int i = 0; i < n; i++) {  /* the corrector, then the new history entry */
        const int64_t r = rows[i];
        double yc[MAX_D];
        adams(d, k, corr, y + r * d, hist, lds, slot, r, D1 + (int64_t)i * d, yc);
        memcpy(y + r * d, yc, sizeof(double) * d);
        memcpy(hist + new_slot * lds + r * d, D1 + (int64_t)i * d, sizeof(double) * d);
    }
out:
    free(mem);
    return status ? status : ncand;
}

/* The certificate after a step, at rho (the node reached): the active pruned rows whose last
   gap is >= gap_min get their collapse margin (`collapse_margin`); where it is >= certify the
   row is decided: tokens[r] = idx[r, winner], rho_end[r] = rho * scale. rows (n,) is
   compacted in place to the undecided rows, in order. Returns their count, or a status < 0. */
int ard_flow_decide(int nthreads, int64_t *rows, int n, int d, int M, const double *y,
                    double rho, double scale, const uint8_t *pruned, const double *gap,
                    double gap_min, double certify, const double *C64, const double *lps,
                    const int64_t *idx, int64_t *tokens, double *rho_end) {
    if (M < 1 || d < 1 || d > MAX_D || n < 0) return -1;
    int nc = 0;
    for (int i = 0; i < n; i++) nc += pruned[rows[i]] && gap[rows[i]] >= gap_min;
    if (!nc) return n;
    char *mem = malloc((sizeof(double) * ((size_t)d + 2) + 2 * sizeof(int64_t)) * (size_t)nc);
    if (!mem) return -2;
    double *yc = (double *)mem, *rc = yc + (size_t)nc * d, *margin = rc + nc;
    int64_t *ids = (int64_t *)(margin + nc), *win = ids + nc;
    int c = 0;
    for (int i = 0; i < n; i++) {
        const int64_t r = rows[i];
        if (!(pruned[r] && gap[r] >= gap_min)) continue;
        ids[c] = r;
        rc[c] = rho;
        memcpy(yc + (int64_t)c * d, y + r * d, sizeof(double) * d);
        c++;
    }
    struct pruned_job pj = {M, d, ids, yc, rc, C64, idx, lps, win, margin};
    const int status = team_run(nthreads, 0, nc, margin_range, &pj);
    if (status) { free(mem); return status; }
    int keep = 0;
    c = 0;
    for (int i = 0; i < n; i++) {
        const int64_t r = rows[i];
        if (c < nc && ids[c] == r) {
            const int ok = margin[c] >= certify;
            const int64_t w = win[c++];
            if (ok) {
                tokens[r] = idx[r * M + w];
                rho_end[r] = rho * scale;
                continue;
            }
        }
        rows[keep++] = r;
    }
    free(mem);
    return keep;
}
