/* @releaseDomain as a pipe: xenstored fires it when a domain shuts down, crashes or goes away, so
 * the shim learns of exits from an event instead of listing every domain twice a second. The thread
 * blocks in xs_read_watch on its own XenStore connection (never the builder's) and writes one byte
 * per event into a non-blocking pipe: a full pipe already says "something happened", so a write that
 * would block is dropped. The read end is for an event loop (Node wraps it as a pipe socket). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

#include "internal.h"
#include "sfxen.h"

struct release_watch {
    struct xs_handle *xs;
    int wfd;
};

static void *release_loop(void *arg)
{
    struct release_watch *w = arg;
    for (;;) {
        unsigned int n;
        char **ev = xs_read_watch(w->xs, &n);
        if (!ev) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        free(ev);
        const char c = 'r';
        if (write(w->wfd, &c, 1) < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            break; /* the reader closed its end */
    }
    close(w->wfd); /* EOF tells the reader the watch ended */
    xs_close(w->xs);
    free(w);
    return NULL;
}

int sfx_release_watch(char *err, int errlen)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return fail(err, errlen, SFX_EFAIL, "pipe: %s", strerror(errno));
    struct release_watch *w = calloc(1, sizeof(*w));
    if (!w) {
        close(p[0]);
        close(p[1]);
        return fail(err, errlen, SFX_EFAIL, "out of memory");
    }
    w->wfd = p[1];
    int flags = fcntl(p[1], F_GETFL);
    w->xs = xs_open(0);
    const char *step = NULL;
    if (flags < 0 || fcntl(p[1], F_SETFL, flags | O_NONBLOCK) != 0)
        step = "fcntl";
    else if (!w->xs)
        step = "xs_open";
    else if (!xs_watch(w->xs, "@releaseDomain", "sfxen-release"))
        step = "xs_watch @releaseDomain";
    pthread_t t;
    int rc = step ? 0 : pthread_create(&t, NULL, release_loop, w);
    if (step || rc != 0) {
        int e = step ? errno : rc;
        if (w->xs)
            xs_close(w->xs);
        free(w);
        close(p[0]);
        close(p[1]);
        return fail(err, errlen, SFX_EFAIL, "release watch: %s: %s", step ? step : "pthread_create",
                    strerror(e));
    }
    pthread_detach(t);
    return p[0];
}
