/* Reads the guest's configuration from the kernel command line (/proc/cmdline):
 *   ip=<addr>/<prefix>  gw=<addr>  port=<n, default 8080; 0 = any free one>  hostname=<name>  iface=<name>  modules=<a,b,...>
 * Everything else belongs to the kernel or to the app; the kernel hands the app's bare words (and
 * everything after "--") to init as argv, which the server reports as bootArgs. */
#include "guest.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, int errlen, const char *key, const char *value, const char *why)
{
	snprintf(err, errlen, "bad %s='%s': %s", key, value, why);
	return -1;
}

static int parse_ip(const char *value, struct guest_config *cfg, char *err, int errlen)
{
	char addr[INET_ADDRSTRLEN];
	const char *slash = strchr(value, '/');
	size_t len = slash ? (size_t)(slash - value) : strlen(value);
	if (len == 0 || len >= sizeof addr)
		return fail(err, errlen, "ip", value, "expected <IPv4 address>/<prefix>");
	memcpy(addr, value, len);
	addr[len] = '\0';
	if (inet_pton(AF_INET, addr, &cfg->ip) != 1)
		return fail(err, errlen, "ip", value, "not an IPv4 address");
	cfg->prefix = 24; /* a bare address means the usual pod subnet size */
	if (slash) {
		char *end;
		long prefix = strtol(slash + 1, &end, 10);
		if (slash[1] == '\0' || *end != '\0' || prefix < 1 || prefix > 32)
			return fail(err, errlen, "ip", value, "prefix must be 1..32");
		cfg->prefix = (int)prefix;
	}
	cfg->has_ip = 1;
	memcpy(cfg->ip_text, addr, len + 1);
	return 0;
}

static int valid_hostname(const char *name)
{
	size_t len = strlen(name);
	if (len == 0 || len > 64)
		return 0;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '.')
			return 0;
	return 1;
}

static int apply(const char *key, const char *value, struct guest_config *cfg, char *err, int errlen)
{
	if (strcmp(key, "ip") == 0)
		return parse_ip(value, cfg, err, errlen);
	if (strcmp(key, "gw") == 0) {
		if (inet_pton(AF_INET, value, &cfg->gw) != 1)
			return fail(err, errlen, "gw", value, "not an IPv4 address");
		cfg->has_gw = 1;
	} else if (strcmp(key, "port") == 0) {
		char *end;
		long port = strtol(value, &end, 10);
		if (*value == '\0' || *end != '\0' || port < 0 || port > 65535)
			return fail(err, errlen, "port", value, "must be 0..65535 (0: any free port)");
		cfg->port = (int)port;
	} else if (strcmp(key, "hostname") == 0) {
		if (!valid_hostname(value))
			return fail(err, errlen, "hostname", value, "1-64 of [A-Za-z0-9.-]");
		snprintf(cfg->hostname, sizeof cfg->hostname, "%s", value);
	} else if (strcmp(key, "iface") == 0) {
		if (*value == '\0' || strlen(value) >= sizeof cfg->iface)
			return fail(err, errlen, "iface", value, "1-15 characters");
		snprintf(cfg->iface, sizeof cfg->iface, "%s", value);
	} else if (strcmp(key, "modules") == 0) {
		if (strlen(value) >= sizeof cfg->modules)
			return fail(err, errlen, "modules", value, "too long");
		snprintf(cfg->modules, sizeof cfg->modules, "%s", value);
	}
	return 0;
}

int parse_cmdline(const char *cmdline, struct guest_config *cfg, char *err, int errlen)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->port = 8080;
	snprintf(cfg->hostname, sizeof cfg->hostname, "http-guest");
	snprintf(cfg->iface, sizeof cfg->iface, "eth0");

	const char *p = cmdline;
	char token[512];
	while (*p) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		/* A token runs to the next space outside double quotes; the quotes themselves are dropped,
		 * as the kernel does. Overlong tokens are cut, and then fail validation of their key. */
		size_t n = 0;
		int quoted = 0;
		for (; *p && (quoted || !isspace((unsigned char)*p)); p++) {
			if (*p == '"')
				quoted = !quoted;
			else if (n + 1 < sizeof token)
				token[n++] = *p;
		}
		token[n] = '\0';
		if (strcmp(token, "--") == 0)
			break; /* the rest is the app's */
		char *eq = strchr(token, '=');
		if (!eq)
			continue;
		*eq = '\0';
		if (apply(token, eq + 1, cfg, err, errlen) < 0)
			return -1;
	}
	return 0;
}
