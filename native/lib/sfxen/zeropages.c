/*
 * The save stream's zero-page filter. libxenguest's save sends every page of a PV guest, also the
 * ones it never touched (hello uses a few dozen of its 4096). Between libxenguest and the caller's
 * fd this rewrites each PAGE_DATA record of libxc's stream so that an all-zero ordinary page (type
 * NOTAB) goes as XEN_DOMCTL_PFINFO_XALLOC, the stream format's "populate, no data" type: any v2/v3
 * restorer (libxenguest's, so ours and libxl's) allocates that frame from Xen, which only ever hands
 * a domain scrubbed (zeroed) memory, and writes nothing into it. Page tables keep their data and
 * their type whatever they hold (the restorer pins them by type). Every other record, and the
 * image and domain headers, pass through unchanged.
 *
 * Xen does not promise zeroed memory everywhere (bootscrub=0 leaves boot-time RAM as it was, and a
 * live domain's ballooned-out pages are not scrubbed), so our restorer does not rely on it: the
 * same filter, in EXPAND mode between the fd and libxenguest's restore, turns each XALLOC entry
 * back into an ordinary page of zeros. The bytes saved are the network's and the disk's.
 *
 * libxc's stream: an image header (24 bytes, marker ~0, "XENF", version, options; big endian), a
 * domain header (16 bytes), then records {u32 type, u32 length, body padded to 8}. PAGE_DATA's
 * body: {u32 count, u32 reserved}, count u64 entries (pfn in bits 0-51, XEN_DOMCTL_PFINFO type in
 * bits 60-63 as type << 32), then one page of data per entry whose type carries data.
 */
#define _GNU_SOURCE
#include "sfxen.h"
#include "internal.h"
#include "stream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/uio.h>

#include <xenctrl.h>

#define XC_IHDR_MARKER 0xffffffffffffffffULL
#define XC_IHDR_ID 0x58454e46u /* "XENF" */
#define XC_REC_END 0u
#define XC_REC_PAGE_DATA 1u
#define SR_PAGE 4096u
#define XC_PFN_TYPE_MASK 0xf000000000000000ULL
/* The biggest record the filter holds at once: libxenguest's batches are 1024 pages. */
#define XC_REC_MAX (64u << 20)

struct xc_ihdr {
    uint64_t marker;
    uint32_t id;
    uint32_t version;
    uint16_t options;
    uint16_t reserved1;
    uint32_t reserved2;
};
struct xc_dhdr {
    uint32_t type;
    uint16_t page_shift;
    uint16_t reserved;
    uint32_t xen_major;
    uint32_t xen_minor;
};

static int page_has_data(uint32_t type)
{
    return type != XEN_DOMCTL_PFINFO_XTAB && type != XEN_DOMCTL_PFINFO_XALLOC &&
           type != XEN_DOMCTL_PFINFO_BROKEN;
}

/* Early exit on the first non-zero word; a used page almost always differs in its first bytes. */
static int page_is_zero(const unsigned char *p)
{
    const uint64_t *w = (const uint64_t *)p;
    if (w[0] | w[1] | w[2] | w[3])
        return 0;
    return memcmp(p, p + 32, SR_PAGE - 32) == 0;
}

static int why(char *err, size_t errlen, const char *fmt, const char *detail)
{
    snprintf(err, errlen, fmt, detail);
    return -1;
}

/* A PAGE_DATA body's entry count, 0 when it has none or they do not fit in its length. */
static uint32_t page_data_count(const unsigned char *body, uint32_t length)
{
    uint32_t count = 0;
    if (length >= 8)
        memcpy(&count, body, sizeof(count));
    return length >= 8 && (uint64_t)count * 8 <= length - 8 ? count : 0;
}

/* Rewrites one PAGE_DATA body (buf + 8, the record header's 8 bytes in front) in place; returns
 * its new length, or -1 when the record does not add up. */
static long squeeze_page_data(unsigned char *body, uint32_t length, int skip,
                              struct sfx_zero_stats *st)
{
    uint32_t count = page_data_count(body, length);
    if (count == 0)
        return -1;
    uint64_t *entries = (uint64_t *)(body + 8);
    unsigned char *in = body + 8 + (size_t)count * 8, *out = in;
    const unsigned char *end = body + length;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t type = (uint32_t)((entries[i] & XC_PFN_TYPE_MASK) >> 32);
        if (!page_has_data(type))
            continue;
        if (in + SR_PAGE > end)
            return -1;
        st->pages++;
        int zero = type == XEN_DOMCTL_PFINFO_NOTAB && page_is_zero(in);
        st->zero_pages += zero;
        if (zero && skip) {
            entries[i] = (entries[i] & ~XC_PFN_TYPE_MASK) |
                         ((uint64_t)XEN_DOMCTL_PFINFO_XALLOC << 32);
        } else {
            if (out != in)
                memmove(out, in, SR_PAGE);
            out += SR_PAGE;
        }
        in += SR_PAGE;
    }
    if (in != end)
        return -1;
    return out - body;
}

/* A page of zeros the expand hands to the pipe by reference: never written. */
static const unsigned char zero_page[SR_PAGE] __attribute__((aligned(SR_PAGE)));
#define ZERO_IOV 64

/* Writes n pages of zeros to out. Into a pipe (libxenguest's, in the restorer) they go by
 * reference (vmsplice: no memset, no copy into the pipe); anywhere else they are copied. */
static int put_zero_pages(int out, size_t n, int *by_reference)
{
    struct iovec iov[ZERO_IOV];
    size_t skip = 0; /* bytes of the first page a partial write already sent */
    while (n > 0) {
        size_t k = n < ZERO_IOV ? n : ZERO_IOV;
        for (size_t i = 0; i < k; i++)
            iov[i] = (struct iovec){.iov_base = (void *)zero_page, .iov_len = SR_PAGE};
        iov[0].iov_base = (char *)iov[0].iov_base + skip;
        iov[0].iov_len -= skip;
        ssize_t w = *by_reference ? vmsplice(out, iov, k, 0) : writev(out, iov, (int)k);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && *by_reference && (errno == EBADF || errno == EINVAL)) {
            *by_reference = 0; /* not a pipe */
            continue;
        }
        if (w <= 0)
            return -1;
        size_t done = skip + (size_t)w;
        n -= done / SR_PAGE;
        skip = done % SR_PAGE;
    }
    return 0;
}

/* The restorer's side: writes one PAGE_DATA record (its header rec, its body) to out with its
 * XALLOC entries made NOTAB and a page of zeros in their place. Returns the new body's length, or
 * -1 with *bad set when the record does not add up (nothing written then), clear when out failed. */
static long expand_page_data(int out, struct sr_rec rec, const unsigned char *body,
                            struct sfx_zero_stats *st, int *by_reference, int *bad)
{
    uint32_t count = page_data_count(body, rec.length);
    *bad = 1;
    if (count == 0)
        return -1;
    size_t head = 8 + (size_t)count * 8;
    const uint64_t *entries = (const uint64_t *)(body + 8);
    size_t data = 0, zeros = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t type = (uint32_t)((entries[i] & XC_PFN_TYPE_MASK) >> 32);
        zeros += type == XEN_DOMCTL_PFINFO_XALLOC;
        data += page_has_data(type);
    }
    if (head + data * SR_PAGE != rec.length || head + (data + zeros) * SR_PAGE > XC_REC_MAX)
        return -1;
    *bad = 0;
    unsigned char *xhead = malloc(head);
    if (!xhead)
        return -1;
    memcpy(xhead, body, head);
    uint64_t *xentries = (uint64_t *)(xhead + 8);
    for (uint32_t i = 0; i < count; i++)
        if ((entries[i] & XC_PFN_TYPE_MASK) >> 32 == XEN_DOMCTL_PFINFO_XALLOC)
            xentries[i] = entries[i] & ~XC_PFN_TYPE_MASK; /* NOTAB */
    rec.length = (uint32_t)(head + (data + zeros) * SR_PAGE);
    int rc = write_all(out, &rec, sizeof(rec)) || write_all(out, xhead, head) ? -1 : 0;
    free(xhead);
    /* Runs in entry order: data pages straight from the record, zero pages by reference. */
    const unsigned char *in = body + head;
    for (uint32_t i = 0; i < count && rc == 0;) {
        uint32_t type = (uint32_t)((entries[i] & XC_PFN_TYPE_MASK) >> 32);
        uint32_t j = i + 1;
        if (type == XEN_DOMCTL_PFINFO_XALLOC) {
            while (j < count && (entries[j] & XC_PFN_TYPE_MASK) >> 32 == XEN_DOMCTL_PFINFO_XALLOC)
                j++;
            rc = put_zero_pages(out, j - i, by_reference);
            st->pages += j - i;
            st->zero_pages += j - i;
        } else if (page_has_data(type)) {
            size_t run = 1;
            for (; j < count; j++) {
                uint32_t t = (uint32_t)((entries[j] & XC_PFN_TYPE_MASK) >> 32);
                if (t == XEN_DOMCTL_PFINFO_XALLOC)
                    break;
                run += page_has_data(t);
            }
            rc = write_all(out, in, run * SR_PAGE);
            in += run * SR_PAGE;
            st->pages += run;
        }
        i = j;
    }
    return rc == 0 ? (long)rec.length : -1;
}

/* A record buffer that grows as needed (the record header's 8 bytes in front of the body). */
static unsigned char *room(unsigned char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return *buf;
    unsigned char *grown = realloc(*buf, need);
    if (!grown)
        return NULL;
    *cap = need;
    return *buf = grown;
}

int sfx_zero_filter(int in, int out, int mode, struct sfx_zero_stats *st, char *err, int errlen)
{
    size_t elen = errlen > 0 ? (size_t)errlen : 0;
    char scratch[1];
    if (!err || elen == 0) {
        err = scratch;
        elen = sizeof(scratch);
    }
    memset(st, 0, sizeof(*st));
    unsigned char head[sizeof(struct xc_ihdr) + sizeof(struct xc_dhdr)];
    if (read_all(in, head, sizeof(head)) != 0)
        return why(err, elen, "reading libxc's stream headers: %s",
                   errno ? strerror(errno) : "stream ended");
    struct xc_ihdr ih;
    struct xc_dhdr dh;
    memcpy(&ih, head, sizeof(ih));
    memcpy(&dh, head + sizeof(ih), sizeof(dh));
    if (ih.marker != XC_IHDR_MARKER || ntohl(ih.id) != XC_IHDR_ID || dh.page_shift != 12)
        return why(err, elen, "%s", "not a libxc stream of 4 KiB pages");
    if (write_all(out, head, sizeof(head)) != 0)
        return why(err, elen, "writing the stream: %s", strerror(errno));
    st->bytes_in = st->bytes_out = sizeof(head);

    unsigned char *buf = NULL;
    size_t cap = 0;
    int by_reference = 1;
    int rc = -1;
    for (;;) {
        struct sr_rec rec;
        if (read_all(in, &rec, sizeof(rec)) != 0) {
            why(err, elen, "reading libxc's stream: %s", errno ? strerror(errno) : "stream ended");
            break;
        }
        size_t padded = ((size_t)rec.length + 7) & ~(size_t)7;
        if (padded > XC_REC_MAX) {
            why(err, elen, "%s", "a record in libxc's stream is too long");
            break;
        }
        if (!room(&buf, &cap, padded + sizeof(rec))) {
            why(err, elen, "%s", "out of memory");
            break;
        }
        if (read_all(in, buf + sizeof(rec), padded) != 0) {
            why(err, elen, "reading libxc's stream: %s", errno ? strerror(errno) : "stream ended");
            break;
        }
        st->bytes_in += sizeof(rec) + padded;
        unsigned char *rbuf = buf;
        if (rec.type == XC_REC_PAGE_DATA) {
            long n;
            if (mode == SFX_ZERO_EXPAND) {
                /* Written here, straight from the record and the zero page. */
                int bad = 0;
                long w = expand_page_data(out, rec, buf + sizeof(rec), st, &by_reference, &bad);
                if (w < 0) {
                    if (bad)
                        why(err, elen, "%s", "a PAGE_DATA record in libxc's stream does not add up");
                    else
                        why(err, elen, "writing the stream: %s", strerror(errno));
                    break;
                }
                st->bytes_out += sizeof(rec) + (size_t)w;
                continue;
            } else {
                n = squeeze_page_data(buf + sizeof(rec), rec.length, mode == SFX_ZERO_SKIP, st);
            }
            if (n < 0) {
                why(err, elen, "%s", "a PAGE_DATA record in libxc's stream does not add up");
                break;
            }
            rec.length = (uint32_t)n; /* whole pages and 8-byte entries: already padded */
            padded = (size_t)n;
        }
        memcpy(rbuf, &rec, sizeof(rec));
        if (write_all(out, rbuf, sizeof(rec) + padded) != 0) {
            why(err, elen, "writing the stream: %s", strerror(errno));
            break;
        }
        st->bytes_out += sizeof(rec) + padded;
        if (rec.type == XC_REC_END) {
            rc = 0;
            break;
        }
    }
    free(buf);
    return rc;
}
