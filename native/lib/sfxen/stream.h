/* What save.c and restore.c share: libxl's migration stream v2 framing (so a stream either backend
 * wrote restores in the other) and a libxenctrl handle per call with its own last error. */
#ifndef SFXEN_STREAM_H
#define SFXEN_STREAM_H
#include <stdint.h>
#include <xenctrl.h>
#include <xentoollog.h>

/* The stream header, big endian: "LibxlFmt", version 2, options 0. Then records of an 8-byte
 * little-endian header {type, length} and a body padded to 8 bytes. */
#define SR_IDENT 0x4c6962786c466d74ULL
#define SR_VERSION 2u
#define SR_OPT_BIG_ENDIAN 1u
#define SR_REC_END 0u
#define SR_REC_LIBXC_CONTEXT 1u /* no body: libxc's own stream follows */
#define SR_REC_EMULATOR_XENSTORE_DATA 2u
#define SR_REC_EMULATOR_CONTEXT 3u

#pragma GCC visibility push(hidden)
struct sr_hdr {
    uint64_t ident;
    uint32_t version;
    uint32_t options;
};
struct sr_rec {
    uint32_t type;
    uint32_t length;
};

/* One call's libxenctrl handle: its last error is this call's alone, whatever else runs. */
struct xc_call {
    xc_interface *xch;
    xentoollog_logger_stdiostream *log;
};
int xc_call_open(struct xc_call *c);
void xc_call_close(struct xc_call *c);
const char *xc_call_reason(struct xc_call *c);

int write_all(int fd, const void *buf, size_t len);
/* 0, or -1 with errno (0 at end of stream). */
int read_all(int fd, void *buf, size_t len);
struct timespec;
long ms_since(const struct timespec *start);
#pragma GCC visibility pop
#endif
