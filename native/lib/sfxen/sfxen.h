/* libsfxen's flat C API (see sfxen.c). Return values: >= 0 success (a domid where one is made),
 * negative SFX_E* codes on failure with a message in the caller's err buffer. */
#ifndef SFXEN_H
#define SFXEN_H
#include <stdint.h>

#define SFX_EFAIL -1  /* anything else: the message says what */
#define SFX_EINVAL -2 /* bad argument: not a Xen PV kernel, bad shape, bad mac... */
#define SFX_ENOMEM -3 /* Xen has not enough free memory for the shape */
#define SFX_ENOENT -4 /* no such domain / shell / bridge */

/* A prepared shell's Xen handle starts with the bytes "sf-shell", printed as this uuid prefix. */
#define SFX_SHELL_UUID_PREFIX "73662d73-6865-6c6c-"

int sfx_open(char *err, int errlen);
int sfx_free_kib(int64_t *out, char *err, int errlen);
int sfx_prepare(const char *name, int mem_mib, int max_mem_mib, int vcpus, int max_vcpus,
                char *err, int errlen);
int sfx_execute(int domid, const char *kernel, const char *initrd, const char *cmdline,
                const char *name, const char *uuid, char *err, int errlen);
/* Writes one vif's frontend and backend entries (one transaction); netback then makes the interface. */
int sfx_vif_write(int domid, int devid, const char *mac, const char *bridge, char *err,
                  int errlen);
/* Waits for netback's vif<domid>.<devid>, joins it to the bridge, brings it up, writes hotplug-status. */
int sfx_vif_attach(int domid, int devid, const char *bridge, int timeout_ms, char *err, int errlen);
int sfx_destroy(int domid, char *err, int errlen);
int sfx_is_shell(int domid);
#endif
