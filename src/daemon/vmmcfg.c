/* A VM spec as a berth-vmm configuration: the per-VM paths, config.json and the command line. */
#include "daemon/vmmcfg.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define FIT(buf, ...) ((size_t)snprintf(buf, sizeof(buf), __VA_ARGS__) < sizeof(buf))

int vmmcfg_paths(const char *state_dir, const char *run_dir, const char *uuid, struct vm_paths *p)
{
	memset(p, 0, sizeof(*p));
	if (!FIT(p->dir, "%s/vms/%s", state_dir, uuid) ||
	    !FIT(p->config, "%s/config.json", p->dir) || !FIT(p->log, "%s/vmm.log", p->dir) ||
	    !FIT(p->saved, "%s/saved", p->dir) || !FIT(p->checkpoints, "%s/checkpoints", p->dir) ||
	    !FIT(p->run_dir, "%s", run_dir) || !FIT(p->control, "%s/%s.ctl", run_dir, uuid) ||
	    !FIT(p->console, "%s/%s.console", run_dir, uuid) ||
	    !FIT(p->serial, "unix:%s", p->console))
		return -ENAMETOOLONG;
	return 0;
}

static json_t *disks_json(const json_t *disks)
{
	json_t *out = json_array(), *d;
	size_t i;
	json_array_foreach(disks, i, d)
	{
		json_t *o =
		    json_pack("{s:O, s:O, s:O, s:O}", "path", json_object_get(d, "path"), "format",
			      json_object_get(d, "format"), "readonly",
			      json_object_get(d, "readonly"), "cache", json_object_get(d, "cache"));
		json_t *serial = json_object_get(d, "serial");
		if (o && json_is_string(serial))
			json_object_set(o, "serial", serial);
		if (!o || json_array_append_new(out, o)) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* Each named port is served on <run>/<uuid>.port<N> for a client to attach to. */
static json_t *ports_json(const json_t *ports, const struct vm_paths *p)
{
	json_t *out = json_array(), *port;
	char sock[sizeof(p->control) + 16];
	size_t i;
	json_array_foreach(ports, i, port)
	{
		snprintf(sock, sizeof(sock), "%.*s.port%zu",
			 (int)(strlen(p->control) - strlen(".ctl")), p->control, i);
		json_t *o =
		    json_pack("{s:O, s:s}", "name", json_object_get(port, "name"), "socket", sock);
		if (!o || json_array_append_new(out, o)) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* nics[i] is "fd=<VMMCFG_NIC_FD0 + i>,mac=M": berthd hands the VMM its TAPs (nics.c). */
static json_t *nets_json(const json_t *nics)
{
	json_t *out = json_array(), *nic;
	char spec[64];
	size_t i;
	json_array_foreach(nics, i, nic)
	{
		const char *mac = json_string_value(json_object_get(nic, "mac"));
		snprintf(spec, sizeof(spec), "fd=%zu%s%s", VMMCFG_NIC_FD0 + i, mac ? ",mac=" : "",
			 mac ? mac : "");
		if (json_array_append_new(out, json_string(spec))) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

json_t *vmmcfg_build(const json_t *spec, const char *name, const struct vm_paths *p)
{
	const json_t *boot = json_object_get(spec, "boot");
	char mem[32];
	json_t *c, *disks, *ports, *nets;

	snprintf(mem, sizeof(mem), "%lldM",
		 (long long)json_integer_value(json_object_get(spec, "memory_mib")));
	disks = disks_json(json_object_get(spec, "disks"));
	ports = ports_json(json_object_get(spec, "console_ports"), p);
	nets = nets_json(json_object_get(spec, "nics"));
	/* on_reboot restart: a guest reboot is a reboot, as on any hypervisor */
	c = json_pack(
	    "{s:s, s:O, s:O, s:s, s:O, s:O, s:s, s:s, s:b, s:o*, s:o*, s:o*, s:s, s:s, s:s}",
	    "name", name, "kernel", json_object_get(boot, "kernel"), "cmdline",
	    json_object_get(boot, "cmdline"), "memory", mem, "cpus", json_object_get(spec, "vcpus"),
	    "cpu_template", json_object_get(spec, "cpu_template"), "serial", p->serial, "on_reboot",
	    "restart", "rng", json_is_true(json_object_get(spec, "rng")), "disks", disks, "nets",
	    nets, "console_ports", ports, "control", p->control, "checkpoint_dir", p->checkpoints,
	    "log_level", "info");
	if (c && json_is_string(json_object_get(boot, "initrd")))
		json_object_set(c, "initrd", json_object_get(boot, "initrd"));
	if (!c || !disks || !ports || !nets) {
		json_decref(c);
		return NULL;
	}
	return c;
}

void vmmcfg_argv(const char *vmm, const struct vm_paths *p, const char *name, bool restore,
		 char *argv[VMMCFG_ARGV_MAX])
{
	int n = 0;
	argv[n++] = (char *)vmm;
	argv[n++] = restore ? "--restore" : "--config";
	argv[n++] = (char *)(restore ? p->saved : p->config);
	argv[n++] = "--control";
	argv[n++] = (char *)p->control;
	argv[n++] = "--serial";
	argv[n++] = (char *)p->serial;
	argv[n++] = "--checkpoint-dir";
	argv[n++] = (char *)p->checkpoints;
	argv[n++] = "--name";
	argv[n++] = (char *)name;
	argv[n] = NULL;
}
