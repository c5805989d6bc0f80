/*
 * libsfxen's save side, in-process over libxenguest: no save helper process, no script.
 *
 * sfx_save asks the guest to suspend the way a PV guest expects (XenStore control/shutdown =
 * "suspend"; it answers with SCHEDOP_shutdown(SHUTDOWN_suspend)), then xc_domain_save writes its
 * memory and vcpu state straight to the caller's fd (a file for suspend-to-disk, a socket for a
 * migration), framed as libxl's stream v2. libxenguest writes into a pipe from its own thread and
 * zeropages.c copies that to fd, sending the pages the guest never wrote without their data. The
 * domain is left suspended: the caller destroys it
 * (save) or keeps it until the target has taken over (migration), and sfx_resume cancels the
 * suspend (the guest returns from its hypercall with 1 and carries on as the same domain).
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"
#include "stream.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xenguest.h>

int xc_call_open(struct xc_call *c)
{
    c->log = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
    c->xch = xc_interface_open(c->log ? (xentoollog_logger *)c->log : NULL, NULL, 0);
    if (!c->xch) {
        xtl_logger_destroy((xentoollog_logger *)c->log);
        c->log = NULL;
        return -1;
    }
    return 0;
}

void xc_call_close(struct xc_call *c)
{
    if (c->xch)
        xc_interface_close(c->xch);
    xtl_logger_destroy((xentoollog_logger *)c->log);
    c->xch = NULL;
    c->log = NULL;
}

const char *xc_call_reason(struct xc_call *c)
{
    const xc_error *e = c->xch ? xc_get_last_error(c->xch) : NULL;
    return e && e->code != XC_ERROR_NONE ? e->message : strerror(errno);
}

int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = 0;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

long ms_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* 1 with *info filled, 0 when the domain is gone, -1 on a failed hypercall. */
static int domain_info(xc_interface *xch, uint32_t domid, xc_domaininfo_t *info)
{
    int n = xc_domain_getinfolist(xch, domid, 1, info);
    if (n < 0)
        return -1;
    return n == 1 && info->domain == domid;
}

static int shutdown_reason(const xc_domaininfo_t *info)
{
    if (!(info->flags & XEN_DOMINF_shutdown))
        return -1;
    return (int)((info->flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask);
}

struct suspend_req {
    xc_interface *xch;
    uint32_t domid;
    int timeout_ms;
    long suspend_ms;
    struct timespec suspended;
    char why[192];
};

/* xc_domain_save's suspend callback: 1 once the domain is shut down for suspend, 0 otherwise. */
static int suspend_guest(void *data)
{
    struct suspend_req *r = data;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (xs_writef(XBT_NULL, "suspend", "/local/domain/%u/control/shutdown", r->domid) != 0) {
        snprintf(r->why, sizeof(r->why), "XenStore write of control/shutdown: %s", strerror(errno));
        return 0;
    }
    for (unsigned int i = 0;; i++) {
        xc_domaininfo_t info;
        int found = domain_info(r->xch, r->domid, &info);
        if (found <= 0) {
            snprintf(r->why, sizeof(r->why), "domain %u %s while suspending", r->domid,
                     found == 0 ? "vanished" : "could not be queried");
            return 0;
        }
        int reason = shutdown_reason(&info);
        if (reason == SHUTDOWN_suspend) {
            r->suspend_ms = ms_since(&start);
            clock_gettime(CLOCK_MONOTONIC, &r->suspended);
            return 1;
        }
        if (reason >= 0) {
            snprintf(r->why, sizeof(r->why), "domain %u shut down (reason %d) instead of suspending",
                     r->domid, reason);
            return 0;
        }
        if (ms_since(&start) > r->timeout_ms)
            break;
        /* Tight at first (a unikernel answers in a few ms), then gentle on a loaded dom0. */
        usleep(i < 200 ? 250 : 2000);
    }
    /* Withdraw a request the guest never took, so it does not suspend later on its own. */
    char path[64];
    snprintf(path, sizeof(path), "/local/domain/%u/control/shutdown", r->domid);
    char *pending = xs_read(xsh, XBT_NULL, path, NULL);
    int acked = !pending || !*pending;
    if (pending && !strcmp(pending, "suspend"))
        xs_writef(XBT_NULL, "", "%s", path);
    free(pending);
    snprintf(r->why, sizeof(r->why),
             "domain %u did not suspend within %d ms (request %s): does its kernel support suspend?",
             r->domid, r->timeout_ms, acked ? "acknowledged" : "never acknowledged");
    return 0;
}

static int write_rec(int fd, uint32_t type)
{
    struct sr_rec rec = {.type = htole32(type), .length = 0};
    return write_all(fd, &rec, sizeof(rec));
}

/* libxenguest's save on its own thread, writing into the pipe zeropages.c reads. */
struct save_job {
    xc_interface *xch;
    int fd;
    uint32_t domid;
    int live;
    struct save_callbacks *cb;
    int rc, err;
};

static void *save_thread(void *p)
{
    struct save_job *j = p;
    j->rc = xc_domain_save(j->xch, j->fd, j->domid, j->live ? XCFLAGS_LIVE : 0, j->cb,
                           XC_STREAM_PLAIN, -1);
    j->err = errno;
    close(j->fd); /* the filter sees the end */
    return NULL;
}

int sfx_save(int domid, int fd, int flags, int timeout_ms, int64_t *stats, char *err, int errlen)
{
    int live = flags & SFX_SAVE_LIVE;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (domid <= 0 || fd < 0 || timeout_ms < 1 || (flags & ~(SFX_SAVE_LIVE | SFX_SAVE_ALL_PAGES)))
        return fail(err, errlen, SFX_EINVAL, "bad save: domid %d, fd %d, flags %#x, timeout %d",
                    domid, fd, flags, timeout_ms);
    if (!xsh)
        return fail(err, errlen, SFX_EFAIL, "library not opened");
    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return fail(err, errlen, SFX_EFAIL, "cannot open /dev/xen/privcmd: %s", strerror(errno));
    int rc = SFX_EFAIL;
    xc_domaininfo_t info;
    int found = domain_info(c.xch, (uint32_t)domid, &info);
    if (found <= 0) {
        rc = fail(err, errlen, found == 0 ? SFX_ENOENT : SFX_EFAIL, "no domain %d", domid);
        goto out;
    }
    if (info.flags & XEN_DOMINF_hvm_guest) {
        rc = fail(err, errlen, SFX_EINVAL, "domain %d is not a PV domain", domid);
        goto out;
    }
    if (shutdown_reason(&info) >= 0 || (info.flags & XEN_DOMINF_dying)) {
        rc = fail(err, errlen, SFX_EINVAL, "domain %d is shut down or dying: nothing to save",
                  domid);
        goto out;
    }
    if (info.flags & XEN_DOMINF_paused) {
        rc = fail(err, errlen, SFX_EINVAL,
                  "domain %d is paused: a paused guest cannot answer a suspend request", domid);
        goto out;
    }
    if (live) {
        /* Pre-copy needs log-dirty; find out before the first byte goes out, so a caller can
         * fall back to stop-and-copy on the same stream. */
        if (xc_shadow_control(c.xch, (uint32_t)domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL,
                              0) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "domain %d: failed to enable logdirty: %s (errno %d)",
                      domid, strerror(errno), errno);
            goto out;
        }
        xc_shadow_control(c.xch, (uint32_t)domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0);
    }
    struct sr_hdr hdr = {
        .ident = htobe64(SR_IDENT), .version = htobe32(SR_VERSION), .options = htobe32(0)};
    if (write_all(fd, &hdr, sizeof(hdr)) != 0 || write_rec(fd, SR_REC_LIBXC_CONTEXT) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "writing the stream header: %s", strerror(errno));
        goto out;
    }
    struct suspend_req req = {.xch = c.xch, .domid = (uint32_t)domid, .timeout_ms = timeout_ms};
    struct save_callbacks cb = {.suspend = suspend_guest, .data = &req};
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "save of domain %d: pipe: %s", domid, strerror(errno));
        goto out;
    }
    fcntl(p[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups; the default 64 KiB works too */
    struct save_job job = {
        .xch = c.xch, .fd = p[1], .domid = (uint32_t)domid, .live = live, .cb = &cb};
    pthread_t thread;
    int terr = pthread_create(&thread, NULL, save_thread, &job);
    if (terr != 0) {
        close(p[0]);
        close(p[1]);
        rc = fail(err, errlen, SFX_EFAIL, "save of domain %d: thread: %s", domid, strerror(terr));
        goto out;
    }
    struct sfx_zero_stats zs;
    char ferr[160] = "";
    struct timespec cpu0, cpu1;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu0);
    int frc = sfx_zero_filter(p[0], fd, (flags & SFX_SAVE_ALL_PAGES) ? SFX_ZERO_KEEP : SFX_ZERO_SKIP,
                              &zs, ferr, sizeof(ferr));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu1);
    close(p[0]); /* a save still writing gets EPIPE and gives up */
    pthread_join(thread, NULL);
    if (job.rc != 0) {
        errno = job.err;
        if (req.why[0])
            rc = fail(err, errlen, SFX_EFAIL, "save of domain %d: %s", domid, req.why);
        else
            rc = fail(err, errlen, SFX_EFAIL, "save of domain %d: xc_domain_save: %s", domid,
                      xc_call_reason(&c));
        goto out;
    }
    if (frc != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "save of domain %d: %s", domid, ferr);
        goto out;
    }
    if (write_rec(fd, SR_REC_END) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "writing the stream's end: %s", strerror(errno));
        goto out;
    }
    if (stats) {
        memset(stats, 0, SFX_SAVE_STATS * sizeof(*stats));
        stats[SFX_SAVE_SUSPEND_MS] = req.suspend_ms;
        stats[SFX_SAVE_SUSPENDED_AT] = req.suspended.tv_sec
                                           ? (req.suspended.tv_sec - start.tv_sec) * 1000 +
                                                 (req.suspended.tv_nsec - start.tv_nsec) / 1000000
                                           : -1;
        stats[SFX_SAVE_TOTAL_MS] = ms_since(&start);
        stats[SFX_SAVE_PAGES] = (int64_t)zs.pages;
        stats[SFX_SAVE_ZERO_PAGES] = (int64_t)zs.zero_pages;
        stats[SFX_SAVE_BYTES_IN] = (int64_t)zs.bytes_in;
        stats[SFX_SAVE_BYTES_OUT] = (int64_t)zs.bytes_out;
        stats[SFX_SAVE_FILTER_CPU_MS] = (cpu1.tv_sec - cpu0.tv_sec) * 1000 +
                                        (cpu1.tv_nsec - cpu0.tv_nsec) / 1000000;
    }
    rc = 0;
out:
    xc_call_close(&c);
    return rc;
}

int sfx_resume(int domid, char *err, int errlen)
{
    if (domid <= 0)
        return fail(err, errlen, SFX_EINVAL, "bad domid %d", domid);
    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return fail(err, errlen, SFX_EFAIL, "cannot open /dev/xen/privcmd: %s", strerror(errno));
    int rc = 0;
    xc_domaininfo_t info;
    int found = domain_info(c.xch, (uint32_t)domid, &info);
    if (found <= 0)
        rc = fail(err, errlen, found == 0 ? SFX_ENOENT : SFX_EFAIL, "no domain %d", domid);
    else if (shutdown_reason(&info) != SHUTDOWN_suspend)
        rc = 0; /* not suspended (a save that failed before suspending): nothing to undo */
    else if (xc_domain_resume(c.xch, (uint32_t)domid, 1) != 0)
        rc = fail(err, errlen, SFX_EFAIL, "resume of domain %d: xc_domain_resume: %s", domid,
                  xc_call_reason(&c));
    else if (!xs_resume_domain(xsh, (unsigned int)domid))
        rc = fail(err, errlen, SFX_EFAIL, "resume of domain %d: xs_resume_domain: %s", domid,
                  strerror(errno));
    xc_call_close(&c);
    return rc;
}

int sfx_domain_kind(int domid)
{
    if (domid < 0)
        return SFX_EINVAL;
    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return SFX_EFAIL;
    xc_domaininfo_t info;
    int found = domain_info(c.xch, (uint32_t)domid, &info);
    xc_call_close(&c);
    if (found <= 0)
        return found == 0 ? SFX_ENOENT : SFX_EFAIL;
    return (info.flags & XEN_DOMINF_hvm_guest) ? SFX_KIND_HVM : SFX_KIND_PV;
}
