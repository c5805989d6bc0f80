/*
 * libsfxen's restore side, in-process over libxenguest, in two calls so the caller can write the
 * domain's vifs between them (sfx_vif_write, as at a create) and netback makes their interfaces
 * while the stream is still being read:
 *   sfx_restore_begin: a bare domain (ceilings and event channels, as a shell has, no memory),
 *                      named, its XenStore directory handed to the guest.
 *   sfx_restore_fill:  xc_domain_restore fills it from the caller's fd (a checkpoint file or the
 *                      migration's socket; pages sent without data are expanded to zeros on the
 *                      way, zeropages.c) and seeds its grant table; then xenconsoled's nodes
 *                      (dom0's, as at a create) and xs_introduce_domain. The console and store
 *                      rings are the frames the stream's start_info names, translated by
 *                      libxenguest to this host's MFNs.
 * The domain is left paused; a failed fill leaves it for the caller to destroy (sfx_destroy).
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
#include <sys/socket.h>
#include <unistd.h>

#include <xenguest.h>

/* Streams of this format always carry the CPUID and MSR policy; one without is refused. */
static int static_data_done(unsigned int missing, void *data)
{
    (void)data;
    return missing ? -1 : 0;
}

/* Reads and drops a record body (with its padding to 8 bytes). */
static int skip_body(int fd, uint32_t length)
{
    char buf[4096];
    size_t left = ((size_t)length + 7) & ~(size_t)7;
    while (left > 0) {
        size_t n = left < sizeof(buf) ? left : sizeof(buf);
        if (read_all(fd, buf, n) != 0)
            return -1;
        left -= n;
    }
    return 0;
}

/* Between the caller's fd and libxenguest: pages sent without data (zeropages.c) become pages of
 * zeros again, whatever Xen's allocator hands out. Stops right after libxc's END record, so the
 * caller reads libxl's records after it from the same fd. */
struct expand_job {
    int in, out, rc;
    long cpu_ms;
    struct sfx_zero_stats st;
    char why[160];
};

static void *expand_thread(void *p)
{
    struct expand_job *j = p;
    j->rc = sfx_zero_filter(j->in, j->out, SFX_ZERO_EXPAND, &j->st, j->why, sizeof(j->why));
    struct timespec cpu;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
    j->cpu_ms = cpu.tv_sec * 1000 + cpu.tv_nsec / 1000000;
    close(j->out); /* libxenguest sees the end */
    return NULL;
}

static int read_header(int fd, char *err, int errlen)
{
    struct sr_hdr hdr;
    if (read_all(fd, &hdr, sizeof(hdr)) != 0)
        return fail(err, errlen, SFX_EINVAL, "reading the stream header: %s",
                    errno ? strerror(errno) : "stream ended");
    if (be64toh(hdr.ident) != SR_IDENT || be32toh(hdr.version) != SR_VERSION)
        return fail(err, errlen, SFX_EINVAL,
                    "not a Xen migration stream v2 (ident %#llx, version %u)",
                    (unsigned long long)be64toh(hdr.ident), be32toh(hdr.version));
    if (be32toh(hdr.options) & SR_OPT_BIG_ENDIAN)
        return fail(err, errlen, SFX_EINVAL, "big-endian streams are not supported");
    return 0;
}

int sfx_restore_begin(const char *name, const char *uuid, int mem_mib, int max_mem_mib, int vcpus,
                      int max_vcpus, uint32_t *ports, char *err, int errlen)
{
    uint8_t handle[16];
    if (!name || !*name || strlen(name) > 64 || !uuid || parse_uuid(uuid, handle) != 0 ||
        mem_mib < 1 || max_mem_mib < mem_mib || vcpus < 1 || max_vcpus < vcpus ||
        max_vcpus > 128 || !ports)
        return fail(err, errlen, SFX_EINVAL, "bad restore: name, uuid, memory or vcpus");
    if (!xsh)
        return fail(err, errlen, SFX_EFAIL, "library not opened");
    int rc = check_free_memory(name, mem_mib, err, errlen);
    if (rc)
        return rc;
    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return fail(err, errlen, SFX_EFAIL, "cannot open /dev/xen/privcmd: %s", strerror(errno));
    struct bare_domain bare = {0};
    const char *step = "";
    if (domain_create_bare(c.xch, handle, max_mem_mib, max_vcpus, &bare, &step) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "restore %s: %s failed: %s", name, step,
                  xc_call_reason(&c));
        xc_call_close(&c);
        return rc;
    }
    xc_call_close(&c);
    /* Named from the start (a process killed mid-restore leaves a domain recovery finds by name,
     * a paused sf-* orphan, as libxl's restore would), and its directory the guest's, so what dom0
     * writes under it before the guest runs (its vifs' frontends) is the guest's as at a create. */
    char dir[48];
    snprintf(dir, sizeof(dir), "/local/domain/%u", bare.domid);
    if (xs_writef(XBT_NULL, name, "%s/name", dir) != 0 ||
        xs_perms(XBT_NULL, dir, bare.domid, bare.domid) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "restore %s: XenStore writes: %s", name, strerror(errno));
        sfx_destroy((int)bare.domid, NULL, 0);
        return rc;
    }
    ports[0] = bare.store_port;
    ports[1] = bare.console_port;
    return (int)bare.domid;
}

int sfx_restore_fill(int domid, int fd, unsigned int store_port, unsigned int console_port,
                     int64_t *stats, char *err, int errlen)
{
    struct timespec start, xc_done;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (stats)
        memset(stats, 0, SFX_RESTORE_STATS * sizeof(*stats));
    if (domid <= 0 || fd < 0)
        return fail(err, errlen, SFX_EINVAL, "bad restore: domid %d, fd %d", domid, fd);
    int rc = read_header(fd, err, errlen);
    if (rc)
        return rc;
    if (stats)
        stats[SFX_RESTORE_WAIT_MS] = ms_since(&start);
    long filter_cpu_ms = 0;
    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return fail(err, errlen, SFX_EFAIL, "cannot open /dev/xen/privcmd: %s", strerror(errno));
    int restored = 0;
    unsigned long store_mfn = 0, console_mfn = 0;
    for (;;) {
        struct sr_rec rec;
        if (read_all(fd, &rec, sizeof(rec)) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: reading a record: %s", domid,
                      errno ? strerror(errno) : "stream ended early");
            goto out;
        }
        uint32_t type = le32toh(rec.type), length = le32toh(rec.length);
        if (type == SR_REC_END)
            break;
        if (type == SR_REC_EMULATOR_XENSTORE_DATA || type == SR_REC_EMULATOR_CONTEXT) {
            /* A device model's state: PV domains have none that matters here. */
            if (skip_body(fd, length) != 0) {
                rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: reading a record: %s",
                          domid, errno ? strerror(errno) : "stream ended early");
                goto out;
            }
            continue;
        }
        if (type != SR_REC_LIBXC_CONTEXT || length != 0 || restored) {
            rc = fail(err, errlen, SFX_EINVAL, "restore of domain %d: unexpected record %u (length %u)",
                      domid, type, length);
            goto out;
        }
        struct restore_callbacks cb = {.static_data_done = static_data_done};
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: pipe: %s", domid,
                      strerror(errno));
            goto out;
        }
        fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
        struct expand_job job = {.in = fd, .out = p[1]};
        pthread_t thread;
        int terr = pthread_create(&thread, NULL, expand_thread, &job);
        if (terr != 0) {
            close(p[0]);
            close(p[1]);
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: thread: %s", domid,
                      strerror(terr));
            goto out;
        }
        int xrc = xc_domain_restore(c.xch, p[0], (uint32_t)domid, store_port, &store_mfn, 0,
                                    console_port, &console_mfn, 0, XC_STREAM_PLAIN, &cb, -1);
        int xerr = errno;
        close(p[0]); /* a filter still writing gets EPIPE and stops */
        if (xrc != 0)
            shutdown(fd, SHUT_RD); /* and one waiting on a socket gets its end (a file: ENOTSOCK) */
        pthread_join(thread, NULL);
        if (xrc != 0) {
            errno = xerr;
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: xc_domain_restore: %s", domid,
                      xc_call_reason(&c));
            goto out;
        }
        if (job.rc != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: %s", domid, job.why);
            goto out;
        }
        filter_cpu_ms = job.cpu_ms;
        restored = 1;
    }
    if (!restored) {
        rc = fail(err, errlen, SFX_EINVAL, "restore of domain %d: the stream holds no domain", domid);
        goto out;
    }
    clock_gettime(CLOCK_MONOTONIC, &xc_done);
    /* xenconsoled's nodes stay dom0's (the guest may read them), as at a create. */
    char mfn[32], port[16], path[64];
    snprintf(mfn, sizeof(mfn), "%lu", console_mfn);
    snprintf(port, sizeof(port), "%u", console_port);
    const char *keys[2] = {"ring-ref", "port"}, *vals[2] = {mfn, port};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "/local/domain/%d/console/%s", domid, keys[i]);
        if (xs_writef(XBT_NULL, vals[i], "%s", path) != 0 ||
            xs_perms(XBT_NULL, path, 0, (uint32_t)domid) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: XenStore write %s: %s", domid,
                      path, strerror(errno));
            goto out;
        }
    }
    if (!xs_introduce_domain(xsh, (unsigned int)domid, store_mfn, store_port)) {
        rc = fail(err, errlen, SFX_EFAIL, "restore of domain %d: xs_introduce_domain: %s", domid,
                  strerror(errno));
        goto out;
    }
    if (stats) {
        stats[SFX_RESTORE_XC_MS] = (xc_done.tv_sec - start.tv_sec) * 1000 +
                                   (xc_done.tv_nsec - start.tv_nsec) / 1000000;
        stats[SFX_RESTORE_XS_MS] = ms_since(&xc_done);
        stats[SFX_RESTORE_FILTER_CPU_MS] = filter_cpu_ms;
    }
    rc = 0;
out:
    xc_call_close(&c);
    return rc;
}
