/* Gets the guest on the network without any userspace tools: loads the NIC driver with
 * finit_module(2), waits for the interface, then sets address, flags and default route with the
 * classic SIOC* ioctls (enough for one IPv4 address and one route; no netlink code needed). */
#include "guest.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <net/route.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Written by build-initramfs.sh: one line per driver, "name: dep.ko ... name.ko" in load order. */
#define MODULES_ORDER "/etc/modules.order"
#define MODULES_DIR "/lib/modules/"
#define IFACE_WAIT_MS 20000

/* Returns 0 or the errno; "probing" keeps an expected refusal off the console. */
static int load_module_file(const char *file, int probing)
{
	char path[256];
	snprintf(path, sizeof path, MODULES_DIR "%s", file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		say("warning: %s: %s", path, strerror(errno));
		return errno;
	}
	int error = 0;
	if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
		error = errno;
		if (!probing)
			say("warning: loading %s: %s", file, strerror(error));
	}
	close(fd);
	return error;
}

/* Loads a driver and its dependencies; returns 0 when all of them are in. */
static int load_driver(const char *name, int probing)
{
	int error = 0;
	FILE *order = fopen(MODULES_ORDER, "re");
	if (!order)
		fatal("cannot open %s: %s", MODULES_ORDER, strerror(errno));
	char line[1024];
	int found = 0;
	size_t name_len = strlen(name);
	while (!found && fgets(line, sizeof line, order)) {
		if (strncmp(line, name, name_len) != 0 || line[name_len] != ':')
			continue;
		found = 1;
		char *save = NULL;
		for (char *file = strtok_r(line + name_len + 1, " \t\n", &save); file;
		     file = strtok_r(NULL, " \t\n", &save))
			if (load_module_file(file, probing) != 0)
				error = -1;
	}
	fclose(order);
	if (!found) {
		say("warning: module %s is not in this initramfs (see modules.txt)", name);
		return -1;
	}
	return error;
}

void load_nic_modules(const char *modules)
{
	if (!*modules) {
		/* xen-netfront refuses to load (ENODEV) outside a Xen guest; there (plain QEMU) the NIC
		 * is virtio. Trying beats guessing: /sys/bus/xen exists on bare QEMU too. */
		if (load_driver("xen-netfront", 1) != 0) {
			load_driver("virtio_pci", 0);
			load_driver("virtio_net", 0);
		}
		return;
	}
	char list[256];
	snprintf(list, sizeof list, "%s", modules);
	char *save = NULL;
	for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save))
		load_driver(name, 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void set_up(int sock, const char *ifname)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		fatal("%s: get flags: %s", ifname, strerror(errno));
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		fatal("%s: set up: %s", ifname, strerror(errno));
}

static void set_ipv4(int sock, const char *ifname, unsigned long request, struct in_addr addr, const char *what)
{
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	sin->sin_addr = addr;
	if (ioctl(sock, request, &ifr) < 0)
		fatal("%s: set %s: %s", ifname, what, strerror(errno));
}

static void add_default_route(int sock, struct in_addr gw)
{
	struct rtentry rt;
	memset(&rt, 0, sizeof rt);
	((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
	((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
	struct sockaddr_in *via = (struct sockaddr_in *)&rt.rt_gateway;
	via->sin_family = AF_INET;
	via->sin_addr = gw;
	rt.rt_flags = RTF_UP | RTF_GATEWAY;
	if (ioctl(sock, SIOCADDRT, &rt) < 0) {
		char text[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, &gw, text, sizeof text);
		fatal("default route via %s: %s (is gw= inside ip='s subnet?)", text, strerror(errno));
	}
}

void configure_network(const struct guest_config *cfg)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		fatal("socket: %s", strerror(errno));
	set_up(sock, "lo"); /* the kernel adds 127.0.0.1/8 when lo comes up */

	/* The driver registers the interface asynchronously (netfront after talking to its backend). */
	long waited = 0;
	while (if_nametoindex(cfg->iface) == 0) {
		if (waited >= IFACE_WAIT_MS)
			fatal("no interface %s after %d ms (driver modules: %s)", cfg->iface, IFACE_WAIT_MS,
			      *cfg->modules ? cfg->modules : "auto");
		sleep_ms(10);
		waited += 10;
	}
	if (cfg->has_ip) {
		struct in_addr mask = { .s_addr = htonl(cfg->prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> cfg->prefix)) };
		set_ipv4(sock, cfg->iface, SIOCSIFADDR, cfg->ip, "address");
		set_ipv4(sock, cfg->iface, SIOCSIFNETMASK, mask, "netmask");
	} else {
		say("warning: no ip= on the command line; %s stays without an address", cfg->iface);
	}
	set_up(sock, cfg->iface);
	if (cfg->has_gw)
		add_default_route(sock, cfg->gw);
	close(sock);
}
