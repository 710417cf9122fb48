/* berth-vmm configuration written back as JSON (--print-config, saved states): the same fields a
 * --config file takes, so the output round-trips. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/util.h"
#include "vmm/config.h"

static const char *serial_text(const struct serial_cfg *s, char *buf, size_t len)
{
	switch (s->kind) {
	case SERIAL_NONE:
		return "none";
	case SERIAL_STDOUT:
		return "stdout";
	case SERIAL_PTY:
		return "pty";
	case SERIAL_FILE:
		snprintf(buf, len, "file:%s", s->path);
		return buf;
	case SERIAL_UNIX:
		snprintf(buf, len, "unix:%s", s->path);
		return buf;
	}
	return "none";
}

char *config_to_json(const struct vm_config *c)
{
	static const char *const boot[] = {"auto", "linux", "pvh"};
	static const char *const levels[] = {"error", "warn", "info", "debug"};
	char mem[32], s1[4200], s2[4200]; /* "unix:" or "file:" + PATH_MAX */
	format_size(c->mem_bytes, mem, sizeof(mem));
	json_t *o = json_object();
	json_object_set_new(o, "name", json_string(c->name));
	if (c->kernel)
		json_object_set_new(o, "kernel", json_string(c->kernel));
	if (c->initrd)
		json_object_set_new(o, "initrd", json_string(c->initrd));
	json_object_set_new(o, "cmdline", json_string(c->cmdline ? c->cmdline : ""));
	json_object_set_new(o, "memory", json_string(mem));
	json_object_set_new(o, "cpus", json_integer(c->cpus));
	json_object_set_new(o, "cpu_template", json_string(c->cpu_template));
	json_object_set_new(o, "boot", json_string(boot[c->boot]));
	json_object_set_new(o, "serial", json_string(serial_text(&c->serial[0], s1, sizeof(s1))));
	json_object_set_new(o, "serial2", json_string(serial_text(&c->serial[1], s2, sizeof(s2))));
	json_object_set_new(o, "on_reboot",
			    json_string(c->on_reboot == ON_REBOOT_RESTART ? "restart" : "exit"));
	json_object_set_new(o, "timeout", json_integer(c->timeout_s));
	json_object_set_new(o, "seccomp", json_string(config_seccomp_name(c->seccomp)));
	json_object_set_new(o, "rng", json_boolean(c->rng));
	json_t *disks = json_array();
	for (unsigned i = 0; i < c->ndisks; i++) {
		const struct disk_cfg *d = &c->disks[i];
		json_t *jd = json_object();
		json_object_set_new(jd, "path", json_string(d->path));
		json_object_set_new(jd, "readonly", json_boolean(d->readonly));
		json_object_set_new(jd, "format", json_string(blk_format_name(d->format)));
		json_object_set_new(jd, "cache", json_string(d->cache_none ? "none" : "writeback"));
		if (d->serial[0])
			json_object_set_new(jd, "serial", json_string(d->serial));
		json_array_append_new(disks, jd);
	}
	json_object_set_new(o, "disks", disks);
	json_t *ports = json_array();
	for (unsigned i = 0; i < c->nports; i++) {
		json_t *jp = json_object();
		json_object_set_new(jp, "name", json_string(c->ports[i].name));
		json_object_set_new(jp, "socket", json_string(c->ports[i].socket));
		json_array_append_new(ports, jp);
	}
	json_object_set_new(o, "console_ports", ports);
	json_t *nets = json_array();
	for (unsigned i = 0; i < c->nnics; i++) {
		const struct nic_cfg *n = &c->nics[i];
		char spec[64];
		int len = n->kind == NIC_FD
			      ? snprintf(spec, sizeof(spec), "fd=%d", n->fd)
			      : snprintf(spec, sizeof(spec), "%s=%s",
					 n->kind == NIC_TAP ? "tap" : "bridge", n->ifname);
		if (n->mac_set)
			snprintf(spec + len, sizeof(spec) - (size_t)len,
				 ",mac=%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
				 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
		json_array_append_new(nets, json_string(spec));
	}
	json_object_set_new(o, "nets", nets);
	if (c->nfd_map) {
		json_t *m = json_object();
		for (unsigned i = 0; i < c->nfd_map; i++)
			json_object_set_new(m, c->fd_map[i].path, json_integer(c->fd_map[i].fd));
		json_object_set_new(o, "fd_map", m);
	}
	if (c->control)
		json_object_set_new(o, "control", json_string(c->control));
	if (c->checkpoint_dir)
		json_object_set_new(o, "checkpoint_dir", json_string(c->checkpoint_dir));
	if (c->start_paused)
		json_object_set_new(o, "start_paused", json_true());
	json_object_set_new(o, "log_level", json_string(levels[c->log_level]));
	char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	return s;
}
