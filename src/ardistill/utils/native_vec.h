/* Eight-float vectors for ardistill's compiled kernels (flow/posterior_kernel.c,
   teachers/decoder_kernel.c): GCC/Clang vector extensions the compiler lowers to AVX2
   registers (or pairs of SSE ones), and a polynomial exp that vectorises without libmvec. */

#ifndef ARDISTILL_NATIVE_VEC_H
#define ARDISTILL_NATIVE_VEC_H

#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

static inline v8f load8(const float *p) { v8f v; memcpy(&v, p, sizeof v); return v; }
static inline void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }
static inline v8f splat(float x) { return (v8f){x, x, x, x, x, x, x, x}; }
static inline v8f select8(v8i mask, v8f a, v8f b) {  /* mask ? a : b, lane by lane */
#if defined(__AVX__)
    return __builtin_ia32_blendvps256(b, a, (v8f)mask);  /* one instruction */
#else
    v8i r = (mask & (v8i)a) | (~mask & (v8i)b);
    return (v8f)r;
#endif
}

/* Whether any lane of a comparison mask is set. */
static inline int any8(v8i mask) {
#if defined(__AVX__)
    return __builtin_ia32_movmskps256((v8f)mask) != 0;
#else
    for (int l = 0; l < 8; l++) if (mask[l]) return 1;
    return 0;
#endif
}

/* e^x for x <= 0: 2^n * p(r), r = x - n ln2 in [-ln2/2, ln2/2], p of degree 6 (relative error
   below 2e-7); 0 for x < -87.3 (and for -inf). */
static inline v8f exp_nonpos8(v8f x) {
    const v8i low = x < splat(-87.3f);
    const v8f xc = select8(low, splat(-87.3f), x);
    const v8i ni = -__builtin_convertvector(splat(0.5f) - xc * splat(1.44269504088896341f), v8i);
    const v8f n = __builtin_convertvector(ni, v8f);
    v8f r = xc - n * splat(0.693145751953125f);
    r = r - n * splat(1.428606765330187045e-06f);
    v8f p = splat(1.3888889e-3f);
    p = p * r + splat(8.3333338e-3f);
    p = p * r + splat(4.1666668e-2f);
    p = p * r + splat(1.6666667e-1f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    const v8f scale = (v8f)((ni + 127) << 23);
    return select8(low, splat(0.0f), p * scale);
}

#endif
