/* The Xen PV console: a ring in a page shared with xenconsoled, plus an event channel to kick it. */
#include "hello.h"

static struct xencons_interface *ring;
static evtchn_port_t console_port;

/* (Re)connects to the console page (start_info under PV, HVM params under PVH); called at boot and
 * after every resume, since a restored domain may get a different page and port. */
void console_init(void *page, evtchn_port_t port) {
  ring = page;
  console_port = port;
}

void console_write(const char *s, size_t n) {
  while (n) {
    XENCONS_RING_IDX cons = *(volatile XENCONS_RING_IDX *)&ring->out_cons;
    XENCONS_RING_IDX prod = ring->out_prod;
    barrier();
    size_t space = sizeof(ring->out) - (prod - cons);
    if (space == 0) {
      /* Ring full: let xenconsoled drain it, then look again. */
      evtchn_notify(console_port);
      wait_for_events(&console_port, 1, monotonic_ns() + 10000000ULL);
      continue;
    }
    size_t chunk = n < space ? n : space;
    for (size_t i = 0; i < chunk; i++) ring->out[(prod + i) & (sizeof(ring->out) - 1)] = s[i];
    __asm__ __volatile__("sfence" ::: "memory"); /* data before index */
    ring->out_prod = prod + (XENCONS_RING_IDX)chunk;
    s += chunk;
    n -= chunk;
  }
  evtchn_notify(console_port);
}

/* One formatted line (or part of one) to the console; lines end in "\r\n" for terminals. */
void printk(const char *fmt, ...) {
  char line[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vformat(line, sizeof(line) - 1, fmt, ap);
  va_end(ap);
  if (n > (int)sizeof(line) - 2) n = sizeof(line) - 2;
  for (int i = 0; i < n; i++) {
    if (line[i] == '\n') {
      console_write(line, i);
      console_write("\r\n", 2);
      n -= i + 1;
      memcpy(line, line + i + 1, n);
      i = -1;
    }
  }
  if (n > 0) console_write(line, n);
}
