/* Time from the vcpu_time_info Xen keeps in shared_info: system time = ns since host boot. */
#include "hello.h"

extern uint64_t boot_tsc;

static inline uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

static uint64_t scale_delta(uint64_t delta, uint32_t mul, int8_t shift) {
  if (shift >= 0) delta <<= shift;
  else delta >>= -shift;
  return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* Reads one consistent snapshot (version even and unchanged, like a seqlock). */
static void snapshot(uint64_t *tsc_now, uint64_t *tsc_stamp, uint64_t *system_time, uint32_t *mul, int8_t *shift) {
  volatile struct vcpu_time_info *t = &shared->vcpu_info[0].time;
  uint32_t version;
  do {
    version = t->version;
    barrier();
    *tsc_now = rdtsc();
    *tsc_stamp = t->tsc_timestamp;
    *system_time = t->system_time;
    *mul = t->tsc_to_system_mul;
    *shift = t->tsc_shift;
    barrier();
  } while ((version & 1) || version != t->version);
}

uint64_t monotonic_ns(void) {
  uint64_t tsc, stamp, system_time;
  uint32_t mul;
  int8_t shift;
  snapshot(&tsc, &stamp, &system_time, &mul, &shift);
  return system_time + scale_delta(tsc - stamp, mul, shift);
}

uint64_t ns_since_boot(void) {
  uint64_t tsc, stamp, system_time;
  uint32_t mul;
  int8_t shift;
  snapshot(&tsc, &stamp, &system_time, &mul, &shift);
  return scale_delta(tsc - boot_tsc, mul, shift);
}
