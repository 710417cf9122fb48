/* berth-vmm configuration: flags and the equivalent JSON file, parsed and validated before anything
 * starts. */
#include "vmm/config.h"
#include "vmm/config_int.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/util.h"
#include "vmm/cpuid.h"
#include "vmm/layout.h"

int cfg_fail(struct cfg_error *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int set_str(char **dst, const char *val)
{
	char *d = strdup(val);
	if (!d)
		return -ENOMEM;
	free(*dst);
	*dst = d;
	return 0;
}

/* Each setter gets the value as text and "what" = "--flag" or "field" for error messages. */
typedef int (*setter_fn)(struct vm_config *c, const char *v, const char *what,
			 struct cfg_error *err);

static int set_name(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	size_t n = strlen(v);
	if (n == 0 || n > VM_NAME_MAX)
		return cfg_fail(err, "%s: must be 1..%d characters", what, VM_NAME_MAX);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)v[i]) && !strchr("._-", v[i]))
			return cfg_fail(
			    err, "%s '%s': only letters, digits, '.', '_' and '-' are allowed",
			    what, v);
	memcpy(c->name, v, n + 1);
	return 0;
}

static int set_path(char **dst, const char *v, const char *what, struct cfg_error *err)
{
	if (!*v)
		return cfg_fail(err, "%s: path is empty", what);
	return set_str(dst, v) ? cfg_fail(err, "%s: out of memory", what) : 0;
}

static int set_kernel(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	return set_path(&c->kernel, v, what, err);
}

static int set_initrd(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	return set_path(&c->initrd, v, what, err);
}

static int set_cmdline(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (strlen(v) >= CMDLINE_MAX)
		return cfg_fail(err, "%s: command line is %zu bytes, the limit is %llu", what,
				strlen(v), CMDLINE_MAX - 1);
	return set_str(&c->cmdline, v) ? cfg_fail(err, "%s: out of memory", what) : 0;
}

static int set_memory(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	uint64_t bytes;
	/* Like QEMU's -m: a bare number is MiB. */
	int r = parse_size(v, &bytes);
	if (r == 0 && isdigit((unsigned char)v[strlen(v) - 1]))
		r = bytes > UINT64_MAX / MiB ? -ERANGE : 0, bytes *= MiB;
	if (r)
		return cfg_fail(err,
				"%s '%s': not a size (use e.g. 512M or 4G; a bare number is MiB)",
				what, v);
	if (bytes < VM_MEM_MIN || bytes > VM_MEM_MAX)
		return cfg_fail(err, "%s '%s': must be between 64M and 64G", what, v);
	if (bytes % MiB)
		return cfg_fail(err, "%s '%s': must be a multiple of 1M", what, v);
	c->mem_bytes = bytes;
	return 0;
}

static int set_cpus(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) || n < 1 || n > VM_CPUS_MAX)
		return cfg_fail(err, "%s '%s': must be a whole number from 1 to %d", what, v,
				VM_CPUS_MAX);
	c->cpus = (unsigned)n;
	return 0;
}

static int set_template(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (!cpuid_template_find(v)) {
		char names[256];
		cpuid_template_names(names, sizeof(names));
		return cfg_fail(err, "%s '%s': unknown CPU template (known: %s)", what, v, names);
	}
	snprintf(c->cpu_template, sizeof(c->cpu_template), "%s", v);
	return 0;
}

static int set_boot(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (!strcmp(v, "auto"))
		c->boot = BOOT_AUTO;
	else if (!strcmp(v, "linux"))
		c->boot = BOOT_LINUX;
	else if (!strcmp(v, "pvh"))
		c->boot = BOOT_PVH;
	else
		return cfg_fail(err, "%s '%s': must be auto, linux or pvh", what, v);
	return 0;
}

static int set_serial(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	return cfg_parse_serial(&c->serial[0], v, what, err);
}

static int add_disk(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (c->ndisks == VM_DISKS_MAX)
		return cfg_fail(err, "%s: at most %d disks", what, VM_DISKS_MAX);
	if (cfg_parse_disk(&c->disks[c->ndisks], v, what, err))
		return -EINVAL;
	c->ndisks++;
	return 0;
}

static void clear_disks(struct vm_config *c)
{
	for (unsigned i = 0; i < c->ndisks; i++)
		free(c->disks[i].path);
	memset(c->disks, 0, sizeof(c->disks));
	c->ndisks = 0;
}

static int set_disk(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (!c->disks_from_flags) { /* flags replace the config file's list */
		clear_disks(c);
		c->disks_from_flags = true;
	}
	return add_disk(c, v, what, err);
}

/* A "disks" entry: {"path": "...", "format": "auto"|"raw"|"qcow2", "readonly": bool,
 * "cache": "none"|"writeback", "serial": "..."}. */
static int json_disk(struct vm_config *c, json_t *o, const char *where, struct cfg_error *err)
{
	if (json_is_string(o))
		return add_disk(c, json_string_value(o), where, err);
	if (!json_is_object(o))
		return cfg_fail(err, "%s: must be an object or a string", where);
	const char *k;
	json_t *v;
	char spec[4200] = "";
	json_t *path = json_object_get(o, "path");
	if (!json_is_string(path))
		return cfg_fail(err, "%s: field 'path': required, a string", where);
	if (strchr(json_string_value(path), ','))
		return cfg_fail(err, "%s: field 'path': must not contain ','", where);
	size_t off = (size_t)snprintf(spec, sizeof(spec), "%s", json_string_value(path));
	json_object_foreach(o, k, v)
	{
		if (!strcmp(k, "path"))
			continue;
		if (!strcmp(k, "readonly")) {
			if (!json_is_boolean(v))
				return cfg_fail(err, "%s: field 'readonly': must be true or false",
						where);
			if (json_is_true(v))
				off +=
				    (size_t)snprintf(spec + off, sizeof(spec) - off, ",readonly");
		} else if (!strcmp(k, "cache") || !strcmp(k, "serial") || !strcmp(k, "format")) {
			if (!json_is_string(v) || strchr(json_string_value(v), ','))
				return cfg_fail(err, "%s: field '%s': must be a string without ','",
						where, k);
			off += (size_t)snprintf(spec + off, sizeof(spec) - off, ",%s=%s", k,
						json_string_value(v));
		} else {
			return cfg_fail(err, "%s: field '%s': unknown field", where, k);
		}
		if (off >= sizeof(spec))
			return cfg_fail(err, "%s: too long", where);
	}
	return add_disk(c, spec, where, err);
}

static int add_nic(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (c->nnics == VM_NICS_MAX)
		return cfg_fail(err, "%s: at most %d network interfaces", what, VM_NICS_MAX);
	if (cfg_parse_nic(&c->nics[c->nnics], v, what, err))
		return -EINVAL;
	c->nnics++;
	return 0;
}

static int set_nic(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (!c->nics_from_flags) {
		memset(c->nics, 0, sizeof(c->nics));
		c->nnics = 0;
		c->nics_from_flags = true;
	}
	return add_nic(c, v, what, err);
}

static void clear_ports(struct vm_config *c)
{
	for (unsigned i = 0; i < c->nports; i++)
		free(c->ports[i].socket);
	memset(c->ports, 0, sizeof(c->ports));
	c->nports = 0;
}

static int add_port(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (c->nports == VM_CONSOLE_PORTS_MAX)
		return cfg_fail(err, "%s: at most %d console ports", what, VM_CONSOLE_PORTS_MAX);
	struct console_port_cfg pc;
	if (cfg_parse_port(&pc, v, what, err))
		return -EINVAL;
	for (unsigned i = 0; i < c->nports; i++) {
		if (!strcmp(c->ports[i].name, pc.name) || !strcmp(c->ports[i].socket, pc.socket)) {
			free(pc.socket);
			return cfg_fail(err, "%s '%s': another port has the same %s", what, v,
					!strcmp(c->ports[i].name, pc.name) ? "name" : "socket");
		}
	}
	c->ports[c->nports++] = pc;
	return 0;
}

static int set_port(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (!c->ports_from_flags) {
		clear_ports(c);
		c->ports_from_flags = true;
	}
	return add_port(c, v, what, err);
}

static int set_serial2(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	return cfg_parse_serial(&c->serial[1], v, what, err);
}

static int set_on_reboot(struct vm_config *c, const char *v, const char *what,
			 struct cfg_error *err)
{
	if (!strcmp(v, "exit"))
		c->on_reboot = ON_REBOOT_EXIT;
	else if (!strcmp(v, "restart"))
		c->on_reboot = ON_REBOOT_RESTART;
	else
		return cfg_fail(err, "%s '%s': must be exit or restart", what, v);
	return 0;
}

static int set_timeout(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	uint64_t n;
	if (parse_u64(v, &n) || n > 10 * 365 * 86400ULL)
		return cfg_fail(err, "%s '%s': must be a whole number of seconds (0 = no timeout)",
				what, v);
	c->timeout_s = (unsigned)n;
	return 0;
}

static int set_bool(bool *dst, const char *v, const char *what, struct cfg_error *err)
{
	if (!strcmp(v, "true"))
		*dst = true;
	else if (!strcmp(v, "false"))
		*dst = false;
	else
		return cfg_fail(err, "%s '%s': must be true or false", what, v);
	return 0;
}

static int set_rng(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	return set_bool(&c->rng, v, what, err);
}

static int set_start_paused(struct vm_config *c, const char *v, const char *what,
			    struct cfg_error *err)
{
	return set_bool(&c->start_paused, v, what, err);
}

static int set_control(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	if (strlen(v) > UNIX_PATH_MAX_LEN)
		return cfg_fail(err, "%s '%s': a unix socket path must be shorter than 108 bytes",
				what, v);
	return set_path(&c->control, v, what, err);
}

static int set_checkpoint_dir(struct vm_config *c, const char *v, const char *what,
			      struct cfg_error *err)
{
	return set_path(&c->checkpoint_dir, v, what, err);
}

static void clear_fd_map(struct vm_config *c)
{
	for (unsigned i = 0; i < c->nfd_map; i++)
		free(c->fd_map[i].path);
	memset(c->fd_map, 0, sizeof(c->fd_map));
	c->nfd_map = 0;
}

/* One mapping: an absolute path and a descriptor open on a regular file or block device. */
static int add_fd_map(struct vm_config *c, const char *path, int fd, const char *what,
		      struct cfg_error *err)
{
	struct stat st;
	if (c->nfd_map == FDMAP_MAX)
		return cfg_fail(err, "%s: at most %d mapped paths", what, FDMAP_MAX);
	for (unsigned i = 0; i < c->nfd_map; i++)
		if (!strcmp(c->fd_map[i].path, path))
			return cfg_fail(err, "%s '%s': the path is mapped twice", what, path);
	if (fstat(fd, &st) < 0)
		return cfg_fail(err, "%s '%s=%d': descriptor %d is not open (%s)", what, path, fd,
				fd, strerror(errno));
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return cfg_fail(err,
				"%s '%s=%d': descriptor %d is not a regular file or block device",
				what, path, fd, fd);
	if (!(c->fd_map[c->nfd_map].path = strdup(path)))
		return cfg_fail(err, "%s: out of memory", what);
	c->fd_map[c->nfd_map++].fd = fd;
	return 0;
}

/* --fd-map PATH=N (repeatable; the flags replace the config file's map) */
static int set_fd_map(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	char msg[400], *path;
	int fd;
	if (!c->fd_map_from_flags) {
		clear_fd_map(c);
		c->fd_map_from_flags = true;
	}
	if (fdmap_parse(v, &path, &fd, msg, sizeof(msg)))
		return cfg_fail(err, "%s %s", what, msg);
	int r = add_fd_map(c, path, fd, what, err);
	free(path);
	return r;
}

/* field 'fd_map': {"/abs/path": N, ...} */
static int json_fd_map(struct vm_config *c, json_t *val, const char *origin, struct cfg_error *err)
{
	const char *key;
	json_t *v;
	if (!json_is_object(val))
		return cfg_fail(err, "%s: field 'fd_map': must be an object {\"/abs/path\": N}",
				origin);
	clear_fd_map(c);
	json_object_foreach(val, key, v)
	{
		char where[300], arg[4200], msg[400], *path;
		int fd;
		snprintf(where, sizeof(where), "%s: field 'fd_map'", origin);
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > INT_MAX)
			return cfg_fail(err, "%s '%s': must be a descriptor number", where, key);
		snprintf(arg, sizeof(arg), "%s=%lld", key, (long long)json_integer_value(v));
		if (fdmap_parse(arg, &path, &fd, msg, sizeof(msg)))
			return cfg_fail(err, "%s %s", where, msg);
		int r = add_fd_map(c, path, fd, where, err);
		free(path);
		if (r)
			return r;
	}
	return 0;
}

static int set_log_level(struct vm_config *c, const char *v, const char *what,
			 struct cfg_error *err)
{
	if (log_level_parse(v, &c->log_level))
		return cfg_fail(err, "%s '%s': must be error, warn, info or debug", what, v);
	return 0;
}

static const char *const seccomp_names[] = {
    [VMM_SECCOMP_KILL] = "kill",
    [VMM_SECCOMP_TRAP] = "trap",
    [VMM_SECCOMP_LOG] = "log",
    [VMM_SECCOMP_OFF] = "off",
};

const char *config_seccomp_name(enum vmm_seccomp_mode m)
{
	return (unsigned)m < ARRAY_SIZE(seccomp_names) ? seccomp_names[m] : "kill";
}

static int set_seccomp(struct vm_config *c, const char *v, const char *what, struct cfg_error *err)
{
	for (size_t i = 0; i < ARRAY_SIZE(seccomp_names); i++)
		if (!strcmp(v, seccomp_names[i])) {
			c->seccomp = (enum vmm_seccomp_mode)i;
			return 0;
		}
	return cfg_fail(err, "%s '%s': must be kill, trap, log or off", what, v);
}

enum { ARG_NONE, ARG_STR, ARG_INT, ARG_BOOL };

struct option_def {
	const char *flag;  /* long flag without "--" */
	char short_flag;   /* 0 if none */
	const char *field; /* JSON field, NULL if flag only */
	int json_type;	   /* ARG_STR, or ARG_INT for fields that are numbers in JSON */
	setter_fn set;
	const char *arg;
	const char *help;
};

/* The flags and the config fields they match. Order is the --help order. */
static const struct option_def options[] = {
    {"kernel", 'k', "kernel", ARG_STR, set_kernel, "FILE",
     "kernel to boot: a bzImage (Linux boot protocol) or an ELF with a PVH entry note"},
    {"initrd", 'i', "initrd", ARG_STR, set_initrd, "FILE", "initial ramdisk (PVH: module 0)"},
    {"cmdline", 'a', "cmdline", ARG_STR, set_cmdline, "TEXT", "kernel command line"},
    {"memory", 'm', "memory", ARG_STR, set_memory, "SIZE",
     "guest RAM, 64M..64G (default 512M; a bare number is MiB)"},
    {"cpus", 'c', "cpus", ARG_INT, set_cpus, "N", "number of vCPUs (default 1)"},
    {"cpu-template", 0, "cpu_template", ARG_STR, set_template, "NAME",
     "CPUID template: host or baseline (default host)"},
    {"boot", 0, "boot", ARG_STR, set_boot, "MODE", "auto (default), linux or pvh"},
    {"serial", 0, "serial", ARG_STR, set_serial, "BACKEND",
     "COM1: stdout (default), none, pty, file:PATH, unix:PATH"},
    {"serial2", 0, "serial2", ARG_STR, set_serial2, "BACKEND",
     "COM2, same backends (default none)"},
    {"on-reboot", 0, "on_reboot", ARG_STR, set_on_reboot, "ACTION",
     "when the guest reboots: exit (status 3, default) or restart"},
    {"timeout", 0, "timeout", ARG_INT, set_timeout, "SECONDS",
     "stop the VM after this long (exit status 6); 0 = never (default)"},
    {"disk", 0, NULL, ARG_STR, set_disk, "PATH[,OPTS]",
     "add a virtio-blk disk (repeatable); OPTS: format=auto|raw|qcow2, readonly, cache=none, "
     "serial=S"},
    {"net", 0, NULL, ARG_STR, set_nic, "tap=T|bridge=B|fd=N[,mac=M]",
     "add a virtio-net NIC on a TAP: named, new on a bridge, or passed in (repeatable)"},
    {"fd-map", 0, NULL, ARG_STR, set_fd_map, "PATH=N",
     "open the file at absolute PATH (a disk image, backing file, kernel or initrd) through "
     "inherited descriptor N, not by name (repeatable; field 'fd_map': {\"PATH\": N})"},
    {"console-port", 0, NULL, ARG_STR, set_port, "name=N,socket=P",
     "add a named virtio-console port served on a unix socket (repeatable)"},
    {"rng", 0, "rng", ARG_BOOL, set_rng, "", "add a virtio-rng device (entropy from the host)"},
    {"control", 0, "control", ARG_STR, set_control, "PATH",
     "serve the control socket (framed JSON: status, pause, power button, save, checkpoint, "
     "quit) on PATH"},
    {"start-paused", 0, "start_paused", ARG_BOOL, set_start_paused, "",
     "set the VM up but run no vCPU until the control socket's resume (with --restore too)"},
    {"checkpoint-dir", 0, "checkpoint_dir", ARG_STR, set_checkpoint_dir, "DIR",
     "keep this VM's checkpoint tree in DIR (created if missing): the control socket's "
     "checkpoint-create|list|apply|delete commands"},
    {"name", 'n', "name", ARG_STR, set_name, "NAME", "VM name used in logs (default vm)"},
    {"log-level", 0, "log_level", ARG_STR, set_log_level, "LEVEL",
     "error, warn, info (default) or debug"},
    {"seccomp", 0, "seccomp", ARG_STR, set_seccomp, "MODE",
     "system calls outside the allow-list loaded after setup: kill the VMM (default), trap "
     "(name the call on stderr, exit status 1), log (allow, kernel audit log) or off"},
};

void config_defaults(struct vm_config *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "vm");
	c->mem_bytes = 512 * MiB;
	c->cpus = 1;
	snprintf(c->cpu_template, sizeof(c->cpu_template), "host");
	c->serial[0].kind = SERIAL_STDOUT;
	c->log_level = LOG_INFO;
}

void config_free(struct vm_config *c)
{
	free(c->restore);
	free(c->kernel);
	free(c->initrd);
	free(c->cmdline);
	free(c->serial[0].path);
	free(c->serial[1].path);
	free(c->control);
	free(c->checkpoint_dir);
	clear_disks(c);
	clear_ports(c);
	clear_fd_map(c);
	memset(c, 0, sizeof(*c));
}

int config_apply_json_text(struct vm_config *c, const char *text, const char *origin,
			   struct cfg_error *err)
{
	json_error_t jerr;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	int ret = 0;
	if (!root)
		return cfg_fail(err, "%s:%d:%d: invalid JSON: %s", origin, jerr.line, jerr.column,
				jerr.text);
	if (!json_is_object(root)) {
		ret = cfg_fail(err, "%s: the top level must be an object", origin);
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val)
	{
		if (!strcmp(key, "disks")) {
			if (!json_is_array(val)) {
				ret = cfg_fail(err, "%s: field 'disks': must be an array", origin);
				goto out;
			}
			clear_disks(c);
			size_t i;
			json_t *d;
			json_array_foreach(val, i, d)
			{
				char where[400];
				snprintf(where, sizeof(where), "%s: field 'disks[%zu]'", origin, i);
				if ((ret = json_disk(c, d, where, err)))
					goto out;
			}
			continue;
		}
		if (!strcmp(key, "nets")) {
			if (!json_is_array(val)) {
				ret = cfg_fail(err, "%s: field 'nets': must be an array", origin);
				goto out;
			}
			memset(c->nics, 0, sizeof(c->nics));
			c->nnics = 0;
			size_t i;
			json_t *nv;
			json_array_foreach(val, i, nv)
			{
				char where[400];
				snprintf(where, sizeof(where), "%s: field 'nets[%zu]'", origin, i);
				if (!json_is_string(nv)) {
					ret = cfg_fail(
					    err, "%s: must be a string like \"bridge=br0,mac=...\"",
					    where);
					goto out;
				}
				if ((ret = add_nic(c, json_string_value(nv), where, err)))
					goto out;
			}
			continue;
		}
		if (!strcmp(key, "fd_map")) {
			if ((ret = json_fd_map(c, val, origin, err)))
				goto out;
			continue;
		}
		if (!strcmp(key, "console_ports")) {
			if (!json_is_array(val)) {
				ret = cfg_fail(err, "%s: field 'console_ports': must be an array",
					       origin);
				goto out;
			}
			clear_ports(c);
			size_t i;
			json_t *pv;
			json_array_foreach(val, i, pv)
			{
				char where[400];
				snprintf(where, sizeof(where), "%s: field 'console_ports[%zu]'",
					 origin, i);
				json_t *n = json_object_get(pv, "name"),
				       *so = json_object_get(pv, "socket");
				if (!json_is_object(pv) || json_object_size(pv) != 2 ||
				    !json_is_string(n) || !json_is_string(so) ||
				    strchr(json_string_value(n), ',') ||
				    strchr(json_string_value(so), ',')) {
					ret = cfg_fail(
					    err,
					    "%s: must be {\"name\": \"...\", \"socket\": \"...\"} "
					    "(strings without ',')",
					    where);
					goto out;
				}
				char spec[300];
				snprintf(spec, sizeof(spec), "name=%s,socket=%s",
					 json_string_value(n), json_string_value(so));
				if ((ret = add_port(c, spec, where, err)))
					goto out;
			}
			continue;
		}
		const struct option_def *o = NULL;
		for (size_t i = 0; i < ARRAY_SIZE(options); i++)
			if (options[i].field && !strcmp(options[i].field, key))
				o = &options[i];
		if (!o) {
			ret = cfg_fail(err, "%s: field '%s': unknown field", origin, key);
			goto out;
		}
		char buf[32];
		const char *s;
		if (o->json_type == ARG_BOOL) {
			if (!json_is_boolean(val)) {
				ret = cfg_fail(err, "%s: field '%s': must be true or false", origin,
					       key);
				goto out;
			}
			s = json_is_true(val) ? "true" : "false";
		} else if (json_is_string(val)) {
			s = json_string_value(val);
		} else if (json_is_integer(val) &&
			   (o->json_type == ARG_INT || !strcmp(o->field, "memory"))) {
			if (json_integer_value(val) < 0) {
				ret = cfg_fail(err, "%s: field '%s': must not be negative", origin,
					       key);
				goto out;
			}
			snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(val));
			s = buf;
		} else {
			ret = cfg_fail(err, "%s: field '%s': must be a %s", origin, key,
				       o->json_type == ARG_INT ? "number" : "string");
			goto out;
		}
		char what[400];
		snprintf(what, sizeof(what), "%s: field '%s'", origin, key);
		ret = o->set(c, s, what, err);
		if (ret)
			goto out;
	}
out:
	json_decref(root);
	return ret;
}

static int apply_config_file(struct vm_config *c, const char *path, struct cfg_error *err)
{
	uint8_t *data;
	size_t len;
	int r = read_file(path, 1 << 20, &data, &len);
	if (r)
		return cfg_fail(err, "--config '%s': %s", path,
				r == -EFBIG ? "larger than 1 MiB" : strerror(-r));
	char *text = realloc(data, len + 1);
	if (!text) {
		free(data);
		return cfg_fail(err, "--config '%s': out of memory", path);
	}
	text[len] = 0;
	r = config_apply_json_text(c, text, path, err);
	free(text);
	return r;
}

enum {
	OPT_BASE = 256,
	OPT_CONFIG = 1000,
	OPT_RESTORE,
	OPT_CHECK,
	OPT_PRINT_CONFIG,
	OPT_VERSION,
	OPT_HELP
};

/* --restore DIR: the saved configuration is the config file; the directory is kept. */
static int apply_restore(struct vm_config *c, const char *dir, bool had_config,
			 struct cfg_error *err)
{
	if (had_config)
		return cfg_fail(err,
				"--restore '%s': a saved state carries its own configuration; drop "
				"--config",
				dir);
	if (!*dir || strlen(dir) > 4000)
		return cfg_fail(err, "--restore: the directory name is empty or too long");
	char path[4200];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	if (access(path, R_OK) != 0)
		return cfg_fail(err, "--restore '%s': no saved configuration (%s: %s)", dir, path,
				strerror(errno));
	if (apply_config_file(c, path, err))
		return -EINVAL;
	free(c->restore);
	c->restore = strdup(dir);
	return c->restore ? 0 : cfg_fail(err, "--restore: out of memory");
}

int config_parse_args(struct vm_config *c, int argc, char **argv, struct cfg_error *err)
{
	struct option longopts[ARRAY_SIZE(options) + 7];
	char shortopts[64] = "+:h";
	size_t n = 0, sl = strlen(shortopts);
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		longopts[n++] = (struct option){
		    options[i].flag,
		    options[i].json_type == ARG_BOOL ? no_argument : required_argument, NULL,
		    OPT_BASE + (int)i};
		if (options[i].short_flag) {
			shortopts[sl++] = options[i].short_flag;
			shortopts[sl++] = ':';
		}
	}
	shortopts[sl] = 0;
	longopts[n++] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
	longopts[n++] = (struct option){"restore", required_argument, NULL, OPT_RESTORE};
	longopts[n++] = (struct option){"check", no_argument, NULL, OPT_CHECK};
	longopts[n++] = (struct option){"print-config", no_argument, NULL, OPT_PRINT_CONFIG};
	longopts[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
	longopts[n] = (struct option){0};

	/* Pass 1: the config file, help and version. Pass 2: flags, which override the file. */
	bool had_config = false;
	for (int pass = 1; pass <= 2; pass++) {
		optind = 0;
		opterr = 0;
		int ch, longidx;
		while ((ch = getopt_long(argc, argv, shortopts, longopts, &longidx)) != -1) {
			if (ch == '?')
				return cfg_fail(err, "unknown option '%s' (see --help)",
						argv[optind - 1]);
			if (ch == ':')
				return cfg_fail(err, "option '%s' needs a value", argv[optind - 1]);
			if (ch == 'h' || ch == OPT_HELP)
				return CFG_HELP;
			if (ch == OPT_VERSION)
				return CFG_VERSION;
			if (ch == OPT_CONFIG) {
				if (pass == 1 &&
				    (c->restore ? apply_restore(c, c->restore, true, err)
						: apply_config_file(c, optarg, err)))
					return -EINVAL;
				had_config |= pass == 1;
				continue;
			}
			if (ch == OPT_RESTORE) {
				if (pass == 1 && apply_restore(c, optarg, had_config, err))
					return -EINVAL;
				continue;
			}
			if (pass == 1)
				continue;
			if (ch == OPT_CHECK) {
				c->check_only = true;
				continue;
			}
			if (ch == OPT_PRINT_CONFIG) {
				c->print_config = true;
				continue;
			}
			const struct option_def *o = NULL;
			for (size_t i = 0; i < ARRAY_SIZE(options); i++)
				if ((ch < OPT_BASE && options[i].short_flag == ch) ||
				    ch == OPT_BASE + (int)i)
					o = &options[i];
			if (!o)
				return cfg_fail(err, "internal: unhandled option %d", ch);
			char what[48];
			snprintf(what, sizeof(what), "--%s", o->flag);
			if (o->set(c, o->json_type == ARG_BOOL ? "true" : optarg, what, err))
				return -EINVAL;
		}
		if (pass == 2 && optind < argc)
			return cfg_fail(
			    err, "unexpected argument '%s' (options start with --; see --help)",
			    argv[optind]);
	}
	return config_validate(c, err) ? -EINVAL : CFG_RUN;
}

int config_validate(const struct vm_config *c, struct cfg_error *err)
{
	if (!c->kernel)
		return cfg_fail(err, "--kernel (field 'kernel'): required");
	if (c->serial[0].kind == SERIAL_STDOUT && c->serial[1].kind == SERIAL_STDOUT)
		return cfg_fail(err,
				"--serial2 (field 'serial2'): stdout is already used by --serial");
	if (c->serial[0].kind != SERIAL_NONE && c->serial[1].kind == c->serial[0].kind &&
	    c->serial[0].path && c->serial[1].path && !strcmp(c->serial[0].path, c->serial[1].path))
		return cfg_fail(err, "--serial2 (field 'serial2'): same path as --serial");
	if (c->checkpoint_dir && !c->control)
		return cfg_fail(err,
				"--checkpoint-dir (field 'checkpoint_dir'): needs --control, which "
				"serves the checkpoint commands");
	if (c->start_paused && !c->control)
		return cfg_fail(err,
				"--start-paused (field 'start_paused'): needs --control, whose "
				"resume lets the vCPUs run");
	return 0;
}

void config_usage(FILE *out)
{
	fprintf(out, "Usage: berth-vmm --kernel FILE [options]\n"
		     "Run one virtual machine on KVM.\n\nOptions:\n");
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct option_def *o = &options[i];
		char left[64];
		if (o->short_flag)
			snprintf(left, sizeof(left), "-%c, --%s %s", o->short_flag, o->flag,
				 o->arg);
		else
			snprintf(left, sizeof(left), "    --%s %s", o->flag, o->arg);
		fprintf(out, "  %-28s %s\n", left, o->help);
	}
	fprintf(
	    out,
	    "      --config FILE            JSON file with the same settings (fields: kernel, "
	    "initrd,\n"
	    "                               cmdline, memory, cpus, cpu_template, boot, serial, "
	    "serial2,\n"
	    "                               on_reboot, timeout, rng, disks, nets, fd_map, "
	    "console_ports,\n"
	    "                               control, start_paused, checkpoint_dir, name,\n"
	    "                               log_level, seccomp); flags override it\n"
	    "      --restore DIR            start from a state saved by the control socket's save\n"
	    "                               (its config.json; flags override it)\n"
	    "      --check                  validate the configuration and the boot files, then "
	    "exit\n"
	    "      --print-config           validate, print the effective configuration as JSON, "
	    "exit\n"
	    "  -h, --help                   show this help\n"
	    "      --version                show the version\n\n"
	    "Exit status: 0 guest powered off, 1 host or VMM error, 2 bad configuration or boot "
	    "file,\n"
	    "3 guest rebooted (--on-reboot=exit), 4 guest crashed (triple fault), 5 KVM internal "
	    "error\n"
	    "or emulation failure, 6 --timeout expired, 7 stopped by SIGINT/SIGTERM or Ctrl-A x,\n"
	    "8 stopped by the control socket's quit command, 9 state saved (control socket save).\n"
	    "See berth-vmm(1).\n");
}
