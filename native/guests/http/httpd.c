/* The app: a deliberately small HTTP/1.x server, one connection at a time (the guest has one vCPU
 * and answers probes and test traffic; a client that stalls is cut off after IO_TIMEOUT_S).
 *   GET /healthz -> 200 "ok"
 *   GET /        -> 200 {"hostname","uptimeSeconds","requests","bootArgs","address"}
 * Every answer closes the connection, so no request parsing beyond the request line is needed. */
#include "guest.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 5

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Appends s to buf as a JSON string literal; returns the new length, or cap if it did not fit. */
static size_t json_string(char *buf, size_t len, size_t cap, const char *s)
{
	if (len < cap)
		buf[len++] = '"';
	for (const unsigned char *p = (const unsigned char *)s; *p && len < cap; p++) {
		if (*p == '"' || *p == '\\')
			len += (size_t)snprintf(buf + len, cap - len, "\\%c", *p);
		else if (*p < 0x20)
			len += (size_t)snprintf(buf + len, cap - len, "\\u%04x", *p);
		else
			buf[len++] = (char)*p;
	}
	if (len < cap)
		buf[len++] = '"';
	return len < cap ? len : cap;
}

static size_t status_json(char *buf, size_t cap, const struct guest_config *cfg, unsigned long requests,
			  char **boot_args, int boot_argc)
{
	struct timespec now;
	clock_gettime(CLOCK_BOOTTIME, &now);
	size_t len = (size_t)snprintf(buf, cap, "{\"hostname\":");
	len = json_string(buf, len, cap, cfg->hostname);
	if (len < cap)
		len += (size_t)snprintf(buf + len, cap - len, ",\"uptimeSeconds\":%ld.%03ld,\"requests\":%lu,\"address\":\"%s:%d\",\"bootArgs\":[",
					(long)now.tv_sec, now.tv_nsec / 1000000L, requests, cfg->has_ip ? cfg->ip_text : "", cfg->port);
	for (int i = 0; i < boot_argc && len < cap; i++) {
		if (i > 0)
			buf[len++] = ',';
		len = json_string(buf, len, cap, boot_args[i]);
	}
	if (len < cap)
		len += (size_t)snprintf(buf + len, cap - len, "]}\n");
	return len < cap ? len : cap;
}

static void write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n <= 0)
			return; /* the client went away; nothing to do about it */
		data += n;
		len -= (size_t)n;
	}
}

static void respond(int fd, int head_only, const char *status, const char *type, const char *body, size_t body_len)
{
	char header[256];
	int n = snprintf(header, sizeof header,
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, type, body_len);
	write_all(fd, header, (size_t)n);
	if (!head_only)
		write_all(fd, body, body_len);
}

/* Reads up to the end of the headers; returns 0 with method and path filled, or -1. */
static int read_request_line(int fd, char *method, size_t method_cap, char *path, size_t path_cap)
{
	char req[4096];
	size_t len = 0;
	while (len + 1 < sizeof req) {
		ssize_t n = read(fd, req + len, sizeof req - 1 - len);
		if (n <= 0)
			return -1;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	char fmt[32];
	snprintf(fmt, sizeof fmt, "%%%zus %%%zus", method_cap - 1, path_cap - 1);
	return sscanf(req, fmt, method, path) == 2 ? 0 : -1;
}

static void handle(int fd, const struct guest_config *cfg, unsigned long *requests, char **boot_args, int boot_argc)
{
	struct timeval timeout = { .tv_sec = IO_TIMEOUT_S };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
	char method[16], path[1024];
	if (read_request_line(fd, method, sizeof method, path, sizeof path) < 0) {
		respond(fd, 0, "400 Bad Request", "text/plain", "bad request\n", 12);
		return;
	}
	++*requests;
	int head_only = strcmp(method, "HEAD") == 0;
	if (!head_only && strcmp(method, "GET") != 0) {
		respond(fd, 0, "405 Method Not Allowed", "text/plain", "only GET and HEAD\n", 18);
		return;
	}
	char *query = strchr(path, '?');
	if (query)
		*query = '\0';
	if (strcmp(path, "/healthz") == 0) {
		respond(fd, head_only, "200 OK", "text/plain", "ok\n", 3);
	} else if (strcmp(path, "/") == 0) {
		char body[8192];
		size_t len = status_json(body, sizeof body, cfg, *requests, boot_args, boot_argc);
		respond(fd, head_only, "200 OK", "application/json", body, len);
	} else {
		respond(fd, head_only, "404 Not Found", "text/plain", "not found\n", 10);
	}
}

void serve_http(const struct guest_config *requested, char **boot_args, int boot_argc)
{
	struct guest_config live = *requested; /* with the port actually bound when port=0 */
	const struct guest_config *cfg = &live;
	/* No SA_RESTART: SIGTERM must interrupt accept() so the guest can power off. */
	struct sigaction stop = { .sa_handler = on_stop };
	sigaction(SIGTERM, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	int srv = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (srv < 0)
		fatal("socket: %s", strerror(errno));
	int one = 1;
	setsockopt(srv, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port) };
	if (bind(srv, (struct sockaddr *)&addr, sizeof addr) < 0)
		fatal("bind port %d: %s", cfg->port, strerror(errno));
	if (listen(srv, 64) < 0)
		fatal("listen: %s", strerror(errno));
	socklen_t addr_len = sizeof addr;
	if (getsockname(srv, (struct sockaddr *)&addr, &addr_len) == 0)
		live.port = ntohs(addr.sin_port);

	say("ready on %s:%d in %llu ms", cfg->has_ip ? cfg->ip_text : "0.0.0.0", cfg->port,
	    (unsigned long long)boot_ms());

	unsigned long requests = 0;
	while (!stop_requested) {
		int fd = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				say("warning: accept: %s", strerror(errno));
			continue;
		}
		handle(fd, cfg, &requests, boot_args, boot_argc);
		close(fd);
	}
	close(srv);
	say("stopping after %lu requests", requests);
}
