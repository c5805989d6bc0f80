/*
 * The PVH side of `hello`: start.S's 32-bit entry reaches long mode on identity page tables and
 * calls hello_main_pvh with the physical address of hvm_start_info. From there:
 * - hypercalls: the same hypercall_page as under PV, but Xen fills it when we write its address to
 *   the MSR named in CPUID leaf base+2 (base = the leaf whose signature is "XenVMMXenVMM");
 * - shared_info (event pending bits, time): XENMEM_add_to_physmap places it at one of our pages;
 * - console and XenStore: pages and event channels from HVM params (HVMOP_get_param);
 * - command line: hvm_start_info's cmdline_paddr (physical = virtual here).
 * Events stay masked exactly as under PV: no callback vector, SCHEDOP_poll for waiting.
 */
#include "hello.h"
#include <xen/memory.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/arch-x86/hvm/start_info.h>

void hello_main_pvh(uint32_t start_info_paddr);

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d) {
  __asm__ __volatile__("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

/* No console yet, and no hypercalls: all we can do on failure is stop. */
static void __attribute__((noreturn)) halt(void) {
  for (;;) __asm__ __volatile__("cli; hlt");
}

static void hypercall_page_init(void) {
  for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
    uint32_t eax, ebx, ecx, edx;
    cpuid(base, &eax, &ebx, &ecx, &edx);
    /* "XenVMMXenVMM" */
    if (ebx == 0x566e6558 && ecx == 0x65584d4d && edx == 0x4d4d566e && eax - base >= 2) {
      cpuid(base + 2, &eax, &ebx, &ecx, &edx);
      uint64_t page = (uint64_t)hypercall_page;
      __asm__ __volatile__("wrmsr" ::"c"(ebx), "a"((uint32_t)page), "d"((uint32_t)(page >> 32)) : "memory");
      return;
    }
  }
  halt();
}

static uint64_t hvm_param(uint32_t index) {
  struct xen_hvm_param p = {.domid = DOMID_SELF, .index = index};
  if (hc_hvm_op(HVMOP_get_param, (unsigned long)&p, 0)) shutdown(SHUTDOWN_crash);
  return p.value;
}

static void map_shared_info(void) {
  struct xen_add_to_physmap xatp = {
      .domid = DOMID_SELF,
      .space = XENMAPSPACE_shared_info,
      .idx = 0,
      .gpfn = (unsigned long)shared_info_window >> PAGE_SHIFT,
  };
  if (hc_memory_op(XENMEM_add_to_physmap, (unsigned long)&xatp, 0)) shutdown(SHUTDOWN_crash);
  shared = (shared_info_t *)shared_info_window;
}

/* Physical = virtual (identity map), so a guest frame number is a page address. */
static void *pfn_to_page(uint64_t pfn) { return (void *)(unsigned long)(pfn << PAGE_SHIFT); }

static void connect_console(void) {
  console_init(pfn_to_page(hvm_param(HVM_PARAM_CONSOLE_PFN)), (evtchn_port_t)hvm_param(HVM_PARAM_CONSOLE_EVTCHN));
}

static void connect_xenstore(void) {
  xenstore_init(pfn_to_page(hvm_param(HVM_PARAM_STORE_PFN)), (evtchn_port_t)hvm_param(HVM_PARAM_STORE_EVTCHN));
}

long pvh_suspend(void) {
  struct sched_shutdown request = {.reason = SHUTDOWN_suspend};
  /* HVM/PVH: no start_info frame to pass. Returns 0 in the restored domain, 1 if cancelled. */
  long rc = hc_sched_op(SCHEDOP_shutdown, (unsigned long)&request, 0);
  /* A restored domain has a new shared_info (not part of our memory): place it again. */
  map_shared_info();
  connect_console();
  if (rc == 0) connect_xenstore();
  return rc;
}

void hello_main_pvh(uint32_t start_info_paddr) {
  const struct hvm_start_info *si = (const struct hvm_start_info *)(unsigned long)start_info_paddr;
  hello_pvh = 1;
  hypercall_page_init();
  if (si->magic != XEN_HVM_START_MAGIC_VALUE) shutdown(SHUTDOWN_crash);
  map_shared_info();
  connect_console();
  domid_t self = DOMID_SELF;
  long pages = hc_memory_op(XENMEM_current_reservation, (unsigned long)&self, 0);
  printk("hello: superfluid hello unikernel on PVH (hvm_start_info v%u)\n", si->version);
  extern char image_end[];
  printk("hello: memory %ld KiB, image+bss %lu KiB\n", pages * 4, (unsigned long)image_end / 1024);
  connect_xenstore();
  hello_run(si->cmdline_paddr ? (const char *)(unsigned long)si->cmdline_paddr : "");
}
