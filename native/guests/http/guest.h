/* Shared declarations of the http guest: one static program that is the whole userspace (PID 1). */
#ifndef HTTP_GUEST_H
#define HTTP_GUEST_H

#include <netinet/in.h>
#include <stdint.h>

/* What the kernel command line configures (see cmdline.c for the keys). */
struct guest_config {
	int has_ip;
	struct in_addr ip;
	int prefix;
	int has_gw;
	struct in_addr gw;
	int port;
	char hostname[65];
	char iface[16];
	char modules[256]; /* comma separated; empty = pick by platform */
	char ip_text[INET_ADDRSTRLEN];
};

/* Console output; every line starts with "http: " so tests can find ours among the kernel's. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints the reason, then powers the guest off: a guest that cannot serve must not linger. */
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Milliseconds since the kernel started (CLOCK_BOOTTIME), the clock the ready line reports. */
uint64_t boot_ms(void);

int parse_cmdline(const char *cmdline, struct guest_config *cfg, char *err, int errlen);
/* Loads the NIC driver modules (and their dependencies, in order) from the initramfs. */
void load_nic_modules(const char *modules);
/* Brings up lo and the configured interface, sets the address and the default route. */
void configure_network(const struct guest_config *cfg);

/* Serves until the process gets SIGTERM; answers /healthz and /. Never returns on success. */
void serve_http(const struct guest_config *cfg, char **boot_args, int boot_argc);

#endif
