/*
 * `hello`: superfluid's minimal Xen unikernel, PV or PVH (pvh.c). Boots from start_info, prints its command line
 * (arguments and KEY=VALUE env) and a ready line with its boot time to the Xen console, then a tick
 * counter once a second. It watches control/shutdown in XenStore and obeys poweroff, reboot and
 * suspend; after a suspend (xl save/restore, migration) it reconnects and keeps counting.
 */
#include "hello.h"

extern char event_callback[], failsafe_callback[], image_end[];

shared_info_t *shared;
/* A page of our own address space whose mapping is replaced by Xen's shared_info page. */
char shared_info_window[PAGE_SIZE] __attribute__((aligned(4096), section(".bss.pages")));
int hello_pvh;
static start_info_t *si;
/* Counted, never derived from time: it must survive save/restore unchanged. */
static unsigned long tick;

void evtchn_notify(evtchn_port_t port) {
  struct evtchn_send send = {.port = port};
  hc_event_channel_op(EVTCHNOP_send, (unsigned long)&send, 0);
}

int evtchn_take_pending(evtchn_port_t port) {
  unsigned long bit = 1UL << (port % 64);
  return (__atomic_fetch_and(&shared->evtchn_pending[port / 64], ~bit, __ATOMIC_SEQ_CST) & bit) != 0;
}

/* SCHEDOP_poll works with events masked (we never take upcalls): it returns when a port is pending
 * or the timeout (absolute system time) passes. */
void wait_for_events(evtchn_port_t *ports, unsigned int nr_ports, uint64_t deadline_ns) {
  struct sched_poll poll = {.nr_ports = nr_ports, .timeout = deadline_ns};
  set_xen_guest_handle(poll.ports, ports);
  hc_sched_op(SCHEDOP_poll, (unsigned long)&poll, 0);
}

void shutdown(unsigned int reason) {
  struct sched_shutdown request = {.reason = reason};
  for (;;) hc_sched_op(SCHEDOP_shutdown, (unsigned long)&request, 0);
}

void hello_crash(void) {
  printk("hello: crashed\n");
  shutdown(SHUTDOWN_crash);
  __builtin_unreachable();
}

static void map_shared_info(void) {
  if (hc_update_va_mapping((unsigned long)shared_info_window, si->shared_info | PTE_KERNEL_DATA, UVMF_INVLPG))
    shutdown(SHUTDOWN_crash); /* no console without it: nothing to print with */
  shared = (shared_info_t *)shared_info_window;
}

/* A save must not see our page tables point at shared_info (it is not one of our pages). */
static void unmap_shared_info(void) {
  shared = 0;
  hc_update_va_mapping((unsigned long)shared_info_window, 0, UVMF_INVLPG);
}

static void advertise_features(void) {
  xenstore_write("control/feature-poweroff", "1");
  xenstore_write("control/feature-reboot", "1");
  xenstore_write("control/feature-suspend", "1");
}

/* Seconds between ticks: the `interval=N` word of the command line (1..86400), else 1. A long
 * interval keeps a thousand idle guests from flooding dom0's console daemon with lines. */
static unsigned long tick_seconds = 1;

static void parse_interval(const char *word) {
  static const char key[] = "interval=";
  for (size_t i = 0; i < sizeof key - 1; i++)
    if (word[i] != key[i]) return;
  unsigned long n = 0;
  const char *c = word + sizeof key - 1;
  if (!*c) return;
  for (; *c; c++) {
    if (*c < '0' || *c > '9' || n > 86400) return;
    n = n * 10 + (unsigned long)(*c - '0');
  }
  if (n >= 1 && n <= 86400) tick_seconds = n;
}

static int is_env_assignment(const char *word) {
  const char *c = word;
  if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || *c == '_')) return 0;
  for (; *c && *c != '='; c++)
    if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return 0;
  return *c == '=';
}

/* Splits the command line at spaces: KEY=VALUE words are environment, the rest arguments. */
static void print_command_line(const char *raw, int *nargs, int *nenv) {
  static char cmdline[MAX_GUEST_CMDLINE + 1];
  size_t len = 0;
  while (len < MAX_GUEST_CMDLINE && raw[len]) len++;
  memcpy(cmdline, raw, len);
  cmdline[len] = 0;
  printk("hello: cmdline \"%s\"\n", cmdline);
  *nargs = *nenv = 0;
  char *p = cmdline;
  while (*p) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *word = p;
    while (*p && *p != ' ') p++;
    if (*p) *p++ = 0;
    parse_interval(word);
    if (is_env_assignment(word)) printk("hello: env %s\n", word), (*nenv)++;
    else printk("hello: arg[%d] %s\n", *nargs, word), (*nargs)++;
  }
}

static void suspend(void) {
  printk("hello: suspending at tick %lu\n", tick);
  if (hello_pvh) {
    long rc = pvh_suspend();
    if (rc == 0) {
      advertise_features();
      xenstore_watch("control/shutdown", "hello");
    }
    printk("hello: resumed at tick %lu (%s)\n", tick, rc == 0 ? "restored domain" : "suspend cancelled");
    return;
  }
  unsigned long start_info_mfn = virt_to_mfn(si);
  /* The save stream carries start_info as a page of our memory: its store and console frames must
   * be pfns there, which the restore turns into the new domain's MFNs. */
  si->store_mfn = MACHINE_TO_PHYS[si->store_mfn];
  si->console.domU.mfn = MACHINE_TO_PHYS[si->console.domU.mfn];
  unmap_shared_info();
  struct sched_shutdown request = {.reason = SHUTDOWN_suspend};
  /* PV: the third argument is start_info's MFN, which the toolstack rewrites on restore. 0 means we
   * now run in a restored domain, 1 that the suspend was cancelled and this is the same domain. */
  long rc = hc_sched_op(SCHEDOP_shutdown, (unsigned long)&request, start_info_mfn);
  if (rc != 0) {
    /* Cancelled: nobody rewrote start_info, so turn the pfns back into our MFNs. */
    si->store_mfn = pfn_to_mfn(si->store_mfn);
    si->console.domU.mfn = pfn_to_mfn(si->console.domU.mfn);
  }
  map_shared_info();
  console_init(mfn_to_virt(si->console.domU.mfn), si->console.domU.evtchn);
  hc_vcpu_op(VCPUOP_stop_periodic_timer, 0, 0);
  p2m_publish(); /* restore zeroes pfn_to_mfn_frame_list_list, and our MFNs changed */
  if (rc == 0) {
    xenstore_init(mfn_to_virt(si->store_mfn), si->store_evtchn);
    advertise_features();
    xenstore_watch("control/shutdown", "hello");
  }
  printk("hello: resumed at tick %lu (%s)\n", tick, rc == 0 ? "restored domain" : "suspend cancelled");
}

/* control/shutdown changed: acknowledge a request by clearing the key (libxl waits for that),
 * then act on it. */
static void handle_control_shutdown(void) {
  char request[32];
  if (xenstore_read("control/shutdown", request, sizeof(request)) < 0 || request[0] == 0) return;
  printk("hello: control/shutdown request \"%s\"\n", request);
  xenstore_write("control/shutdown", "");
  if (!strcmp(request, "poweroff") || !strcmp(request, "halt")) {
    printk("hello: poweroff at tick %lu\n", tick);
    shutdown(SHUTDOWN_poweroff);
  } else if (!strcmp(request, "reboot")) {
    printk("hello: reboot at tick %lu\n", tick);
    shutdown(SHUTDOWN_reboot);
  } else if (!strcmp(request, "suspend")) {
    suspend();
  } else {
    printk("hello: ignoring unknown shutdown request \"%s\"\n", request);
  }
}

void hello_main(start_info_t *start_info) {
  si = start_info;
  p2m_init(si);
  map_shared_info();
  console_init(mfn_to_virt(si->console.domU.mfn), si->console.domU.evtchn);
  /* Events stay masked (evtchn_upcall_mask) and we wait with SCHEDOP_poll, but register the
   * callbacks anyway: anything that unmasks events would otherwise crash the domain. */
  hc_set_callbacks((unsigned long)event_callback, (unsigned long)failsafe_callback, 0);
  /* PV vcpus start with a 10 ms periodic timer; we wake on our own deadlines only. */
  hc_vcpu_op(VCPUOP_stop_periodic_timer, 0, 0);
  p2m_publish();

  char magic[sizeof(si->magic) + 1];
  memcpy(magic, si->magic, sizeof(si->magic));
  magic[sizeof(si->magic)] = 0;
  printk("hello: superfluid hello unikernel on %s\n", magic);
  unsigned long in_use = si->pt_base + si->nr_pt_frames * PAGE_SIZE; /* image, p2m, start_info, rings, page tables */
  printk("hello: memory %lu KiB, in use at boot %lu KiB (image+bss %lu KiB)\n", si->nr_pages * 4, in_use / 1024,
         (unsigned long)image_end / 1024);
  xenstore_init(mfn_to_virt(si->store_mfn), si->store_evtchn);
  hello_run((const char *)si->cmd_line);
}

/* Common to PV and PVH once console and XenStore are connected: print the command line, arm the
 * shutdown watch, report ready, tick. */
void hello_run(const char *cmdline) {
  int nargs, nenv;
  print_command_line(cmdline, &nargs, &nenv);
  if (xenstore_watch("control/shutdown", "hello") < 0) hello_crash();
  /* Ready = the console works and shutdown requests are watched; each XenStore round trip goes
   * through dom0, so the feature keys (informational for PV guests) are written after. */
  uint64_t boot_ns = ns_since_boot();
  printk("hello: ready in %lu.%03lu ms (args=%d env=%d)\n", (unsigned long)(boot_ns / 1000000),
         (unsigned long)(boot_ns / 1000 % 1000), nargs, nenv);
  advertise_features();

  const uint64_t period = tick_seconds * 1000000000ULL;
  uint64_t next_tick = monotonic_ns() + period;
  for (;;) {
    if (xenstore_poll_watch()) handle_control_shutdown();
    uint64_t now = monotonic_ns();
    if (now >= next_tick) {
      printk("hello: tick %lu\n", ++tick);
      next_tick += period;
      /* After a pause or a restore we may be far behind: one tick, then a fresh period. */
      if (next_tick <= now) next_tick = now + period;
      continue;
    }
    evtchn_port_t port = xenstore_port();
    wait_for_events(&port, 1, next_tick);
  }
}
