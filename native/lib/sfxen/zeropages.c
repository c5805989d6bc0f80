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

/* The restorer's side: a PAGE_DATA body whose XALLOC entries become NOTAB with a zeroed page of
 * data in their place, written to xbody (room for xcap bytes). Returns the new length, -1 when the
 * record does not add up or would not fit. */
static long expand_page_data(const unsigned char *body, uint32_t length, unsigned char *xbody,
                             size_t xcap, struct sfx_zero_stats *st)
{
    uint32_t count = page_data_count(body, length);
    if (count == 0)
        return -1;
    size_t head = 8 + (size_t)count * 8;
    const uint64_t *entries = (const uint64_t *)(body + 8);
    uint64_t *xentries = (uint64_t *)(xbody + 8);
    const unsigned char *in = body + head, *end = body + length;
    unsigned char *out = xbody + head;
    if (head > xcap)
        return -1;
    memcpy(xbody, body, 8);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t type = (uint32_t)((entries[i] & XC_PFN_TYPE_MASK) >> 32);
        xentries[i] = entries[i];
        if (type == XEN_DOMCTL_PFINFO_XALLOC) {
            if ((size_t)(out - xbody) + SR_PAGE > xcap)
                return -1;
            xentries[i] = entries[i] & ~XC_PFN_TYPE_MASK; /* NOTAB */
            memset(out, 0, SR_PAGE);
            out += SR_PAGE;
            st->pages++;
            st->zero_pages++;
        } else if (page_has_data(type)) {
            if (in + SR_PAGE > end || (size_t)(out - xbody) + SR_PAGE > xcap)
                return -1;
            memcpy(out, in, SR_PAGE);
            in += SR_PAGE;
            out += SR_PAGE;
            st->pages++;
        }
    }
    if (in != end)
        return -1;
    return out - xbody;
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

    unsigned char *buf = NULL, *xbuf = NULL;
    size_t cap = 0, xcap = 0;
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
                /* At most a page per entry, within the biggest record the filter holds. */
                uint32_t count = 0;
                if (rec.length >= 8)
                    memcpy(&count, buf + sizeof(rec), sizeof(count));
                size_t most = 8 + (size_t)count * (8 + SR_PAGE);
                if (most > XC_REC_MAX)
                    most = XC_REC_MAX;
                if (!room(&xbuf, &xcap, sizeof(rec) + most)) {
                    why(err, elen, "%s", "out of memory");
                    break;
                }
                n = expand_page_data(buf + sizeof(rec), rec.length, xbuf + sizeof(rec), most, st);
                rbuf = xbuf;
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
    free(xbuf);
    return rc;
}
