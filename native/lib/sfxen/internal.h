/* What sfxen.c shares with vif.c inside the library (not exported to koffi's side of the API). */
#ifndef SFXEN_INTERNAL_H
#define SFXEN_INTERNAL_H
#include <stdint.h>
#include <xenstore.h>

#pragma GCC visibility push(hidden)
extern struct xs_handle *xsh;
/* Writes the message into err (if any) and returns code. */
int fail(char *err, int errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* xs_write of `value` at the printf-formatted path; 0 or -1 (errno set). */
int xs_writef(xs_transaction_t t, const char *value, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Owner `owner` (full access), `reader` may read; one entry when they are the same domain. */
int xs_perms(xs_transaction_t t, const char *path, uint32_t owner, uint32_t reader);
#pragma GCC visibility pop
#endif
