/* list.c: every domain from one hypercall.
 *
 * libxl_list_domain asks Xen once more per domain (its security label, libxl_flask_sid_to_context),
 * so a list cost time in proportion to the domains held: 0.1-0.2 s for ~150 domains in an emulated
 * dom0, and the shim lists on every create (is the name free?). Here: XEN_SYSCTL_getdomaininfolist
 * in chunks, each domain as SFX_DOMAIN_SLOTS int64 slots in the caller's buffer (sfxen.h). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sfxen.h"

#define CHUNK 256

static int64_t pages_kib(uint64_t pages)
{
    const uint64_t kib_per_page = XC_PAGE_SIZE / 1024;
    return pages > (uint64_t)INT64_MAX / kib_per_page ? INT64_MAX : (int64_t)(pages * kib_per_page);
}

static void put(int64_t *slots, const xc_domaininfo_t *d)
{
    int64_t state = 0;
    if (d->flags & XEN_DOMINF_dying)
        state |= SFX_DOM_DYING;
    if (d->flags & XEN_DOMINF_shutdown)
        state |= SFX_DOM_SHUTDOWN;
    if (d->flags & XEN_DOMINF_paused)
        state |= SFX_DOM_PAUSED;
    if (d->flags & XEN_DOMINF_blocked)
        state |= SFX_DOM_BLOCKED;
    if (d->flags & XEN_DOMINF_running)
        state |= SFX_DOM_RUNNING;
    if (d->flags & XEN_DOMINF_hvm_guest)
        state |= SFX_DOM_HVM;
    slots[SFX_DOMAIN_DOMID] = d->domain;
    slots[SFX_DOMAIN_STATE] = state;
    slots[SFX_DOMAIN_SHUTDOWN_REASON] =
        (d->flags & XEN_DOMINF_shutdown)
            ? (int64_t)((d->flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask)
            : -1;
    slots[SFX_DOMAIN_VCPUS_ONLINE] = d->nr_online_vcpus;
    slots[SFX_DOMAIN_MAX_VCPU_ID] = d->max_vcpu_id;
    slots[SFX_DOMAIN_KIB] = pages_kib(d->tot_pages);
    slots[SFX_DOMAIN_MAX_KIB] = pages_kib(d->max_pages);
    slots[SFX_DOMAIN_CPU_NS] = d->cpu_time > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d->cpu_time;
    memcpy(&slots[SFX_DOMAIN_HANDLE], d->handle, sizeof(d->handle));
}

int sfx_list_domains(int64_t *out, int max, char *err, int errlen)
{
    if (!out || max <= 0)
        return fail(err, errlen, SFX_EINVAL, "list of domains: no room (max %d)", max);
    xc_domaininfo_t *info = calloc(CHUNK, sizeof(*info));
    if (!info)
        return fail(err, errlen, SFX_EFAIL, "list of domains: out of memory");
    int n = 0;
    uint32_t next = 0;
    while (n < max) {
        int want = max - n < CHUNK ? max - n : CHUNK;
        int got = xc_domain_getinfolist(xch, next, (unsigned int)want, info);
        if (got < 0) {
            free(info);
            return fail(err, errlen, SFX_EFAIL, "list of domains: xc_domain_getinfolist: %s", xc_reason());
        }
        for (int i = 0; i < got; i++)
            put(out + (size_t)(n + i) * SFX_DOMAIN_SLOTS, &info[i]);
        n += got;
        if (got < want)
            break;
        next = (uint32_t)info[got - 1].domain + 1;
    }
    free(info);
    return n;
}
