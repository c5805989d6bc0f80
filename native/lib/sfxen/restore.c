/*
 * libsfxen's restore side, in-process over libxenguest: the new domain is made bare (ceilings and
 * event channels, as a shell is), xc_domain_restore fills it from the caller's fd (a file or the
 * migration socket) and seeds its grant table, then the XenStore skeleton sfx_execute writes makes
 * it a guest again: the console and store rings are the frames the stream's start_info names,
 * translated by libxenguest to this host's MFNs. The domain is left paused; vifs are the caller's
 * (sfx_vif_write/sfx_vif_attach, as at creation).
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"
#include "stream.h"

#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int sfx_restore(int fd, const char *name, const char *uuid, int mem_mib, int max_mem_mib,
                int vcpus, int max_vcpus, char *err, int errlen)
{
    uint8_t handle[16];
    if (fd < 0 || !name || !*name || strlen(name) > 64 || !uuid || parse_uuid(uuid, handle) != 0 ||
        mem_mib < 1 || max_mem_mib < mem_mib || vcpus < 1 || max_vcpus < vcpus || max_vcpus > 128)
        return fail(err, errlen, SFX_EINVAL, "bad restore: fd, name, uuid, memory or vcpus");
    if (!xsh)
        return fail(err, errlen, SFX_EFAIL, "library not opened");
    int rc = check_free_memory(name, mem_mib, err, errlen);
    if (rc)
        return rc;
    rc = read_header(fd, err, errlen);
    if (rc)
        return rc;

    struct xc_call c;
    if (xc_call_open(&c) != 0)
        return fail(err, errlen, SFX_EFAIL, "cannot open /dev/xen/privcmd: %s", strerror(errno));
    struct bare_domain bare = {0};
    int made = 0, restored = 0;
    const char *step = "reading the stream";
    unsigned long store_mfn = 0, console_mfn = 0;
    for (;;) {
        struct sr_rec rec;
        if (read_all(fd, &rec, sizeof(rec)) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore %s: reading a record: %s", name,
                      errno ? strerror(errno) : "stream ended early");
            goto undo;
        }
        uint32_t type = le32toh(rec.type), length = le32toh(rec.length);
        if (type == SR_REC_END)
            break;
        if (type == SR_REC_EMULATOR_XENSTORE_DATA || type == SR_REC_EMULATOR_CONTEXT) {
            /* A device model's state: PV domains have none that matters here. */
            if (skip_body(fd, length) != 0) {
                rc = fail(err, errlen, SFX_EFAIL, "restore %s: reading a record: %s", name,
                          errno ? strerror(errno) : "stream ended early");
                goto undo;
            }
            continue;
        }
        if (type != SR_REC_LIBXC_CONTEXT || length != 0 || restored) {
            rc = fail(err, errlen, SFX_EINVAL, "restore %s: unexpected record %u (length %u)", name,
                      type, length);
            goto undo;
        }
        if (domain_create_bare(c.xch, handle, max_mem_mib, max_vcpus, &bare, &step) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore %s: %s failed: %s", name, step,
                      xc_call_reason(&c));
            goto undo;
        }
        made = 1;
        /* Named from the start: a process killed mid-restore leaves a domain recovery can find by
         * name (a paused sf-* orphan), as libxl's restore would. */
        if (xs_writef(XBT_NULL, name, "/local/domain/%u/name", bare.domid) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore %s: XenStore write of its name: %s", name,
                      strerror(errno));
            goto undo;
        }
        struct restore_callbacks cb = {.static_data_done = static_data_done};
        if (xc_domain_restore(c.xch, fd, bare.domid, bare.store_port, &store_mfn, 0,
                              bare.console_port, &console_mfn, 0, XC_STREAM_PLAIN, &cb, -1) != 0) {
            rc = fail(err, errlen, SFX_EFAIL, "restore %s: xc_domain_restore: %s", name,
                      xc_call_reason(&c));
            goto undo;
        }
        restored = 1;
    }
    if (!restored) {
        rc = fail(err, errlen, SFX_EINVAL, "restore %s: the stream holds no domain", name);
        goto undo;
    }
    if (domain_xs_skeleton(bare.domid, name, console_mfn, bare.console_port, store_mfn,
                           bare.store_port, &step) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "restore %s: %s failed: %s", name, step,
                  strerror(errno));
        goto undo;
    }
    xc_call_close(&c);
    return (int)bare.domid;

undo:
    if (made) {
        char path[48];
        xc_domain_destroy(c.xch, bare.domid);
        snprintf(path, sizeof(path), "/local/domain/%u", bare.domid);
        xs_rm(xsh, XBT_NULL, path);
    }
    xc_call_close(&c);
    return rc;
}
