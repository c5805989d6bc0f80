/*
 * What building a domain and restoring one share: the bare domain (ceilings and the two event
 * channels, no memory yet) and the XenStore skeleton that makes it a guest dom0 serves (its name,
 * console ring and port, its directory handed over, and xenstored told where its store ring is).
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include <xenctrl.h>

int domain_create_bare(xc_interface *xch, const uint8_t handle[16], int max_mem_mib, int max_vcpus,
                       struct bare_domain *out, const char **step)
{
    struct xen_domctl_createdomain cfg = {
        .ssidref = 0,
        .flags = 0, /* PV */
        .max_vcpus = (uint32_t)max_vcpus,
        .max_evtchn_port = 1023,
        .max_grant_frames = -1,
        .max_maptrack_frames = -1,
        .grant_opts = XEN_DOMCTL_GRANT_version(2),
    };
    memcpy(cfg.handle, handle, sizeof(cfg.handle));
    uint32_t domid = 0;
    *step = "xc_domain_create";
    if (xc_domain_create(xch, &domid, &cfg) != 0)
        return -1;
    out->domid = domid;
    *step = "xc_domain_max_vcpus";
    if (xc_domain_max_vcpus(xch, domid, (unsigned int)max_vcpus) != 0)
        goto undo;
    *step = "xc_domain_setmaxmem";
    if (xc_domain_setmaxmem(xch, domid, (uint64_t)max_mem_mib * 1024 + MAXMEM_SLACK_KIB) != 0)
        goto undo;
    *step = "xc_domain_set_memmap_limit";
    if (xc_domain_set_memmap_limit(xch, domid, (unsigned long)max_mem_mib * 1024) != 0)
        goto undo;
    *step = "xc_evtchn_alloc_unbound";
    int sp = xc_evtchn_alloc_unbound(xch, domid, 0);
    int cp = sp < 0 ? -1 : xc_evtchn_alloc_unbound(xch, domid, 0);
    if (sp < 0 || cp < 0)
        goto undo;
    out->store_port = (unsigned int)sp;
    out->console_port = (unsigned int)cp;
    return 0;
undo:
    /* The caller reads the reason from xch before anything else touches it. */
    xc_domain_destroy(xch, domid);
    return -1;
}

int domain_xs_skeleton(uint32_t domid, const char *name, unsigned long console_mfn,
                       unsigned int console_port, unsigned long store_mfn, unsigned int store_port,
                       const char **step)
{
    /* What xenconsoled needs (name for its log file, the ring and its port), nothing more, written
     * while the directory is still dom0's: those nodes stay dom0-only. Then the directory becomes
     * the guest's, so what it writes itself (control/feature-*, the acknowledgement of
     * control/shutdown, its devices' rings) and what dom0 adds later is its own, as under libxl. */
    char mfn[32], port[16], dir[48];
    snprintf(dir, sizeof(dir), "/local/domain/%u", domid);
    snprintf(mfn, sizeof(mfn), "%lu", console_mfn);
    snprintf(port, sizeof(port), "%u", console_port);
    *step = "XenStore writes";
    if (xs_writef(XBT_NULL, name, "/local/domain/%u/name", domid) ||
        xs_writef(XBT_NULL, mfn, "/local/domain/%u/console/ring-ref", domid) ||
        xs_writef(XBT_NULL, port, "/local/domain/%u/console/port", domid) ||
        xs_perms(XBT_NULL, dir, domid, domid))
        return -1;
    *step = "xs_introduce_domain";
    if (!xs_introduce_domain(xsh, domid, store_mfn, store_port))
        return -1;
    return 0;
}
