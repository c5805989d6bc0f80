/* What sfxen.c shares with vif.c inside the library (not exported to koffi's side of the API). */
#ifndef SFXEN_INTERNAL_H
#define SFXEN_INTERNAL_H
#include <stdint.h>
#include <xenstore.h>

#include <xenctrl.h>

/* The slack libxl adds to a PV guest's maxmem (LIBXL_MAXMEM_CONSTANT, KiB). */
#define MAXMEM_SLACK_KIB 1024

#pragma GCC visibility push(hidden)
extern struct xs_handle *xsh;
/* The library's libxenctrl handle (sfx_open), shared by every call. */
extern xc_interface *xch;
/* libxenctrl's last error text, or errno's. */
const char *xc_reason(void);
/* Writes the message into err (if any) and returns code. */
int fail(char *err, int errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* xs_write of `value` at the printf-formatted path; 0 or -1 (errno set). */
int xs_writef(xs_transaction_t t, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Owner `owner` (full access), `reader` may read; one entry when they are the same domain. */
int xs_perms(xs_transaction_t t, const char *path, uint32_t owner, uint32_t reader);
/* 0, or SFX_ENOMEM when Xen has not mem_mib (plus slack) free for `name`. */
int check_free_memory(const char *name, int mem_mib, char *err, int errlen);
/* "xxxxxxxx-xxxx-..." (dashes anywhere) into 16 bytes; 0 or -1. */
int parse_uuid(const char *s, uint8_t out[16]);

/* A domain with its ceilings and its XenStore and console event channels, no memory yet. */
struct bare_domain {
    uint32_t domid;
    unsigned int store_port, console_port;
};
/* 0, or -1 with *step naming the call that failed (its reason in xch); destroys what it made. */
int domain_create_bare(xc_interface *xch, const uint8_t handle[16], int max_mem_mib, int max_vcpus,
                       struct bare_domain *out, const char **step);
/* Name, console ring and port, the directory handed to the guest, then xs_introduce_domain. */
int domain_xs_skeleton(uint32_t domid, const char *name, unsigned long console_mfn,
                       unsigned int console_port, unsigned long store_mfn, unsigned int store_port,
                       const char **step);
/* One request of an xsb_transaction: a write of the string `value` at path, or (perms set) path's
 * permissions as xs_perms sets them: owner `owner`, `reader` may read. */
struct xsb_op {
    const char *path;
    const char *value;
    int perms;
    uint32_t owner, reader;
};
#define XSB_FAILED (-1)
#define XSB_NO_SOCKET (-2)
/* The ops in one transaction, sent together on a socket to xenstored, retried while the commit
 * loses a race (up to 5 attempts, *attempts set). 0; XSB_NO_SOCKET when xenstored has no socket
 * here or the socket failed mid-way (do it with libxenstore: the writes are idempotent);
 * XSB_FAILED with errno (xenstored refused a request or every commit lost its race). */
int xsb_transaction(const struct xsb_op *ops, int n, int *attempts);
#pragma GCC visibility pop
#endif
