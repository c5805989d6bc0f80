/* Shared declarations of the `hello` PV unikernel: hypercalls, console, time, XenStore, p2m. */
#ifndef HELLO_H
#define HELLO_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define __XEN_INTERFACE_VERSION__ 0x00040e00
#include <xen/xen.h>
#include <xen/sched.h>
#include <xen/event_channel.h>
#include <xen/vcpu.h>
#include <xen/callback.h>
#include <xen/io/console.h>
#include <xen/io/xs_wire.h>

#define PAGE_SIZE 4096UL
#define PAGE_SHIFT 12
/* Xen's read-only machine-to-phys table, mapped into every 64-bit PV guest. */
#define MACHINE_TO_PHYS ((const unsigned long *)0xFFFF800000000000UL)
/* PTE bits for a kernel data mapping: present, writable, user (64-bit PV kernels run in ring 3),
 * accessed, dirty. */
#define PTE_KERNEL_DATA 0x67UL

#define barrier() __asm__ __volatile__("" ::: "memory")

/* ---- hypercalls: call the 32-byte stub Xen wrote into hypercall_page for each number ---- */
extern char hypercall_page[];

/* Argument registers are in/out: a debug Xen clobbers them on return. */
#define HYPERCALL_BODY(nr)                                                                        \
  __asm__ __volatile__("call hypercall_page + %c[offset]"                                         \
                       : "=a"(ret), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8)            \
                       : [offset] "i"((nr) * 32)                                                  \
                       : "rcx", "r11", "memory")


#define DEFINE_HYPERCALL(name, nr)                                                                \
  static inline long name(unsigned long a1, unsigned long a2, unsigned long a3) {                 \
    long ret;                                                                                     \
    register unsigned long r10 __asm__("r10") = 0;                                                \
    register unsigned long r8 __asm__("r8") = 0;                                                  \
    HYPERCALL_BODY(nr);                                                                           \
    return ret;                                                                                   \
  }

DEFINE_HYPERCALL(hc_set_callbacks, __HYPERVISOR_set_callbacks)
DEFINE_HYPERCALL(hc_update_va_mapping, __HYPERVISOR_update_va_mapping)
DEFINE_HYPERCALL(hc_sched_op, __HYPERVISOR_sched_op)
DEFINE_HYPERCALL(hc_event_channel_op, __HYPERVISOR_event_channel_op)
DEFINE_HYPERCALL(hc_vcpu_op, __HYPERVISOR_vcpu_op)
DEFINE_HYPERCALL(hc_memory_op, __HYPERVISOR_memory_op)
DEFINE_HYPERCALL(hc_hvm_op, __HYPERVISOR_hvm_op)

/* ---- lib.c ---- */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int vformat(char *buf, size_t size, const char *fmt, va_list ap);
int format(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- events (main.c) ---- */
extern shared_info_t *shared;
void evtchn_notify(evtchn_port_t port);
/* Clears the port's pending bit; returns whether it was set. */
int evtchn_take_pending(evtchn_port_t port);
/* Waits until one of the ports is pending or system time reaches deadline_ns (0: no deadline). */
void wait_for_events(evtchn_port_t *ports, unsigned int nr_ports, uint64_t deadline_ns);
void hello_crash(void) __attribute__((noreturn));
void shutdown(unsigned int reason) __attribute__((noreturn));
/* 1 when booted through the PVH entry (pvh.c), 0 as a PV guest. */
extern int hello_pvh;
extern char shared_info_window[PAGE_SIZE];
/* After the console and XenStore are connected: command line, shutdown watch, ready line, ticks. */
void hello_run(const char *cmdline) __attribute__((noreturn));
unsigned long virt_to_mfn(const void *va);
unsigned long pfn_to_mfn(unsigned long pfn);
void *mfn_to_virt(unsigned long mfn);

/* ---- console.c ---- */
void console_init(void *page, evtchn_port_t port);
void console_write(const char *s, size_t n);
void printk(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- time.c ---- */
uint64_t monotonic_ns(void);
/* Nanoseconds since the first instruction (boot_tsc, recorded in start.S). */
uint64_t ns_since_boot(void);

/* ---- xenstore.c ---- */
void xenstore_init(void *page, evtchn_port_t port);
/* Returns 0 and a NUL-terminated value, or a negative value if the key is missing/error. */
int xenstore_read(const char *path, char *value, size_t size);
int xenstore_write(const char *path, const char *value);
int xenstore_watch(const char *path, const char *token);
/* Consumes whatever the store sent; returns 1 if a watch event arrived since the last call. */
int xenstore_poll_watch(void);
evtchn_port_t xenstore_port(void);

/* ---- pvh.c ---- */
/* SCHEDOP_shutdown(suspend) as a PVH guest, then reconnects; 0 = restored domain, else cancelled. */
long pvh_suspend(void);

/* ---- p2m.c ---- */
void p2m_init(start_info_t *si);
/* Publishes the p2m frame-list tree in shared_info (what `xl save` reads to find our memory). */
void p2m_publish(void);

#endif
