/*
 * libsfxen: a lean, in-process builder of Xen PV domains for the CRI shim (koffi calls it).
 *
 * Two phases, following the order Xen 4.17's own toolstack uses for a PV guest:
 *   sfx_prepare  ("shell"): create the domain, set its vcpu and memory ceilings, allocate the
 *                console and XenStore event channels, populate its memory through the xc_dom
 *                builder (arch + memory init), and name it in XenStore. No kernel yet.
 *   sfx_execute: load kernel (+ initrd) and command line into a prepared shell, build the page
 *                tables and start info, seed the grant table, write the console nodes and
 *                introduce the domain to xenstored. The domain is left paused.
 * Plus sfx_destroy, and vifs in vif.c. Nothing here forks.
 *
 * The API is flat on purpose: ints, strings and caller-owned buffers, so the TypeScript side never
 * needs a struct layout. Every call that can fail takes (err, errlen) and returns a negative
 * SFX_E* code with a readable message; the builder state of a prepared shell lives in this
 * process, keyed by domid.
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"

#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

#include <sys/mman.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xenguest.h>
#include <xenstore.h>

#define PV64_GUEST_TYPE "xen-3.0-x86_64"

xc_interface *xch;
struct xs_handle *xsh;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

struct shell {
    uint32_t domid;
    struct xc_dom_image *dom;
    unsigned int console_port, store_port;
    struct shell *next;
};
static struct shell *shells;

int fail(char *err, int errlen, int code, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, (size_t)errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* libxenctrl's last error text for the calling thread ("" when none). */
const char *xc_reason(void)
{
    const xc_error *e = xch ? xc_get_last_error(xch) : NULL;
    return e && e->code != XC_ERROR_NONE ? e->message : strerror(errno);
}

int sfx_open(char *err, int errlen)
{
    pthread_mutex_lock(&lock);
    if (!xch)
        xch = xc_interface_open(NULL, NULL, 0);
    if (xch && !xsh)
        xsh = xs_open(0);
    int ok = xch && xsh;
    pthread_mutex_unlock(&lock);
    if (!ok)
        return fail(err, errlen, SFX_EFAIL,
                    "cannot open %s (errno %d): not dom0, or the Xen toolstack is not running",
                    xch ? "xenstored" : "/dev/xen/privcmd", errno);
    return 0;
}

static void shell_push(struct shell *s)
{
    pthread_mutex_lock(&lock);
    s->next = shells;
    shells = s;
    pthread_mutex_unlock(&lock);
}

static struct shell *shell_take(uint32_t domid)
{
    pthread_mutex_lock(&lock);
    struct shell **p = &shells;
    while (*p && (*p)->domid != domid)
        p = &(*p)->next;
    struct shell *s = *p;
    if (s)
        *p = s->next;
    pthread_mutex_unlock(&lock);
    return s;
}

static void shell_free(struct shell *s)
{
    if (!s)
        return;
    if (s->dom)
        xc_dom_release(s->dom);
    free(s);
}

int xs_writef(xs_transaction_t t, const char *value, const char *fmt, ...)
{
    char path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    return xs_write(xsh, t, path, value, (unsigned int)strlen(value)) ? 0 : -1;
}

/* Owner `owner` (full access), `reader` may read: what the guest sees of a dom0-written node. */
int xs_perms(xs_transaction_t t, const char *path, uint32_t owner, uint32_t reader)
{
    struct xs_permissions p[2] = {
        {.id = owner, .perms = XS_PERM_NONE},
        {.id = reader, .perms = XS_PERM_READ},
    };
    return xs_set_permissions(xsh, t, path, p, owner == reader ? 1 : 2) ? 0 : -1;
}

/* Removes what this library writes for a domain; missing nodes are fine. */
static void xs_forget(uint32_t domid)
{
    char path[96];
    snprintf(path, sizeof(path), "/local/domain/%u", domid);
    xs_rm(xsh, XBT_NULL, path);
    snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%u", domid);
    xs_rm(xsh, XBT_NULL, path);
}

int sfx_free_kib(int64_t *out, char *err, int errlen)
{
    xc_physinfo_t info = {0};
    if (xc_physinfo(xch, &info) != 0)
        return fail(err, errlen, SFX_EFAIL, "xc_physinfo: %s", xc_reason());
    *out = (int64_t)info.free_pages * (XC_PAGE_SIZE / 1024);
    return 0;
}

int parse_uuid(const char *s, xen_domain_handle_t out)
{
    unsigned int n = 0;
    for (const char *c = s; *c && n < 32; c++) {
        if (*c == '-')
            continue;
        int v = (*c >= '0' && *c <= '9') ? *c - '0'
                : (*c >= 'a' && *c <= 'f') ? *c - 'a' + 10
                : (*c >= 'A' && *c <= 'F') ? *c - 'A' + 10 : -1;
        if (v < 0)
            return -1;
        if (n % 2 == 0)
            out[n / 2] = (uint8_t)(v << 4);
        else
            out[n / 2] |= (uint8_t)v;
        n++;
    }
    return n == 32 ? 0 : -1;
}

int check_free_memory(const char *name, int mem_mib, char *err, int errlen)
{
    int64_t free_kib = 0;
    int rc = sfx_free_kib(&free_kib, err, errlen);
    if (rc)
        return rc;
    if ((int64_t)mem_mib * 1024 + MAXMEM_SLACK_KIB > free_kib)
        return fail(err, errlen, SFX_ENOMEM, "%s needs %d MiB but Xen has %lld MiB free", name,
                    mem_mib, (long long)(free_kib / 1024));
    return 0;
}

/* 1 when Xen was told not to scrub free RAM at boot (bootscrub=0/no/false/off, no-bootscrub):
 * then the pages it hands a new domain may hold whatever that RAM held before. */
static int xen_skips_bootscrub(void)
{
    static int known = -1;
    if (known >= 0)
        return known;
    xen_commandline_t line;
    memset(line, 0, sizeof(line));
    if (xc_version(xch, XENVER_commandline, line) < 0)
        return known = 1; /* cannot tell: assume the worst */
    line[sizeof(line) - 1] = 0;
    known = 0;
    char *save = NULL;
    for (char *w = strtok_r(line, " ", &save); w; w = strtok_r(NULL, " ", &save))
        if (!strcmp(w, "no-bootscrub") || !strcmp(w, "bootscrub=0") ||
            !strcmp(w, "bootscrub=no") || !strcmp(w, "bootscrub=false") ||
            !strcmp(w, "bootscrub=off"))
            known = 1;
    return known;
}

/* A shell's memory as zeros, so a guest never sees RAM Xen left unscrubbed (bootscrub=0) and a
 * save sends without data the pages it never wrote (zeropages.c). Off the request path for pool
 * shells; where Xen scrubs at boot it is skipped. */
static int zero_memory(uint32_t domid, const xen_pfn_t *p2m, xen_pfn_t pages)
{
    xenforeignmemory_handle *fmem = xenforeignmemory_open(NULL, 0);
    if (!fmem)
        return -1;
    int rc = 0;
    for (xen_pfn_t at = 0; at < pages && rc == 0; at += 1024) {
        size_t n = pages - at < 1024 ? (size_t)(pages - at) : 1024;
        void *m = xenforeignmemory_map(fmem, domid, PROT_READ | PROT_WRITE, n, p2m + at, NULL);
        if (!m) {
            rc = -1;
            break;
        }
        memset(m, 0, n * XC_PAGE_SIZE);
        xenforeignmemory_unmap(fmem, m, n);
    }
    xenforeignmemory_close(fmem);
    return rc;
}

int sfx_prepare(const char *name, int mem_mib, int max_mem_mib, int vcpus, int max_vcpus,
                char *err, int errlen)
{
    if (!xch || !xsh)
        return fail(err, errlen, SFX_EFAIL, "library not opened");
    if (!name || !*name || strlen(name) > 64 || mem_mib < 1 || max_mem_mib < mem_mib ||
        vcpus < 1 || max_vcpus < vcpus || max_vcpus > 128)
        return fail(err, errlen, SFX_EINVAL, "bad shape: name, memory or vcpus out of range");
    int rc = check_free_memory(name, mem_mib, err, errlen);
    if (rc)
        return rc;

    /* The handle marks a shell from its first instant (before any XenStore node): a shim that dies
     * mid-prepare leaves a domain whose uuid starts with SFX_SHELL_UUID_PREFIX for recovery. */
    uint8_t handle[16];
    memcpy(handle, "sf-shell", 8);
    if (getrandom(handle + 8, 8, 0) != 8)
        return fail(err, errlen, SFX_EFAIL, "getrandom: %s", strerror(errno));
    struct bare_domain bare;
    const char *step = "calloc";
    struct shell *s = calloc(1, sizeof(*s));
    if (!s)
        return fail(err, errlen, SFX_ENOMEM, "prepare %s: out of memory", name);
    if (domain_create_bare(xch, handle, max_mem_mib, max_vcpus, &bare, &step) != 0) {
        fail(err, errlen, SFX_EFAIL, "prepare %s: %s failed: %s", name, step, xc_reason());
        free(s);
        return SFX_EFAIL;
    }
    uint32_t domid = bare.domid;
    s->domid = domid;
    s->store_port = bare.store_port;
    s->console_port = bare.console_port;

    step = "xc_dom_allocate";
    s->dom = xc_dom_allocate(xch, NULL, NULL);
    if (!s->dom)
        goto out_fail;
    s->dom->container_type = XC_DOM_PV_CONTAINER;
    s->dom->console_evtchn = s->console_port;
    s->dom->console_domid = 0;
    s->dom->xenstore_evtchn = s->store_port;
    s->dom->xenstore_domid = 0;
    s->dom->max_vcpus = (unsigned int)max_vcpus;
    step = "xc_dom_boot_xen_init";
    if (xc_dom_boot_xen_init(s->dom, xch, domid) != 0)
        goto out_fail;
    /* Every kernel a shell accepts is a 64-bit PV ELF, so memory can be laid out before the kernel
     * is known: the arch hooks depend on the guest type only. sfx_execute checks the kernel's. */
    s->dom->guest_type = PV64_GUEST_TYPE;
    step = "xc_dom_mem_init";
    if (xc_dom_mem_init(s->dom, (unsigned int)mem_mib) != 0)
        goto out_fail;
    step = "xc_dom_boot_mem_init (populating guest memory)";
    if (xc_dom_boot_mem_init(s->dom) != 0) {
        rc = SFX_ENOMEM;
        goto out_fail_rc;
    }
    step = "zeroing guest memory";
    if (xen_skips_bootscrub() && zero_memory(domid, s->dom->pv_p2m, s->dom->total_pages) != 0)
        goto out_fail;

    /* No XenStore node yet: the shell is known by its Xen handle, and every node a guest needs
     * depends on its name or kernel. That keeps a VM's writes to what it uses (see sfx_execute). */
    shell_push(s);
    return (int)domid;

out_fail:
    rc = SFX_EFAIL;
out_fail_rc:
    fail(err, errlen, rc, "prepare %s: %s failed: %s", name, step, xc_reason());
    xc_domain_destroy(xch, domid);
    xs_forget(domid);
    shell_free(s);
    return rc;
}

int sfx_execute(int domid, const char *kernel, const char *initrd, const char *cmdline,
                const char *name, const char *uuid, char *err, int errlen)
{
    if (domid <= 0)
        return fail(err, errlen, SFX_EINVAL, "bad domid %d", domid);
    struct shell *s = shell_take((uint32_t)domid);
    if (!s)
        return fail(err, errlen, SFX_ENOENT, "domain %d is not a shell prepared by this process",
                    domid);
    struct xc_dom_image *dom = s->dom;
    int rc = SFX_EFAIL;
    const char *step = "check arguments";
    xen_domain_handle_t handle;
    struct stat st;
    if (!kernel || !name || !*name || strlen(name) > 64 || !cmdline || !uuid ||
        parse_uuid(uuid, handle) != 0) {
        rc = fail(err, errlen, SFX_EINVAL, "bad arguments: kernel, name, cmdline or uuid");
        goto out;
    }
    if (stat(kernel, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = fail(err, errlen, SFX_EINVAL, "kernel file not readable: %s", kernel);
        goto out;
    }
    step = "xc_dom_kernel_file";
    if (xc_dom_kernel_file(dom, kernel) != 0) {
        rc = SFX_EINVAL;
        goto out_xc;
    }
    if (initrd && *initrd) {
        step = "xc_dom_module_file (initrd)";
        if (xc_dom_module_file(dom, initrd, NULL) != 0) {
            rc = SFX_EINVAL;
            goto out_xc;
        }
    }
    dom->cmdline = xc_dom_strdup(dom, cmdline);
    step = "xc_dom_parse_image";
    if (!dom->cmdline || xc_dom_parse_image(dom) != 0) {
        rc = fail(err, errlen, SFX_EINVAL, "%s is not a Xen PV kernel (ELF with Xen notes): %s",
                  kernel, xc_reason());
        goto out;
    }
    if (strcmp(dom->guest_type, PV64_GUEST_TYPE) != 0) {
        rc = fail(err, errlen, SFX_EINVAL, "%s is a %s kernel; only %s is supported", kernel,
                  dom->guest_type, PV64_GUEST_TYPE);
        goto out;
    }
    step = "xc_dom_build_image";
    if (xc_dom_build_image(dom) != 0)
        goto out_xc;
    step = "xc_dom_boot_image";
    if (xc_dom_boot_image(dom) != 0)
        goto out_xc;
    step = "xc_dom_gnttab_init";
    if (xc_dom_gnttab_init(dom) != 0)
        goto out_xc;
    xen_pfn_t console_mfn = xc_dom_p2m(dom, dom->console_pfn);
    xen_pfn_t store_mfn = xc_dom_p2m(dom, dom->xenstore_pfn);
    if (domain_xs_skeleton((uint32_t)domid, name, (unsigned long)console_mfn, s->console_port,
                           (unsigned long)store_mfn, s->store_port, &step) != 0)
        goto out_xc;
    /* The handle stops marking a shell only once the name is there: a process killed in between
     * leaves a nameless shell (destroyed at the next start) or a named domain (the runtime's
     * recovery removes it as a half-made container), never a domain nobody recognises. */
    step = "xc_domain_sethandle";
    if (xc_domain_sethandle(xch, (uint32_t)domid, handle) != 0)
        goto out_xc;
    shell_free(s);
    return 0;

out_xc:
    rc = fail(err, errlen, rc, "build %s: %s failed: %s", name, step, xc_reason());
out:
    /* A shell that failed half-way is not reusable: its memory may hold part of an image. */
    xc_domain_destroy(xch, (uint32_t)domid);
    xs_forget((uint32_t)domid);
    shell_free(s);
    return rc;
}

int sfx_destroy(int domid, char *err, int errlen)
{
    if (domid <= 0)
        return fail(err, errlen, SFX_EINVAL, "refusing to destroy domain %d", domid);
    shell_free(shell_take((uint32_t)domid));
    int rc = xc_domain_destroy(xch, (uint32_t)domid);
    int gone = rc != 0 && errno == ESRCH;
    /* The backend's directory going away makes netback unregister the vif (the bridge drops it). */
    xs_forget((uint32_t)domid);
    if (rc != 0 && !gone)
        return fail(err, errlen, SFX_EFAIL, "xc_domain_destroy(%d): %s", domid, xc_reason());
    return gone ? fail(err, errlen, SFX_ENOENT, "no domain %d", domid) : 0;
}

int sfx_is_shell(int domid)
{
    pthread_mutex_lock(&lock);
    struct shell *s = shells;
    while (s && s->domid != (uint32_t)domid)
        s = s->next;
    pthread_mutex_unlock(&lock);
    return s != NULL;
}
