/*
 * A XenStore client over the shared ring page (start_info store_mfn / store_evtchn): requests go
 * into req[], replies and watch events come back in rsp[]. One request at a time; watch events
 * that arrive while waiting for a reply are remembered for the main loop.
 */
#include "hello.h"

static struct xenstore_domain_interface *ring;
static evtchn_port_t store_port;
static uint32_t next_req_id = 1;
static int watch_fired;

/* The message being read: header then payload, which may arrive over several ring fills. */
static struct {
  struct xsd_sockmsg hdr;
  char body[XENSTORE_PAYLOAD_MAX + 1];
} msg;
static size_t msg_have;

void xenstore_init(void *page, evtchn_port_t port) {
  ring = page;
  store_port = port;
  msg_have = 0;
  watch_fired = 0;
}

evtchn_port_t xenstore_port(void) { return store_port; }

static void ring_write(const void *data, size_t len) {
  const char *p = data;
  while (len) {
    XENSTORE_RING_IDX cons = *(volatile XENSTORE_RING_IDX *)&ring->req_cons;
    XENSTORE_RING_IDX prod = ring->req_prod;
    barrier();
    size_t space = XENSTORE_RING_SIZE - (prod - cons);
    if (space == 0) {
      evtchn_take_pending(store_port);
      if (*(volatile XENSTORE_RING_IDX *)&ring->req_cons == cons)
        wait_for_events(&store_port, 1, monotonic_ns() + 1000000000ULL);
      continue;
    }
    size_t chunk = len < space ? len : space;
    for (size_t i = 0; i < chunk; i++) ring->req[MASK_XENSTORE_IDX(prod + i)] = p[i];
    __asm__ __volatile__("sfence" ::: "memory");
    ring->req_prod = prod + (XENSTORE_RING_IDX)chunk;
    evtchn_notify(store_port);
    p += chunk;
    len -= chunk;
  }
}

/* Moves available reply bytes into msg; returns 1 when a whole message is there. */
static int ring_read_some(void) {
  XENSTORE_RING_IDX prod = *(volatile XENSTORE_RING_IDX *)&ring->rsp_prod;
  XENSTORE_RING_IDX cons = ring->rsp_cons;
  __asm__ __volatile__("lfence" ::: "memory"); /* index before data */
  size_t need = msg_have < sizeof(msg.hdr) ? sizeof(msg.hdr) : sizeof(msg.hdr) + msg.hdr.len;
  int moved = 0;
  while (cons != prod && msg_have < need) {
    ((char *)&msg)[msg_have++] = ring->rsp[MASK_XENSTORE_IDX(cons)];
    cons++;
    moved = 1;
    if (msg_have == sizeof(msg.hdr)) {
      if (msg.hdr.len > XENSTORE_PAYLOAD_MAX) {
        printk("hello: xenstore: oversized message (%u bytes)\n", msg.hdr.len);
        hello_crash();
      }
      need = sizeof(msg.hdr) + msg.hdr.len;
    }
  }
  if (moved) {
    __asm__ __volatile__("mfence" ::: "memory");
    ring->rsp_cons = cons;
    evtchn_notify(store_port);
  }
  return msg_have >= sizeof(msg.hdr) && msg_have == sizeof(msg.hdr) + msg.hdr.len;
}

/* Takes one complete message if there is one: returns 1 and leaves it in msg. A watch event also
 * sets watch_fired. Callers loop until 0, so that a reply queued behind a watch event is not left
 * in the ring with its notification already consumed. */
static int take_message(void) {
  if (!ring_read_some()) return 0;
  msg.body[msg.hdr.len] = 0;
  msg_have = 0;
  if (msg.hdr.type == XS_WATCH_EVENT) watch_fired = 1;
  return 1;
}

/* Sends one request made of `parts` strings (each counted with its NUL when with_nul says so)
 * and waits for its reply, left in msg. Returns the reply type. */
static uint32_t request(uint32_t type, const char *const *parts, const int *with_nul, int nparts) {
  struct xsd_sockmsg hdr = {type, next_req_id++, 0, 0};
  for (int i = 0; i < nparts; i++) hdr.len += strlen(parts[i]) + (with_nul[i] ? 1 : 0);
  ring_write(&hdr, sizeof(hdr));
  for (int i = 0; i < nparts; i++) ring_write(parts[i], strlen(parts[i]) + (with_nul[i] ? 1 : 0));
  for (;;) {
    /* Clear the pending bit before looking, so a reply landing after the look still wakes us. */
    evtchn_take_pending(store_port);
    while (take_message()) {
      if (msg.hdr.type != XS_WATCH_EVENT && msg.hdr.req_id == hdr.req_id) return msg.hdr.type;
    }
    /* Re-check every second even without a notification: a lost wakeup must not hang us. */
    wait_for_events(&store_port, 1, monotonic_ns() + 1000000000ULL);
  }
}

int xenstore_read(const char *path, char *value, size_t size) {
  const char *parts[] = {path};
  const int nul[] = {1};
  if (request(XS_READ, parts, nul, 1) != XS_READ) return -1;
  size_t n = msg.hdr.len < size - 1 ? msg.hdr.len : size - 1;
  memcpy(value, msg.body, n);
  value[n] = 0;
  return 0;
}

int xenstore_write(const char *path, const char *value) {
  const char *parts[] = {path, value};
  const int nul[] = {1, 0};
  if (request(XS_WRITE, parts, nul, 2) != XS_WRITE) {
    printk("hello: xenstore write %s failed: %s\n", path, msg.body);
    return -1;
  }
  return 0;
}

int xenstore_watch(const char *path, const char *token) {
  const char *parts[] = {path, token};
  const int nul[] = {1, 1};
  if (request(XS_WATCH, parts, nul, 2) != XS_WATCH) {
    printk("hello: xenstore watch %s failed: %s\n", path, msg.body);
    return -1;
  }
  return 0;
}

int xenstore_poll_watch(void) {
  evtchn_take_pending(store_port);
  while (take_message()) {
    /* Watch events set watch_fired; a reply nobody waits for cannot happen (one request at a
     * time) and would be dropped. */
  }
  int fired = watch_fired;
  watch_fired = 0;
  return fired;
}
