/*
 * libsfxen's vifs: the frontend and backend XenStore entries of one vif in one transaction, then,
 * once netback has made vif<domid>.<devid>, the bridge attach and link up by ioctl on a socket and
 * the hotplug-status netback waits for. No vif-bridge script, no ip/brctl process.
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"

#include <errno.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/sockios.h>

/* Where the last sfx_vif_write's time went (sfx_vif_write_stats), for the phase logs. */
static pthread_mutex_t last_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    int64_t writes_us, commit_us, attempts, batched;
} last_vif_write;

static int64_t us_between(const struct timespec *a, const struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000000 + (b->tv_nsec - a->tv_nsec) / 1000;
}

/* writes: t0 -> t1, commit: t1 -> t2 (a batched transaction is all "writes"). */
static void record(const struct timespec *t0, const struct timespec *t1, const struct timespec *t2,
                   int attempts, int batched)
{
    pthread_mutex_lock(&last_lock);
    last_vif_write.writes_us = us_between(t0, t1);
    last_vif_write.commit_us = us_between(t1, t2);
    last_vif_write.attempts = attempts;
    last_vif_write.batched = batched;
    pthread_mutex_unlock(&last_lock);
}

void sfx_vif_write_stats(int64_t *out)
{
    pthread_mutex_lock(&last_lock);
    out[0] = last_vif_write.writes_us;
    out[1] = last_vif_write.commit_us;
    out[2] = last_vif_write.attempts;
    out[3] = last_vif_write.batched;
    pthread_mutex_unlock(&last_lock);
}

static int bridge_exists(const char *bridge)
{
    char path[128];
    struct stat st;
    snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", bridge);
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether the interface exists, by sysfs: if_nametoindex of a missing name makes the kernel run
 * `modprobe netdev-<name>` and wait for it (dev_load), a process per poll. */
static int iface_exists(const char *ifname)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof(path), "/sys/class/net/%s", ifname);
    return stat(path, &st) == 0;
}

static int valid_ifname(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len >= IFNAMSIZ)
        return 0;
    for (const char *c = n; *c; c++)
        if (*c == '/' || *c <= ' ' || *c > '~')
            return 0;
    return 1;
}

static int valid_mac(const char *m)
{
    unsigned int b[6];
    char tail;
    return m && strlen(m) == 17 &&
           sscanf(m, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                  &tail) == 6;
}

/* Joins `ifname` to `bridge` and brings it up, by ioctl on one socket. */
static int bridge_attach(const char *bridge, const char *ifname, char *err, int errlen)
{
    int fd = socket(AF_LOCAL, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail(err, errlen, SFX_EFAIL, "socket: %s", strerror(errno));
    struct ifreq ifr = {0};
    int rc = 0;
    memcpy(ifr.ifr_name, bridge, strnlen(bridge, IFNAMSIZ - 1));
    ifr.ifr_ifindex = (int)if_nametoindex(ifname);
    if (ifr.ifr_ifindex == 0 || (ioctl(fd, SIOCBRADDIF, &ifr) != 0 && errno != EBUSY)) {
        rc = fail(err, errlen, SFX_EFAIL, "add %s to bridge %s: %s", ifname, bridge,
                  strerror(errno));
        goto out;
    }
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
        rc = fail(err, errlen, SFX_EFAIL, "get flags of %s: %s", ifname, strerror(errno));
        goto out;
    }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0)
        rc = fail(err, errlen, SFX_EFAIL, "bring %s up: %s", ifname, strerror(errno));
out:
    close(fd);
    return rc;
}

static void rc_msg(char *err, int errlen, const char *ifname, int timeout_ms, const char *why)
{
    fail(err, errlen, SFX_EFAIL, "netback made no %s within %d ms: %s", ifname, timeout_ms,
         why ? why : "no error from netback (is xen-netback loaded?)");
}

int sfx_vif_write(int domid, int devid, const char *mac, const char *bridge, char *err,
                  int errlen)
{
    if (domid <= 0 || devid < 0 || devid > 255 || !valid_mac(mac) || !valid_ifname(bridge))
        return fail(err, errlen, SFX_EINVAL, "bad vif: domid, devid, mac or bridge name");
    if (!bridge_exists(bridge))
        return fail(err, errlen, SFX_ENOENT, "bridge %s does not exist in dom0", bridge);
    char fe[96], be[96], dom[16], dev[16];
    char p[9][128];
    snprintf(fe, sizeof(fe), "/local/domain/%d/device/vif/%d", domid, devid);
    snprintf(be, sizeof(be), "/local/domain/0/backend/vif/%d/%d", domid, devid);
    snprintf(dom, sizeof(dom), "%d", domid);
    snprintf(dev, sizeof(dev), "%d", devid);
    const char *fe_keys[4] = {"backend", "backend-id", "mac", "state"};
    const char *be_keys[5] = {"frontend-id", "handle", "mac", "state", "script"};
    for (int i = 0; i < 4; i++)
        snprintf(p[i], sizeof(p[i]), "%s/%s", fe, fe_keys[i]);
    for (int i = 0; i < 5; i++)
        snprintf(p[4 + i], sizeof(p[4 + i]), "%s/%s", be, be_keys[i]);
    char be_frontend[112];
    snprintf(be_frontend, sizeof(be_frontend), "%s/frontend", be);
    /* Frontend: the guest's (netfront writes its rings and state there), made with the guest as
     * its owner before its children, which inherit that, as libxl makes it: the directory above
     * is the guest's in a shell's skeleton but dom0's in a domain libxl built. Backend: dom0's,
     * readable by the guest; appears at once (one transaction), so netback probes it whole. */
    const struct xsb_op ops[] = {
        {fe, "", 0, 0, 0},
        {fe, NULL, 1, (uint32_t)domid, 0},
        {p[0], be, 0, 0, 0},
        {p[1], "0", 0, 0, 0},
        {p[2], mac, 0, 0, 0},
        {p[3], "1", 0, 0, 0},
        {be_frontend, fe, 0, 0, 0},
        {be, NULL, 1, 0, (uint32_t)domid},
        {p[4], dom, 0, 0, 0},
        {p[5], dev, 0, 0, 0},
        {p[6], mac, 0, 0, 0},
        {p[7], "1", 0, 0, 0},
        {p[8], "", 0, 0, 0},
    };
    int n = (int)(sizeof(ops) / sizeof(ops[0]));
    struct timespec t0, t1, t2;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int attempts = 0;
    int rc = xsb_transaction(ops, n, &attempts);
    if (rc == 0 || rc == XSB_FAILED) {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        record(&t0, &t1, &t1, attempts, 1);
        if (rc != 0)
            return fail(err, errlen, SFX_EFAIL, "XenStore transaction for vif %d.%d: %s", domid,
                        devid, strerror(errno));
        return 0;
    }
    /* No xenstored socket here: libxenstore, one round trip per request. */
    for (int attempt = 0; attempt < 5; attempt++) {
        xs_transaction_t t = xs_transaction_start(xsh);
        if (t == XBT_NULL)
            return fail(err, errlen, SFX_EFAIL, "XenStore transaction: %s", strerror(errno));
        int failed = 0;
        for (int i = 0; i < n && !failed; i++)
            failed = ops[i].perms ? xs_perms(t, ops[i].path, ops[i].owner, ops[i].reader)
                                  : xs_writef(t, ops[i].value, "%s", ops[i].path);
        if (failed) {
            int e = errno;
            xs_transaction_end(xsh, t, true);
            return fail(err, errlen, SFX_EFAIL, "XenStore writes for vif %d.%d: %s", domid, devid,
                        strerror(e));
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int committed = xs_transaction_end(xsh, t, false);
        clock_gettime(CLOCK_MONOTONIC, &t2);
        record(&t0, &t1, &t2, attempt + 1, 0);
        if (committed)
            break;
        if (errno != EAGAIN || attempt == 4)
            return fail(err, errlen, SFX_EFAIL, "XenStore commit for vif %d.%d: %s", domid,
                        devid, strerror(errno));
    }
    return 0;
}

int sfx_vif_attach(int domid, int devid, const char *bridge, int timeout_ms, char *err, int errlen)
{
    if (domid <= 0 || devid < 0 || devid > 255 || !valid_ifname(bridge))
        return fail(err, errlen, SFX_EINVAL, "bad vif: domid, devid or bridge name");
    char fe[96], be[96], probe[112];
    snprintf(fe, sizeof(fe), "/local/domain/%d/device/vif/%d", domid, devid);
    snprintf(be, sizeof(be), "/local/domain/0/backend/vif/%d/%d", domid, devid);
    snprintf(probe, sizeof(probe), "%s/frontend-id", be);
    /* netback makes vif<domid>.<devid> when it probes the backend; attach it as soon as it is. */
    char ifname[32];
    snprintf(ifname, sizeof(ifname), "vif%d.%d", domid, devid);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int i = 1; !iface_exists(ifname); i++) {
        if (i % 20 == 0) {
            /* Destroyed meanwhile: nothing will appear. (A read, not a write.) */
            char *still = xs_read(xsh, XBT_NULL, probe, NULL);
            int gone = still == NULL;
            free(still);
            if (gone)
                return fail(err, errlen, SFX_ENOENT, "vif %d.%d was removed before netback made it",
                            domid, devid);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms > timeout_ms) {
            char epath[160];
            snprintf(epath, sizeof(epath), "/local/domain/0/error%s/error", be + 15);
            char *why = xs_read(xsh, XBT_NULL, epath, NULL);
            rc_msg(err, errlen, ifname, timeout_ms, why);
            free(why);
            snprintf(epath, sizeof(epath), "/local/domain/0/error%s", be + 15);
            xs_rm(xsh, XBT_NULL, epath);
            xs_rm(xsh, XBT_NULL, be);
            xs_rm(xsh, XBT_NULL, fe);
            return SFX_EFAIL;
        }
        usleep(1000);
    }
    int rc = bridge_attach(bridge, ifname, err, errlen);
    if (rc == 0 && xs_writef(XBT_NULL, "connected", "%s/hotplug-status", be) != 0)
        rc = fail(err, errlen, SFX_EFAIL, "XenStore write %s/hotplug-status: %s", be,
                  strerror(errno));
    if (rc != 0) {
        xs_rm(xsh, XBT_NULL, be);
        xs_rm(xsh, XBT_NULL, fe);
    }
    return rc;
}
