/* The VQ decoders' 3x3 convolutions as Winograd convolutions on channels-last tensors
   (ardistill.teachers.fast_decoder).

   A stride-1, pad-1 3x3 convolution is computed on (m + 2) x (m + 2) input tiles (stride m,
   m = 4 or 6) as
       Y = A^T [ sum_ci U[ci, co] * V[ci] ] A,   V = B^T d B,   U = G g G^T (computed once),
   so its multiply-adds become (m + 2)^2 independent GEMMs (tiles x Cin) @ (Cin x Cout), done by
   the caller with torch.bmm: 4x (m = 4) or 5.06x (m = 6) fewer multiplications than the direct
   convolution. This file holds the work around the GEMMs, vectorised over 8 channels:
     - ard_wino_in: gathers tiles (zero outside the image), reading a nearest 2x upsampling of
       a half-size source when asked, and writes B^T d B;
     - ard_wino_out: A^T m A plus the bias, plus a residual, written channels-last;
     - ard_channel_sums: per-channel sums and sums of squares (float64) for a GroupNorm;
     - ard_norm_silu: silu(x * scale + shift), the GroupNorm + SiLU before a convolution.
   Matrices (Lavin & Gray 2016; G is applied in Python, in float64):
     F(4, 3), points 0, +-1, +-2:
       B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0;
              0 4 0 -5 0 1]
       A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
     F(6, 3), points 0, +-1, +-2, +-1/2: the rows written out in bt8 and at6.
   Tensors are float32, channels a multiple of 8.

   Threads: every entry point takes `nthreads`; above 1 it runs its range on that many threads
   of torch's OpenMP runtime (utils/native_team.h). A thread's part of a range never depends on
   the others. */

#include <stdint.h>

#include "native_team.h"
#include "native_vec.h"

/* x * sigmoid(x), sigmoid from e = exp(-|x|): 1 / (1 + e) for x >= 0, e / (1 + e) below. */
static inline v8f silu8(v8f x) {
    const v8i neg = x < splat(0.0f);
    const v8f ax = select8(neg, -x, x);
    const v8f e = exp_nonpos8(-ax);
    const v8f inv = splat(1.0f) / (splat(1.0f) + e);
    return x * select8(neg, e * inv, inv);
}

/* The 1-D transforms. F(4, 3): B^T d (6 -> 6) and A^T m (6 -> 4), points 0, +-1, +-2. */
static inline __attribute__((always_inline)) void bt6(const v8f *d, v8f *t) {
    const v8f a = d[1] - d[3], b = d[4] - d[2];
    t[0] = splat(4.0f) * d[0] - splat(5.0f) * d[2] + d[4];
    t[1] = d[3] + d[4] - splat(4.0f) * (d[1] + d[2]);
    t[2] = splat(4.0f) * (d[1] - d[2]) - d[3] + d[4];
    t[3] = b - splat(2.0f) * a;
    t[4] = b + splat(2.0f) * a;
    t[5] = splat(4.0f) * d[1] - splat(5.0f) * d[3] + d[5];
}

static inline __attribute__((always_inline)) void at4(const v8f *m, v8f *o) {
    const v8f p = m[1] + m[2], q = m[1] - m[2], r = m[3] + m[4], s = m[3] - m[4];
    o[0] = m[0] + p + r;
    o[1] = q + splat(2.0f) * s;
    o[2] = p + splat(4.0f) * r;
    o[3] = q + splat(8.0f) * s + m[5];
}

/* F(6, 3): B^T d (8 -> 8) and A^T m (8 -> 6), points 0, +-1, +-2, +-1/2. */
static inline __attribute__((always_inline)) void bt8(const v8f *d, v8f *t) {
    t[0] = d[0] - d[6] + splat(5.25f) * (d[4] - d[2]);
    t[7] = d[7] - d[1] + splat(5.25f) * (d[3] - d[5]);
    v8f a = d[2] + d[6] - splat(4.25f) * d[4], b = d[1] + d[5] - splat(4.25f) * d[3];
    t[1] = a + b;
    t[2] = a - b;
    a = splat(0.25f) * d[2] - splat(1.25f) * d[4] + d[6];
    b = splat(0.5f) * d[1] - splat(2.5f) * d[3] + splat(2.0f) * d[5];
    t[3] = a + b;
    t[4] = a - b;
    a = splat(4.0f) * d[2] - splat(5.0f) * d[4] + d[6];
    b = splat(2.0f) * d[1] - splat(2.5f) * d[3] + splat(0.5f) * d[5];
    t[5] = a + b;
    t[6] = a - b;
}

static inline __attribute__((always_inline)) void at6(const v8f *m, v8f *o) {
    const v8f p1 = m[1] + m[2], q1 = m[1] - m[2], p2 = m[3] + m[4], q2 = m[3] - m[4];
    const v8f p3 = m[5] + m[6], q3 = m[5] - m[6];
    o[0] = m[0] + p1 + p2 + p3;
    o[1] = q1 + splat(2.0f) * q2 + splat(0.5f) * q3;
    o[2] = p1 + splat(4.0f) * p2 + splat(0.25f) * p3;
    o[3] = q1 + splat(8.0f) * q2 + splat(0.125f) * q3;
    o[4] = p1 + splat(16.0f) * p2 + splat(0.0625f) * p3;
    o[5] = q1 + splat(32.0f) * q2 + splat(0.03125f) * q3 + m[7];
}

#define MAXA 8

/* Input transform (tile m = 4 or 6, a = m + 2 inputs) of tiles [t0, t1) of the block starting at
   tile `tbase`. The convolution's input is H x W (channels C) per image; tiles are numbered
   image-major, then tile row, then tile column (th x tw per image). With up = 1 the input is
   the nearest 2x upsampling of x (N, H/2, W/2, C); else x is (N, H, W, C); zero padding.
   V: (a * a, ldv, C), row t - tbase. */
static inline __attribute__((always_inline)) void wino_in(
        const int m, int H, int W, int C, int up, const float *x, int th, int tw, int64_t tbase,
        int64_t t0, int64_t t1, int64_t ldv, float *V) {
    const int a = m + 2;
    const int Hs = up ? H / 2 : H, Ws = up ? W / 2 : W;
    const int64_t per_img = (int64_t)th * tw;
    const int64_t pos_stride = ldv * C;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n = t / per_img;
        const int rem = (int)(t % per_img), ty = rem / tw, tx = rem % tw;
        const float *img = x + n * (int64_t)Hs * Ws * C;
        const float *src[MAXA][MAXA];
        for (int i = 0; i < a; i++) {
            const int iy = m * ty - 1 + i;
            for (int j = 0; j < a; j++) {
                const int ix = m * tx - 1 + j;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                    src[i][j] = 0;
                } else {
                    const int sy = up ? iy >> 1 : iy, sx = up ? ix >> 1 : ix;
                    src[i][j] = img + ((int64_t)sy * Ws + sx) * C;
                }
            }
        }
        float *out = V + (t - tbase) * C;
        for (int c = 0; c < C; c += 8) {
            v8f tt[MAXA][MAXA];
            for (int j = 0; j < a; j++) {  /* columns: tt[.][j] = B^T d[.][j] */
                v8f col[MAXA], res[MAXA];
                for (int i = 0; i < a; i++) col[i] = src[i][j] ? load8(src[i][j] + c) : splat(0.0f);
                if (m == 4) bt6(col, res); else bt8(col, res);
                for (int i = 0; i < a; i++) tt[i][j] = res[i];
            }
            for (int i = 0; i < a; i++) {  /* rows: v[i][.] = B^T tt[i][.] */
                v8f row[MAXA];
                if (m == 4) bt6(tt[i], row); else bt8(tt[i], row);
                for (int j = 0; j < a; j++) store8(out + (i * a + j) * pos_stride + c, row[j]);
            }
        }
    }
}

/* Output transform of tiles [t0, t1): M (a * a, ldm, Cs) -> y (N, H, W, Cs) channels-last,
   plus bias (Cs) and, when res is not NULL, res (N, H, W, Cs) (res may be y: each pixel's
   residual is read just before the pixel is written). Pixels outside H x W are dropped. */
static inline __attribute__((always_inline)) void wino_out(
        const int m, int H, int W, int Cs, const float *M, int64_t ldm, const float *bias,
        const float *res, float *y, int th, int tw, int64_t tbase, int64_t t0, int64_t t1) {
    const int a = m + 2;
    const int64_t per_img = (int64_t)th * tw;
    const int64_t pos_stride = ldm * Cs;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n = t / per_img;
        const int rem = (int)(t % per_img), ty = rem / tw, tx = rem % tw;
        const float *mt = M + (t - tbase) * Cs;
        const int64_t base = n * (int64_t)H * W * Cs;
        for (int c = 0; c < Cs; c += 8) {
            v8f s[MAXA - 2][MAXA];
            for (int j = 0; j < a; j++) {  /* columns: s[.][j] = A^T m[.][j] */
                v8f col[MAXA], o[MAXA];
                for (int i = 0; i < a; i++) col[i] = load8(mt + (i * a + j) * pos_stride + c);
                if (m == 4) at4(col, o); else at6(col, o);
                for (int i = 0; i < m; i++) s[i][j] = o[i];
            }
            const v8f b = load8(bias + c);
            for (int i = 0; i < m; i++) {
                const int oy = m * ty + i;
                if (oy >= H) break;
                v8f o[MAXA];
                if (m == 4) at4(s[i], o); else at6(s[i], o);
                for (int j = 0; j < m; j++) {
                    const int ox = m * tx + j;
                    if (ox >= W) break;
                    const int64_t at = base + ((int64_t)oy * W + ox) * Cs + c;
                    v8f v = o[j] + b;
                    if (res) v += load8(res + at);
                    store8(y + at, v);
                }
            }
        }
    }
}

static void wino_in_range(int m, int H, int W, int C, int up, const float *x, int th, int tw,
                          int64_t tbase, int64_t t0, int64_t t1, int64_t ldv, float *V) {
    if (m == 4) wino_in(4, H, W, C, up, x, th, tw, tbase, t0, t1, ldv, V);
    else wino_in(6, H, W, C, up, x, th, tw, tbase, t0, t1, ldv, V);
}

struct in_job { int m, H, W, C, up; const float *x; int th, tw; int64_t tbase, t0, t1, ldv;
                float *V; };

static void in_worker(void *p) {
    const struct in_job *j = p;
    int64_t s, e;
    my_part(j->t0, j->t1, &s, &e);
    wino_in_range(j->m, j->H, j->W, j->C, j->up, j->x, j->th, j->tw, j->tbase, s, e, j->ldv, j->V);
}

void ard_wino_in(int nthreads, int m, int H, int W, int C, int up, const float *x, int th,
                 int tw, int64_t tbase, int64_t t0, int64_t t1, int64_t ldv, float *V) {
    if (use_team(nthreads, t1 - t0)) {
        struct in_job j = {m, H, W, C, up, x, th, tw, tbase, t0, t1, ldv, V};
        gomp_parallel_fn(in_worker, &j, (unsigned)nthreads, 0);
    } else {
        wino_in_range(m, H, W, C, up, x, th, tw, tbase, t0, t1, ldv, V);
    }
}

static void wino_out_range(int m, int H, int W, int Cs, const float *M, int64_t ldm,
                           const float *bias, const float *res, float *y, int th, int tw,
                           int64_t tbase, int64_t t0, int64_t t1) {
    if (m == 4) wino_out(4, H, W, Cs, M, ldm, bias, res, y, th, tw, tbase, t0, t1);
    else wino_out(6, H, W, Cs, M, ldm, bias, res, y, th, tw, tbase, t0, t1);
}

struct out_job { int m, H, W, Cs; const float *M; int64_t ldm; const float *bias, *res;
                 float *y; int th, tw; int64_t tbase, t0, t1; };

static void out_worker(void *p) {
    const struct out_job *j = p;
    int64_t s, e;
    my_part(j->t0, j->t1, &s, &e);
    wino_out_range(j->m, j->H, j->W, j->Cs, j->M, j->ldm, j->bias, j->res, j->y, j->th, j->tw,
                   j->tbase, s, e);
}

void ard_wino_out(int nthreads, int m, int H, int W, int Cs, const float *M, int64_t ldm,
                  const float *bias, const float *res, float *y, int th, int tw, int64_t tbase,
                  int64_t t0, int64_t t1) {
    if (use_team(nthreads, t1 - t0)) {
        struct out_job j = {m, H, W, Cs, M, ldm, bias, res, y, th, tw, tbase, t0, t1};
        gomp_parallel_fn(out_worker, &j, (unsigned)nthreads, 0);
    } else {
        wino_out_range(m, H, W, Cs, M, ldm, bias, res, y, th, tw, tbase, t0, t1);
    }
}

/* Per-channel sum and sum of squares over pixels [p0, p1) of x (npix, C), added to sum / sq
   (float64, C). Float32 partial sums over runs of at most 64 pixels. */
static void channel_sums(int64_t p0, int64_t p1, int C, const float *x, double *sum, double *sq) {
    for (int64_t r0 = p0; r0 < p1; r0 += 64) {
        const int64_t r1 = r0 + 64 < p1 ? r0 + 64 : p1;
        for (int c = 0; c < C; c += 8) {
            v8f s = splat(0.0f), q = splat(0.0f);
            for (int64_t p = r0; p < r1; p++) {
                const v8f v = load8(x + p * C + c);
                s += v;
                q += v * v;
            }
            for (int l = 0; l < 8; l++) {
                sum[c + l] += s[l];
                sq[c + l] += q[l];
            }
        }
    }
}

struct sums_job { int64_t npix; int C; const float *x; double *parts; };

static void sums_worker(void *p) {
    const struct sums_job *j = p;
    int64_t s, e;
    my_part(0, j->npix, &s, &e);
    double *mine = j->parts + (int64_t)omp_thread_num_fn() * 2 * j->C;
    channel_sums(s, e, j->C, j->x, mine, mine + j->C);
}

/* parts: (nthreads, 2, C) float64, zeroed by the caller; thread i adds its pixels' sums to
   parts[i, 0] and squares to parts[i, 1] (the caller adds the parts). */
void ard_channel_sums(int nthreads, int64_t npix, int C, const float *x, double *parts) {
    if (use_team(nthreads, npix)) {
        struct sums_job j = {npix, C, x, parts};
        gomp_parallel_fn(sums_worker, &j, (unsigned)nthreads, 0);
    } else {
        channel_sums(0, npix, C, x, parts, parts + C);
    }
}

/* y = silu(x * scale + shift) for pixels [p0, p1) of one image, x and y (npix, C), scale and
   shift (C). */
static void norm_silu(int64_t p0, int64_t p1, int C, const float *x, const float *scale,
                      const float *shift, float *y) {
    for (int64_t p = p0; p < p1; p++)
        for (int c = 0; c < C; c += 8)
            store8(y + p * C + c,
                   silu8(load8(x + p * C + c) * load8(scale + c) + load8(shift + c)));
}

struct act_job { int64_t npix; int C; const float *x, *scale, *shift; float *y; };

static void act_worker(void *p) {
    const struct act_job *j = p;
    int64_t s, e;
    my_part(0, j->npix, &s, &e);
    norm_silu(s, e, j->C, j->x, j->scale, j->shift, j->y);
}

void ard_norm_silu(int nthreads, int64_t npix, int C, const float *x, const float *scale,
                   const float *shift, float *y) {
    if (use_team(nthreads, npix)) {
        struct act_job j = {npix, C, x, scale, shift, y};
        gomp_parallel_fn(act_worker, &j, (unsigned)nthreads, 0);
    } else {
        norm_silu(0, npix, C, x, scale, shift, y);
    }
}
