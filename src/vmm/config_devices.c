/* berth-vmm configuration: the parsers of one device option (serial backend, disk, NIC, console
 * port), shared by the flags and the config file's fields (config.c). */
#include "vmm/config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int cfg_parse_serial(struct serial_cfg *s, const char *v, const char *what, struct cfg_error *err)
{
	const char *path = NULL;
	enum serial_kind kind;
	if (!strcmp(v, "none"))
		kind = SERIAL_NONE;
	else if (!strcmp(v, "stdout") || !strcmp(v, "stdio"))
		kind = SERIAL_STDOUT;
	else if (!strcmp(v, "pty"))
		kind = SERIAL_PTY;
	else if (!strncmp(v, "file:", 5))
		kind = SERIAL_FILE, path = v + 5;
	else if (!strncmp(v, "unix:", 5))
		kind = SERIAL_UNIX, path = v + 5;
	else
		return cfg_fail(err, "%s '%s': must be stdout, none, pty, file:PATH or unix:PATH",
				what, v);
	if (path && !*path)
		return cfg_fail(err, "%s '%s': the path is empty", what, v);
	if (kind == SERIAL_UNIX && strlen(path) > UNIX_PATH_MAX_LEN)
		return cfg_fail(err, "%s '%s': a unix socket path must be shorter than 108 bytes",
				what, v);
	free(s->path);
	s->path = path ? strdup(path) : NULL;
	s->kind = kind;
	return 0;
}

int cfg_parse_disk(struct disk_cfg *d, const char *v, const char *what, struct cfg_error *err)
{
	char *copy = strdup(v), *save = NULL;
	int ret = 0;
	if (!copy)
		return cfg_fail(err, "%s: out of memory", what);
	memset(d, 0, sizeof(*d));
	char *tok = strtok_r(copy, ",", &save);
	if (!tok || !*tok || v[0] == ',') {
		ret = cfg_fail(err, "%s '%s': the path is empty", what, v);
		goto out;
	}
	d->path = strdup(tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		if (!strcmp(tok, "readonly") || !strcmp(tok, "ro")) {
			d->readonly = true;
		} else if (!strcmp(tok, "cache=none")) {
			d->cache_none = true;
		} else if (!strcmp(tok, "cache=writeback")) {
			d->cache_none = false;
		} else if (!strncmp(tok, "format=", 7)) {
			if (blk_format_parse(tok + 7, &d->format)) {
				ret =
				    cfg_fail(err, "%s '%s': format '%s' is not auto, raw or qcow2",
					     what, v, tok + 7);
				goto out;
			}
		} else if (!strncmp(tok, "serial=", 7)) {
			const char *sv = tok + 7;
			if (strlen(sv) > DISK_SERIAL_MAX) {
				ret = cfg_fail(err, "%s '%s': serial is longer than %d characters",
					       what, v, DISK_SERIAL_MAX);
				goto out;
			}
			for (const char *q = sv; *q; q++)
				if (*q < 0x21 || *q > 0x7e) {
					ret = cfg_fail(err,
						       "%s '%s': serial must be printable ASCII "
						       "without spaces",
						       what, v);
					goto out;
				}
			snprintf(d->serial, sizeof(d->serial), "%s", sv);
		} else {
			ret =
			    cfg_fail(err,
				     "%s '%s': unknown option '%s' (known: format=auto|raw|qcow2, "
				     "readonly, cache=none, cache=writeback, serial=S)",
				     what, v, tok);
			goto out;
		}
	}
out:
	free(copy);
	if (ret) {
		free(d->path);
		d->path = NULL;
	}
	return ret;
}

static int parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		   &tail) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return (mac[0] & 1) ? -EINVAL : 0; /* a multicast address cannot be a NIC's */
}

int cfg_parse_nic(struct nic_cfg *n, const char *v, const char *what, struct cfg_error *err)
{
	char *copy = strdup(v), *save = NULL;
	int ret = 0, have = 0;
	if (!copy)
		return cfg_fail(err, "%s: out of memory", what);
	memset(n, 0, sizeof(*n));
	n->fd = -1;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		const char *val = eq ? eq + 1 : "";
		if (eq)
			*eq = 0;
		if (!strcmp(tok, "tap") || !strcmp(tok, "bridge")) {
			if (!*val || strlen(val) >= sizeof(n->ifname) || strchr(val, '/')) {
				ret = cfg_fail(
				    err,
				    "%s '%s': %s must be an interface name of 1..15 characters",
				    what, v, tok);
				goto out;
			}
			n->kind = !strcmp(tok, "tap") ? NIC_TAP : NIC_BRIDGE;
			snprintf(n->ifname, sizeof(n->ifname), "%s", val);
			have++;
		} else if (!strcmp(tok, "fd")) {
			uint64_t fd;
			if (parse_u64(val, &fd) || fd < 3 || fd > 65535) {
				ret = cfg_fail(
				    err, "%s '%s': fd must be an open file descriptor number >= 3",
				    what, v);
				goto out;
			}
			n->kind = NIC_FD;
			n->fd = (int)fd;
			have++;
		} else if (!strcmp(tok, "mac")) {
			if (parse_mac(val, n->mac)) {
				ret = cfg_fail(
				    err,
				    "%s '%s': mac must be a unicast address like 02:00:00:12:34:56",
				    what, v);
				goto out;
			}
			n->mac_set = true;
		} else {
			ret = cfg_fail(
			    err, "%s '%s': unknown option '%s' (known: tap=, bridge=, fd=, mac=)",
			    what, v, tok);
			goto out;
		}
	}
	if (have != 1)
		ret = cfg_fail(err, "%s '%s': give exactly one of tap=NAME, bridge=NAME or fd=N",
			       what, v);
out:
	free(copy);
	return ret;
}

int cfg_parse_port(struct console_port_cfg *pc, const char *v, const char *what,
		   struct cfg_error *err)
{
	char *copy = strdup(v), *save = NULL;
	int ret = 0;
	if (!copy)
		return cfg_fail(err, "%s: out of memory", what);
	memset(pc, 0, sizeof(*pc));
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "name=", 5)) {
			const char *n = tok + 5;
			if (!*n || strlen(n) > CONSOLE_PORT_NAME_MAX) {
				ret = cfg_fail(err, "%s '%s': name must be 1..%d characters", what,
					       v, CONSOLE_PORT_NAME_MAX);
				goto out;
			}
			for (const char *q = n; *q; q++)
				if (*q < 0x21 || *q > 0x7e) {
					ret = cfg_fail(err, "%s '%s': name must be printable ASCII",
						       what, v);
					goto out;
				}
			snprintf(pc->name, sizeof(pc->name), "%s", n);
		} else if (!strncmp(tok, "socket=", 7)) {
			if (!tok[7] || strlen(tok + 7) >= 108) {
				ret = cfg_fail(err, "%s '%s': socket path must be 1..107 bytes",
					       what, v);
				goto out;
			}
			free(pc->socket);
			pc->socket = strdup(tok + 7);
		} else {
			ret = cfg_fail(err, "%s '%s': unknown option '%s' (known: name=, socket=)",
				       what, v, tok);
			goto out;
		}
	}
	if (!pc->name[0] || !pc->socket)
		ret = cfg_fail(err, "%s '%s': both name= and socket= are required", what, v);
out:
	free(copy);
	if (ret) {
		free(pc->socket);
		pc->socket = NULL;
	}
	return ret;
}
