/* Running a kernel's range of work on the threads of torch's own OpenMP runtime.

   The caller (ardistill.utils.native.set_openmp_team) hands over torch's libgomp
   GOMP_parallel / omp_get_thread_num / omp_get_num_threads once with ard_set_openmp: the
   threads torch's own GEMMs run on, so none competes with another runtime's spinning workers.
   Without them every range runs on the calling thread. A thread's part of a range never
   depends on the others, so the kernels' results do not depend on the thread count.

   team_run also hands the caller's floating-point control word (x86 MXCSR: flush-to-zero and
   denormals-are-zero, which the flow solver sets on its own thread) to every worker for the
   call, so a row's floats are those of a single-threaded call. Elsewhere it runs one thread. */

#ifndef ARDISTILL_NATIVE_TEAM_H
#define ARDISTILL_NATIVE_TEAM_H

#include <stdint.h>

typedef void (*gomp_parallel_t)(void (*)(void *), void *, unsigned, unsigned);
typedef int (*omp_int_t)(void);
static gomp_parallel_t gomp_parallel_fn = 0;
static omp_int_t omp_thread_num_fn = 0, omp_num_threads_fn = 0;

void ard_set_openmp(void *parallel, void *thread_num, void *num_threads) {
    gomp_parallel_fn = (gomp_parallel_t)parallel;
    omp_thread_num_fn = (omp_int_t)thread_num;
    omp_num_threads_fn = (omp_int_t)num_threads;
}

/* A range [t0, t1) and the part of it this thread of the team runs. */
static inline void my_part(int64_t t0, int64_t t1, int64_t *s, int64_t *e) {
    const int64_t id = omp_thread_num_fn(), n = omp_num_threads_fn(), len = t1 - t0;
    *s = t0 + len * id / n;
    *e = t0 + len * (id + 1) / n;
}

static inline int use_team(int nthreads, int64_t len) {
    return nthreads > 1 && gomp_parallel_fn && len >= 2 * nthreads;
}

/* fn(job, s, e) over the parts [s, e) of [t0, t1) on nthreads team threads (on this thread
   where use_team says no). Returns the first nonzero status of a part, else 0. */
typedef int (*range_fn)(void *job, int64_t s, int64_t e);
struct team_call { range_fn fn; void *job; int64_t t0, t1; unsigned csr; volatile int status; };

#if defined(__x86_64__) || defined(__i386__)
#define ARD_HAS_CSR 1
#else
#define ARD_HAS_CSR 0
#endif

static void team_worker(void *p) {
    struct team_call *c = p;
    int64_t s, e;
    my_part(c->t0, c->t1, &s, &e);
    if (s >= e) return;
#if ARD_HAS_CSR
    const unsigned own = __builtin_ia32_stmxcsr();
    __builtin_ia32_ldmxcsr(c->csr);
#endif
    const int st = c->fn(c->job, s, e);
#if ARD_HAS_CSR
    __builtin_ia32_ldmxcsr(own);
#endif
    if (st) c->status = st;
}

static inline int team_run(int nthreads, int64_t t0, int64_t t1, range_fn fn, void *job) {
    if (!ARD_HAS_CSR || !use_team(nthreads, t1 - t0)) return fn(job, t0, t1);
    struct team_call c = {fn, job, t0, t1, 0, 0};
#if ARD_HAS_CSR
    c.csr = __builtin_ia32_stmxcsr();
#endif
    gomp_parallel_fn(team_worker, &c, (unsigned)nthreads, 0);
    return c.status;
}

#endif
