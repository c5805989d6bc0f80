/* The whole userspace of the http guest. As PID 1 (the initramfs's /init) it mounts /dev, /proc and
 * /sys, reads its configuration from the kernel command line, loads the NIC driver, configures the
 * network and serves HTTP. The kernel runs /sbin/poweroff and /sbin/reboot (symlinks to this file)
 * when Xen asks the guest to shut down, so those names just do it.
 * Not as PID 1 (a developer running it on a host) it skips the system setup and takes the command
 * line from $HTTP_GUEST_CMDLINE, which makes the server testable without a VM. */
#include "guest.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int is_pid1;

uint64_t boot_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void vsay(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "http: %s", prefix);
	vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	size_t len = strlen(line);
	line[len++] = '\n';
	/* One write per line so console lines never interleave mid-way. */
	if (write(STDOUT_FILENO, line, len) < 0)
		return;
}

void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("", fmt, ap);
	va_end(ap);
}

static void power_off(int restart)
{
	sync();
	reboot(restart ? RB_AUTOBOOT : RB_POWER_OFF);
	_exit(1); /* only reached without CAP_SYS_BOOT */
}

void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsay("fatal: ", fmt, ap);
	va_end(ap);
	if (is_pid1)
		power_off(0);
	exit(1);
}

static void mount_or_die(const char *source, const char *target, const char *type)
{
	mkdir(target, 0755);
	if (mount(source, target, type, MS_NOSUID | MS_NOEXEC, NULL) != 0 && errno != EBUSY)
		fatal("mount %s on %s: %s", type, target, strerror(errno));
}

/* The initramfs holds no device nodes (building it needs no root), so the kernel could not open a
 * console for us: open it ourselves once devtmpfs is there. */
static void setup_system(void)
{
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL) == 0) {
		int fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0) {
			for (int i = 0; i <= 2; i++)
				if (fd != i)
					dup2(fd, i);
			if (fd > 2)
				close(fd);
		}
	}
	mount_or_die("proc", "/proc", "proc");
	mount_or_die("sysfs", "/sys", "sysfs");
}

static void read_cmdline(char *buf, size_t cap)
{
	buf[0] = '\0';
	if (!is_pid1) {
		const char *env = getenv("HTTP_GUEST_CMDLINE");
		snprintf(buf, cap, "%s", env ? env : "");
		return;
	}
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		fatal("/proc/cmdline: %s", strerror(errno));
	ssize_t n = read(fd, buf, cap - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
}

int main(int argc, char **argv)
{
	const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
	if (strcmp(name, "poweroff") == 0 || strcmp(name, "halt") == 0)
		power_off(0);
	if (strcmp(name, "reboot") == 0)
		power_off(1);

	is_pid1 = getpid() == 1;
	uint64_t started = boot_ms();
	if (is_pid1)
		setup_system();

	char cmdline[4096], err[512];
	struct guest_config cfg;
	read_cmdline(cmdline, sizeof cmdline);
	if (parse_cmdline(cmdline, &cfg, err, sizeof err) < 0)
		fatal("%s", err);

	if (is_pid1) {
		if (sethostname(cfg.hostname, strlen(cfg.hostname)) != 0)
			say("warning: sethostname: %s", strerror(errno));
		uint64_t t0 = boot_ms();
		load_nic_modules(cfg.modules);
		uint64_t t1 = boot_ms();
		configure_network(&cfg);
		uint64_t t2 = boot_ms();
		say("init at %llu ms, modules %llu ms, network %llu ms: %s %s/%d", (unsigned long long)started,
		    (unsigned long long)(t1 - t0), (unsigned long long)(t2 - t1), cfg.iface,
		    cfg.has_ip ? cfg.ip_text : "-", cfg.has_ip ? cfg.prefix : 0);
	}
	serve_http(&cfg, argv + 1, argc - 1);
	if (is_pid1)
		power_off(0);
	return 0;
}
