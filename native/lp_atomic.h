/* Thin wrappers over the GCC/Clang __atomic builtins.
 *
 * Every call names the ordering it needs; the comment at each call site says
 * which happens-before edge that ordering buys. */
#ifndef LP_ATOMIC_H
#define LP_ATOMIC_H

#include <stdint.h>

#define LP_CACHE_LINE 64

static inline int64_t lp_load_relaxed(const int64_t* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline int64_t lp_load_acquire(const int64_t* p) {
  return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline int64_t lp_load_seq_cst(const int64_t* p) {
  return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}
static inline void lp_store_relaxed(int64_t* p, int64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void lp_store_release(int64_t* p, int64_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline void lp_store_seq_cst(int64_t* p, int64_t v) {
  __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}
static inline int64_t lp_fetch_add(int64_t* p, int64_t v) {
  return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}
static inline int lp_cas(int64_t* p, int64_t expected, int64_t desired) {
  return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE);
}
/* Raise *p to at least v; returns the value now stored. */
static inline int64_t lp_fetch_max(int64_t* p, int64_t v) {
  int64_t cur = __atomic_load_n(p, __ATOMIC_RELAXED);
  while (cur < v &&
         !__atomic_compare_exchange_n(p, &cur, v, 1, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
  }
  return cur < v ? v : cur;
}
static inline void lp_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void lp_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

#endif
