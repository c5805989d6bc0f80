/*
 * One XenStore transaction in three round trips instead of one per request: libxenstore waits for
 * each reply before it sends the next request, and under emulation a round trip to xenstored costs
 * milliseconds (more while another vCPU is busy). Here the transaction's writes go out together on
 * this library's own connection to xenstored's socket (dom0's, privileged) and their replies are
 * read after: start, {writes and permissions}, end. xenstored answers a connection's requests in
 * order, each reply echoing its req_id.
 * Without the socket (xenstored reachable only through /dev/xen/xenbus), or when it fails mid-way,
 * the caller falls back to libxenstore (XSB_NO_SOCKET).
 */
#define _GNU_SOURCE
#include "internal.h"
#include "stream.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>

#define DEFAULT_SOCKET "/var/run/xenstored/socket"
#define MAX_OPS 32
#define BODY_MAX 256

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static int conn = -1;

static int conn_open(void)
{
    const char *path = getenv("XENSTORED_PATH");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (!path || !*path)
        path = DEFAULT_SOCKET;
    if (strlen(path) >= sizeof(addr.sun_path))
        return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* read_all, with EPIPE for a stream that ended. */
static int read_some(int fd, void *buf, size_t n)
{
    if (read_all(fd, buf, n) == 0)
        return 0;
    if (errno == 0)
        errno = EPIPE;
    return -1;
}

/* Appends one request (header + payload parts, each part's length given) to out. */
static size_t put(char *out, size_t at, size_t cap, uint32_t type, uint32_t req, uint32_t tx,
                  const char *a, size_t alen, const char *b, size_t blen)
{
    struct xsd_sockmsg h = {.type = type, .req_id = req, .tx_id = tx, .len = (uint32_t)(alen + blen)};
    if (at + sizeof(h) + alen + blen > cap)
        return 0;
    memcpy(out + at, &h, sizeof(h));
    memcpy(out + at + sizeof(h), a, alen);
    memcpy(out + at + sizeof(h) + alen, b, blen);
    return at + sizeof(h) + alen + blen;
}

/* Reads one reply; 0 and the body (NUL-terminated, truncated to BODY_MAX - 1), or -1 (errno).
 * An XS_ERROR reply sets errno from its name (EAGAIN for a commit that lost a race). */
static int reply(int fd, uint32_t req, char body[BODY_MAX])
{
    struct xsd_sockmsg h;
    if (read_some(fd, &h, sizeof(h)) != 0)
        return -1;
    if (h.len > XENSTORE_PAYLOAD_MAX) {
        errno = EPROTO;
        return -1;
    }
    char tmp[XENSTORE_PAYLOAD_MAX];
    if (read_some(fd, tmp, h.len) != 0)
        return -1;
    size_t keep = h.len < BODY_MAX - 1 ? h.len : BODY_MAX - 1;
    memcpy(body, tmp, keep);
    body[keep] = 0;
    if (h.req_id != req) {
        errno = EPROTO;
        return -1;
    }
    if (h.type == XS_ERROR) {
        errno = EIO;
        for (size_t i = 0; i < sizeof(xsd_errors) / sizeof(xsd_errors[0]); i++)
            if (strcmp(body, xsd_errors[i].errstring) == 0)
                errno = xsd_errors[i].errnum;
        return -1;
    }
    return 0;
}

/* One attempt on fd: 0 committed, -1 with errno (EAGAIN: lost a race, try again). A failure that
 * leaves the connection's stream in doubt sets *broken. */
static int attempt(int fd, const struct xsb_op *ops, int n, int *broken)
{
    char buf[16384], body[BODY_MAX];
    static const char nul = 0;
    *broken = 1;
    size_t at = put(buf, 0, sizeof(buf), XS_TRANSACTION_START, 1, 0, &nul, 1, "", 0);
    if (write_all(fd, buf, at) != 0 || reply(fd, 1, body) != 0)
        return -1;
    uint32_t tx = (uint32_t)strtoul(body, NULL, 10);
    at = 0;
    for (int i = 0; i < n; i++) {
        size_t plen = strlen(ops[i].path) + 1;
        char perms[32];
        const char *v = ops[i].value;
        size_t vlen = strlen(v ? v : "");
        if (ops[i].perms) {
            /* "n<owner>\0r<reader>\0", or the owner alone (as xs_perms). */
            int a = snprintf(perms, sizeof(perms), "n%u", ops[i].owner) + 1;
            int b = ops[i].owner == ops[i].reader
                        ? 0
                        : snprintf(perms + a, sizeof(perms) - (size_t)a, "r%u", ops[i].reader) + 1;
            v = perms;
            vlen = (size_t)(a + b);
        }
        at = put(buf, at, sizeof(buf), ops[i].perms ? XS_SET_PERMS : XS_WRITE, (uint32_t)i + 2, tx,
                 ops[i].path, plen, v ? v : "", vlen);
        if (at == 0) {
            errno = E2BIG;
            return -1;
        }
    }
    if (write_all(fd, buf, at) != 0)
        return -1;
    int failed = 0, err = 0;
    for (int i = 0; i < n; i++) {
        if (reply(fd, (uint32_t)i + 2, body) != 0) {
            if (errno == EPROTO || errno == EPIPE)
                return -1;
            if (!failed)
                err = errno;
            failed = 1;
        }
    }
    at = put(buf, 0, sizeof(buf), XS_TRANSACTION_END, (uint32_t)n + 2, tx, failed ? "F" : "T", 2,
             "", 0);
    if (write_all(fd, buf, at) != 0)
        return -1;
    int rc = reply(fd, (uint32_t)n + 2, body);
    int end_err = errno;
    if (rc != 0 && (end_err == EPROTO || end_err == EPIPE))
        return -1;
    *broken = 0;
    if (failed) {
        errno = err;
        return -1;
    }
    errno = end_err;
    return rc;
}

int xsb_transaction(const struct xsb_op *ops, int n, int *attempts)
{
    if (n < 1 || n > MAX_OPS) {
        errno = EINVAL;
        return XSB_FAILED;
    }
    pthread_mutex_lock(&conn_lock);
    int rc = XSB_FAILED;
    for (int i = 0; i < 5; i++) {
        if (conn < 0 && (conn = conn_open()) < 0) {
            rc = i == 0 ? XSB_NO_SOCKET : XSB_FAILED;
            break;
        }
        int broken = 0;
        *attempts = i + 1;
        if (attempt(conn, ops, n, &broken) == 0) {
            rc = 0;
            break;
        }
        int e = errno;
        if (broken) {
            /* The socket failed us (xenstored went away, or answered out of order): xenstored
             * drops a connection's open transaction with it, and the writes are idempotent, so
             * libxenstore's path does them again. */
            close(conn);
            conn = -1;
            rc = XSB_NO_SOCKET;
            break;
        }
        errno = e;
        if (e != EAGAIN)
            break;
    }
    int e = errno;
    pthread_mutex_unlock(&conn_lock);
    errno = e;
    return rc;
}
