/* libsfxen's flat C API (see sfxen.c). Return values: >= 0 success (a domid where one is made),
 * negative SFX_E* codes on failure with a message in the caller's err buffer. */
#ifndef SFXEN_H
#define SFXEN_H
#include <stdint.h>

#define SFX_EFAIL -1  /* anything else: the message says what */
#define SFX_EINVAL -2 /* bad argument: not a Xen PV kernel, bad shape, bad mac... */
#define SFX_ENOMEM -3 /* Xen has not enough free memory for the shape */
#define SFX_ENOENT -4 /* no such domain / shell / bridge */

/* A prepared shell's Xen handle starts with the bytes "sf-shell", printed as this uuid prefix. */
#define SFX_SHELL_UUID_PREFIX "73662d73-6865-6c6c-"

int sfx_open(char *err, int errlen);
int sfx_free_kib(int64_t *out, char *err, int errlen);
int sfx_prepare(const char *name, int mem_mib, int max_mem_mib, int vcpus, int max_vcpus,
                char *err, int errlen);
int sfx_execute(int domid, const char *kernel, const char *initrd, const char *cmdline,
                const char *name, const char *uuid, char *err, int errlen);
/* Writes one vif's frontend and backend entries (one transaction); netback then makes the interface. */
/* The last sfx_vif_write's time: out[0] µs for its transaction's writes, out[1] µs for the commit
 * (netback's probe of the new backend competes with it), out[2] attempts, out[3] 1 when the
 * transaction went out batched on xenstored's socket (then out[0] is all of it). */
void sfx_vif_write_stats(int64_t *out);
int sfx_vif_write(int domid, int devid, const char *mac, const char *bridge, char *err,
                  int errlen);
/* Waits for netback's vif<domid>.<devid>, joins it to the bridge, brings it up, writes hotplug-status. */
int sfx_vif_attach(int domid, int devid, const char *bridge, int timeout_ms, char *err, int errlen);
int sfx_destroy(int domid, char *err, int errlen);
/* Watches XenStore's @releaseDomain (fired when a domain shuts down, crashes or is destroyed) on a
 * connection of its own, from a thread of its own: returns the read end of a pipe that gets a byte
 * per event (one byte stands for any number of events not yet read; EOF: the watch ended). */
int sfx_release_watch(char *err, int errlen);
/* save.c: suspends the domain (XenStore control/shutdown) and writes it to fd as a libxl v2
 * stream (live: pre-copy first, failing before any byte if Xen cannot track dirty pages). The
 * domain is left suspended. sfx_resume cancels such a suspend (nothing to do if not suspended). */
int sfx_save(int domid, int fd, int flags, int timeout_ms, int64_t *stats, char *err, int errlen);
#define SFX_SAVE_LIVE 1      /* pre-copy first */
#define SFX_SAVE_ALL_PAGES 2 /* send all-zero pages with their data too (tests that need a long stream) */
/* stats (SFX_SAVE_STATS slots, filled on success): where a save's time and bytes went. */
#define SFX_SAVE_STATS 8
#define SFX_SAVE_SUSPEND_MS 0   /* suspend request -> the domain shut down for suspend */
#define SFX_SAVE_SUSPENDED_AT 1 /* call start -> suspended (ms) */
#define SFX_SAVE_TOTAL_MS 2     /* call start -> the stream's end written */
#define SFX_SAVE_PAGES 3        /* pages the guest has */
#define SFX_SAVE_ZERO_PAGES 4   /* of which all-zero (sent without data unless SFX_SAVE_ALL_PAGES) */
#define SFX_SAVE_BYTES_IN 5     /* libxc's stream as libxenguest wrote it */
#define SFX_SAVE_BYTES_OUT 6    /* what reached fd */
#define SFX_SAVE_FILTER_CPU_MS 7 /* CPU time of the zero-page filter (reads and scans every page) */
/* zeropages.c: copies libxc's stream from in to out up to its END record. SKIP: all-zero ordinary
 * pages go as "populate, no data" (XEN_DOMCTL_PFINFO_XALLOC); EXPAND: such entries become pages
 * of zeros again; KEEP: unchanged (zero pages counted). 0, or -1 with a message. */
#define SFX_ZERO_KEEP 0
#define SFX_ZERO_SKIP 1
#define SFX_ZERO_EXPAND 2
struct sfx_zero_stats {
    uint64_t pages, zero_pages, bytes_in, bytes_out;
};
int sfx_zero_filter(int in, int out, int mode, struct sfx_zero_stats *st, char *err, int errlen);
int sfx_resume(int domid, char *err, int errlen);
/* SFX_KIND_PV or SFX_KIND_HVM (PVH too: what this library cannot save), or SFX_ENOENT. */
#define SFX_KIND_PV 1
#define SFX_KIND_HVM 2
int sfx_domain_kind(int domid);
/* restore.c: a new domain from a libxl v2 stream (either backend's), left paused. begin makes it
 * bare and named (ports[0], ports[1]: its store and console event channels); fill reads fd into
 * it; the caller wires the vifs between the two and destroys the domain if fill fails. */
int sfx_restore_begin(const char *name, const char *uuid, int mem_mib, int max_mem_mib, int vcpus,
                      int max_vcpus, uint32_t *ports, char *err, int errlen);
int sfx_restore_fill(int domid, int fd, unsigned int store_port, unsigned int console_port,
                     int64_t *stats, char *err, int errlen);
/* fill's stats (SFX_RESTORE_STATS slots): where a restore's time went. */
#define SFX_RESTORE_STATS 4
#define SFX_RESTORE_XC_MS 0         /* libxenguest's restore, reading the stream included */
#define SFX_RESTORE_XS_MS 1         /* the console nodes and the XenStore introduction */
#define SFX_RESTORE_WAIT_MS 2       /* fill start -> the stream's header read (a migration's wait) */
#define SFX_RESTORE_FILTER_CPU_MS 3 /* CPU time of the filter thread between fd and libxenguest */
/* list.c: every domain, from one hypercall (libxl_list_domain makes one more per domain). Fills
 * up to max domains of SFX_DOMAIN_SLOTS int64 slots each into out; returns how many (max: there may
 * be more, ask again with more room). */
#define SFX_DOMAIN_SLOTS 10
#define SFX_DOMAIN_DOMID 0
#define SFX_DOMAIN_STATE 1           /* SFX_DOM_* bits */
#define SFX_DOMAIN_SHUTDOWN_REASON 2 /* Xen's SHUTDOWN_* code while shut down, else -1 */
#define SFX_DOMAIN_VCPUS_ONLINE 3
#define SFX_DOMAIN_MAX_VCPU_ID 4
#define SFX_DOMAIN_KIB 5             /* memory it has */
#define SFX_DOMAIN_MAX_KIB 6         /* its ceiling */
#define SFX_DOMAIN_CPU_NS 7
#define SFX_DOMAIN_HANDLE 8          /* slots 8-9: the 16 bytes of its Xen handle (uuid), in order */
#define SFX_DOM_DYING 1
#define SFX_DOM_SHUTDOWN 2
#define SFX_DOM_PAUSED 4
#define SFX_DOM_BLOCKED 8
#define SFX_DOM_RUNNING 16
#define SFX_DOM_HVM 32 /* HVM or PVH */
int sfx_list_domains(int64_t *out, int max, char *err, int errlen);
#endif
