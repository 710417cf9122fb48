/* The VM spec of the API: validation naming the field, defaults, JSON merge patch (RFC 7386). */
#include "daemon/vmspec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *const READ_ONLY[] = {"uuid",	    "state",	  "state_reason", "created",
					"modified", "generation", "vmm_pid"};
static const char *const CPU_TEMPLATES[] = {"host", "baseline", NULL};
static const char *const DISK_FORMATS[] = {"auto", "raw", "qcow2", NULL};
static const char *const DISK_CACHES[] = {"none", "writeback", NULL};
static const char *const AUTO_START[] = {"nothing", "start-if-running", "always", NULL};
static const char *const AUTO_STOP[] = {"save", "turn-off", "shut-down", NULL};

int spec_fail(struct spec_error *err, const char *code, const char *field, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return !strcmp(code, "conflict") ? -EEXIST : !strcmp(code, "internal") ? -EIO : -EINVAL;
}

static int oom(struct spec_error *err)
{
	err->code = "internal";
	err->field[0] = '\0';
	snprintf(err->msg, sizeof(err->msg), "out of memory");
	return -ENOMEM;
}

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (!strcmp(s, *list))
			return true;
	return false;
}

/* Every key of obj must be in known (NULL-terminated); the first other one is named. */
static int check_keys(json_t *obj, const char *prefix, const char *const *known,
		      struct spec_error *err)
{
	const char *key;
	json_t *v;
	json_object_foreach(obj, key, v)
	{
		if (!in_list(key, known)) {
			char field[96];
			snprintf(field, sizeof(field), "%s%s%s", prefix, *prefix ? "." : "", key);
			return spec_fail(err, "unknown-field", field, "unknown field '%s'", field);
		}
	}
	return 0;
}

/* A string of at most max bytes without NUL characters. */
static int get_string(json_t *v, const char *field, size_t max, const char **out,
		      struct spec_error *err)
{
	if (!json_is_string(v))
		return spec_fail(err, "invalid-argument", field, "%s: must be a string", field);
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (strlen(s) != len)
		return spec_fail(err, "invalid-argument", field,
				 "%s: must not contain NUL characters", field);
	if (len > max)
		return spec_fail(err, "invalid-argument", field, "%s: at most %zu bytes (got %zu)",
				 field, max, len);
	*out = s;
	return 0;
}

static int get_path(json_t *v, const char *field, bool no_comma, const char **out,
		    struct spec_error *err)
{
	if (get_string(v, field, VMSPEC_PATH_MAX, out, err))
		return -EINVAL;
	if ((*out)[0] != '/')
		return spec_fail(err, "invalid-argument", field, "%s: must be an absolute path",
				 field);
	/* berth-vmm's disk options are comma-separated after the path */
	if (no_comma && strchr(*out, ','))
		return spec_fail(err, "invalid-argument", field, "%s: must not contain ','", field);
	return 0;
}

static int get_enum(json_t *v, const char *field, const char *const *names, const char **out,
		    struct spec_error *err)
{
	char known[128] = "";
	if (json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v) &&
	    in_list(json_string_value(v), names)) {
		*out = json_string_value(v);
		return 0;
	}
	for (const char *const *n = names; *n; n++)
		snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s\"%s\"",
			 n == names ? "" : ", ", *n);
	return spec_fail(err, "invalid-argument", field, "%s: must be one of %s", field, known);
}

static int get_int(json_t *v, const char *field, json_int_t min, json_int_t max, json_int_t *out,
		   struct spec_error *err)
{
	if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
		return spec_fail(err, "invalid-argument", field,
				 "%s: must be a whole number from %lld to %lld", field,
				 (long long)min, (long long)max);
	*out = json_integer_value(v);
	return 0;
}

static int get_bool(json_t *v, const char *field, bool *out, struct spec_error *err)
{
	if (!json_is_boolean(v))
		return spec_fail(err, "invalid-argument", field, "%s: must be true or false",
				 field);
	*out = json_is_true(v);
	return 0;
}

/* A field that is absent or null takes its default. */
static json_t *opt(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	return json_is_null(v) ? NULL : v;
}

static bool uuid_shaped(const char *s, bool lower_only)
{
	static const char pat[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	size_t i;
	for (i = 0; pat[i]; i++) {
		char c = s[i];
		if (pat[i] == '-') {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			     (!lower_only && c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return s[i] == '\0';
}

bool vmspec_is_uuid(const char *s)
{
	return uuid_shaped(s, true);
}

bool vmspec_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > VMSPEC_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-'))
			return false;
	}
	return !uuid_shaped(name, false);
}

static int check_name(json_t *v, json_t *out, struct spec_error *err)
{
	const char *s;
	if (!v)
		return spec_fail(err, "invalid-argument", "name", "name: required");
	if (get_string(v, "name", 255, &s, err))
		return -EINVAL;
	if (!vmspec_name_valid(s))
		return spec_fail(
		    err, "invalid-argument", "name",
		    "name: 1 to %d characters of letters, digits, '.', '_' and '-', not "
		    "starting with '.' or '-' and not shaped like a UUID",
		    VMSPEC_NAME_MAX);
	return json_object_set_new(out, "name", json_string(s)) ? oom(err) : 0;
}

static int check_boot(json_t *v, json_t *out, struct spec_error *err)
{
	static const char *const keys[] = {"kernel", "initrd", "cmdline", NULL};
	const char *kernel, *initrd = NULL, *cmdline = "";
	json_t *f;

	if (!v)
		return spec_fail(err, "invalid-argument", "boot",
				 "boot: required (at least boot.kernel)");
	if (!json_is_object(v))
		return spec_fail(err, "invalid-argument", "boot", "boot: must be an object");
	if (check_keys(v, "boot", keys, err))
		return -EINVAL;
	if (!(f = opt(v, "kernel")))
		return spec_fail(err, "invalid-argument", "boot.kernel", "boot.kernel: required");
	if (get_path(f, "boot.kernel", false, &kernel, err))
		return -EINVAL;
	if ((f = opt(v, "initrd")) && get_path(f, "boot.initrd", false, &initrd, err))
		return -EINVAL;
	if ((f = opt(v, "cmdline")) &&
	    get_string(f, "boot.cmdline", VMSPEC_CMDLINE_MAX, &cmdline, err))
		return -EINVAL;
	json_t *b = json_pack("{s:s, s:o, s:s}", "kernel", kernel, "initrd",
			      initrd ? json_string(initrd) : json_null(), "cmdline", cmdline);
	return !b || json_object_set_new(out, "boot", b) ? oom(err) : 0;
}

static int check_serial(json_t *v, const char *field, json_t **out, struct spec_error *err)
{
	const char *s;
	if (get_string(v, field, VMSPEC_DISK_SERIAL_MAX, &s, err))
		return -EINVAL;
	for (const char *p = s; *p; p++)
		if (*p < 0x21 || *p > 0x7e || *p == ',')
			return spec_fail(err, "invalid-argument", field,
					 "%s: printable ASCII without spaces or ','", field);
	*out = json_string(s);
	return 0;
}

/* A disk is a plain image `path` (the administrator's file) or a managed `disk` (a name or UUID
 * of berthd's disks; disks_resolve fills in its path and format and stores its UUID). */
static int check_disk(json_t *d, size_t i, json_t *disks, struct spec_error *err)
{
	static const char *const keys[] = {"path",   "format", "readonly", "cache",
					   "serial", "disk",   NULL};
	char pre[32], field[64];
	const char *path = NULL, *format = "auto", *cache = "none", *disk = NULL;
	bool readonly = false;
	json_t *f, *serial = json_null();

	snprintf(pre, sizeof(pre), "disks[%zu]", i);
	if (!json_is_object(d))
		return spec_fail(err, "invalid-argument", pre, "%s: must be an object", pre);
	if (check_keys(d, pre, keys, err))
		return -EINVAL;
	snprintf(field, sizeof(field), "%s.disk", pre);
	if ((f = opt(d, "disk"))) {
		if (get_string(f, field, 255, &disk, err))
			return -EINVAL;
		if (!vmspec_name_valid(disk) && !vmspec_is_uuid(disk))
			return spec_fail(err, "invalid-argument", field,
					 "%s: not a disk name or UUID", field);
	}
	snprintf(field, sizeof(field), "%s.path", pre);
	if (!(f = opt(d, "path")) && !disk)
		return spec_fail(err, "invalid-argument", field,
				 "%s: required (or disks[%zu].disk: a managed disk)", field, i);
	if (f && get_path(f, field, true, &path, err))
		return -EINVAL;
	for (size_t j = 0; path && j < json_array_size(disks); j++) {
		const char *other =
		    json_string_value(json_object_get(json_array_get(disks, j), "path"));
		if (other && !strcmp(path, other))
			return spec_fail(err, "invalid-argument", field,
					 "%s: the same file as disks[%zu].path", field, j);
	}
	snprintf(field, sizeof(field), "%s.format", pre);
	if ((f = opt(d, "format")) && get_enum(f, field, DISK_FORMATS, &format, err))
		return -EINVAL;
	snprintf(field, sizeof(field), "%s.readonly", pre);
	if ((f = opt(d, "readonly")) && get_bool(f, field, &readonly, err))
		return -EINVAL;
	snprintf(field, sizeof(field), "%s.cache", pre);
	if ((f = opt(d, "cache")) && get_enum(f, field, DISK_CACHES, &cache, err))
		return -EINVAL;
	snprintf(field, sizeof(field), "%s.serial", pre);
	if ((f = opt(d, "serial")) && check_serial(f, field, &serial, err))
		return -EINVAL;
	json_t *o = json_pack("{s:s*, s:s, s:b, s:s, s:o}", "path", path, "format", format,
			      "readonly", readonly, "cache", cache, "serial", serial);
	if (o && disk && json_object_set_new(o, "disk", json_string(disk)))
		return oom(err);
	return !o || json_array_append_new(disks, o) ? oom(err) : 0;
}

static int check_disks(json_t *v, json_t *out, struct spec_error *err)
{
	json_t *disks = json_array();
	if (!disks)
		return oom(err);
	if (json_object_set_new(out, "disks", disks))
		return oom(err);
	if (!v)
		return 0;
	if (!json_is_array(v))
		return spec_fail(err, "invalid-argument", "disks", "disks: must be an array");
	if (json_array_size(v) > VMSPEC_DISKS_MAX)
		return spec_fail(err, "invalid-argument", "disks", "disks: at most %d disks",
				 VMSPEC_DISKS_MAX);
	for (size_t i = 0; i < json_array_size(v); i++)
		if (check_disk(json_array_get(v, i), i, disks, err))
			return -EINVAL;
	return 0;
}

static int check_ports(json_t *v, json_t *out, struct spec_error *err)
{
	static const char *const keys[] = {"name", NULL};
	json_t *ports = json_array();
	char pre[48], field[64];
	const char *name;

	if (!ports || json_object_set_new(out, "console_ports", ports))
		return oom(err);
	if (!v)
		return 0;
	if (!json_is_array(v))
		return spec_fail(err, "invalid-argument", "console_ports",
				 "console_ports: must be an array");
	if (json_array_size(v) > VMSPEC_PORTS_MAX)
		return spec_fail(err, "invalid-argument", "console_ports",
				 "console_ports: at most %d ports", VMSPEC_PORTS_MAX);
	for (size_t i = 0; i < json_array_size(v); i++) {
		json_t *p = json_array_get(v, i), *f;
		snprintf(pre, sizeof(pre), "console_ports[%zu]", i);
		snprintf(field, sizeof(field), "%s.name", pre);
		if (!json_is_object(p))
			return spec_fail(err, "invalid-argument", pre, "%s: must be an object",
					 pre);
		if (check_keys(p, pre, keys, err))
			return -EINVAL;
		if (!(f = opt(p, "name")))
			return spec_fail(err, "invalid-argument", field, "%s: required", field);
		if (get_string(f, field, VMSPEC_PORT_NAME_MAX, &name, err))
			return -EINVAL;
		if (!*name)
			return spec_fail(err, "invalid-argument", field, "%s: must not be empty",
					 field);
		for (const char *q = name; *q; q++)
			if (*q < 0x21 || *q > 0x7e)
				return spec_fail(err, "invalid-argument", field,
						 "%s: printable ASCII without spaces", field);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(name, json_string_value(
					      json_object_get(json_array_get(ports, j), "name"))))
				return spec_fail(err, "invalid-argument", field,
						 "%s: console_ports[%zu] has the same name", field,
						 j);
		if (json_array_append_new(ports, json_pack("{s:s}", "name", name)))
			return oom(err);
	}
	return 0;
}

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int vmspec_parse_mac(const char *s, unsigned char mac[6])
{
	if (strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 6; i++) {
		int a = hex_digit(s[3 * i]), b = hex_digit(s[3 * i + 1]);
		if (a < 0 || b < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -EINVAL;
		mac[i] = (unsigned char)(a << 4 | b);
	}
	if (mac[0] & 1)
		return -EINVAL; /* multicast */
	for (int i = 0; i < 6; i++)
		if (mac[i])
			return 0;
	return -EINVAL;
}

/* nics[]: {switch, mac, vlan}; berthd fills a missing mac from its pool (nics.c). */
static int check_nics(json_t *v, json_t *out, struct spec_error *err)
{
	static const char *const keys[] = {"switch", "mac", "vlan", "mac_spoofing", NULL};
	json_t *nics = json_array();
	char pre[32], field[48], mac_text[18];
	unsigned char mac[6];

	if (!nics || json_object_set_new(out, "nics", nics))
		return oom(err);
	if (!v)
		return 0;
	if (!json_is_array(v))
		return spec_fail(err, "invalid-argument", "nics", "nics: must be an array");
	if (json_array_size(v) > VMSPEC_NICS_MAX)
		return spec_fail(err, "invalid-argument", "nics", "nics: at most %d NICs",
				 VMSPEC_NICS_MAX);
	for (size_t i = 0; i < json_array_size(v); i++) {
		json_t *n = json_array_get(v, i), *f, *jmac = json_null();
		const char *sw, *m;
		json_int_t vlan = 0;
		snprintf(pre, sizeof(pre), "nics[%zu]", i);
		if (!json_is_object(n))
			return spec_fail(err, "invalid-argument", pre, "%s: must be an object",
					 pre);
		if (check_keys(n, pre, keys, err))
			return -EINVAL;
		snprintf(field, sizeof(field), "%s.switch", pre);
		if (!(f = opt(n, "switch")))
			return spec_fail(err, "invalid-argument", field, "%s: required", field);
		if (get_string(f, field, 255, &sw, err))
			return -EINVAL;
		if (!vmspec_name_valid(sw) && !vmspec_is_uuid(sw))
			return spec_fail(err, "invalid-argument", field,
					 "%s: not a switch name or UUID", field);
		snprintf(field, sizeof(field), "%s.mac", pre);
		if ((f = opt(n, "mac"))) {
			if (get_string(f, field, 17, &m, err))
				return -EINVAL;
			if (vmspec_parse_mac(m, mac))
				return spec_fail(err, "invalid-argument", field,
						 "%s: a unicast MAC address like 52:54:00:12:34:56",
						 field);
			snprintf(mac_text, sizeof(mac_text), "%02x:%02x:%02x:%02x:%02x:%02x",
				 mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
			for (size_t j = 0; j < i; j++) {
				json_t *other = json_object_get(json_array_get(nics, j), "mac");
				if (json_is_string(other) &&
				    !strcmp(json_string_value(other), mac_text))
					return spec_fail(err, "invalid-argument", field,
							 "%s: nics[%zu] has the same MAC address",
							 field, j);
			}
			jmac = json_string(mac_text);
		}
		snprintf(field, sizeof(field), "%s.vlan", pre);
		if ((f = opt(n, "vlan")) && get_int(f, field, 1, VMSPEC_VLAN_MAX, &vlan, err)) {
			json_decref(jmac);
			return -EINVAL;
		}
		bool spoofing = false;
		snprintf(field, sizeof(field), "%s.mac_spoofing", pre);
		if ((f = opt(n, "mac_spoofing")) && get_bool(f, field, &spoofing, err)) {
			json_decref(jmac);
			return -EINVAL;
		}
		json_t *o = json_pack("{s:s, s:o, s:o, s:b}", "switch", sw, "mac", jmac, "vlan",
				      vlan ? json_integer(vlan) : json_null(), "mac_spoofing",
				      spoofing);
		if (!o || json_array_append_new(nics, o))
			return oom(err);
	}
	return 0;
}

int vmspec_normalize(json_t *in, json_t **out, struct spec_error *err)
{
	static const char *const keys[] = {
	    "name",	     "vcpus", "memory_mib", "cpu_template", "boot",  "disks", "nics",
	    "console_ports", "rng",   "auto_start", "auto_stop",    "notes", NULL};
	json_int_t vcpus = 1, memory = 512;
	const char *tmpl = "host", *astart = "start-if-running", *astop = "save", *notes = "";
	bool rng = false;
	json_t *o = NULL, *f;

	if (!json_is_object(in))
		return spec_fail(err, "invalid-argument", "", "the VM spec must be a JSON object");
	for (size_t i = 0; i < ARRAY_SIZE(READ_ONLY); i++)
		if (json_object_get(in, READ_ONLY[i]))
			return spec_fail(err, "invalid-argument", READ_ONLY[i],
					 "%s: is read-only (set by berthd)", READ_ONLY[i]);
	if (check_keys(in, "", keys, err))
		return -EINVAL;
	if (!(o = json_object()))
		return oom(err);
	if (check_name(opt(in, "name"), o, err))
		goto bad;
	if ((f = opt(in, "vcpus")) && get_int(f, "vcpus", 1, VMSPEC_VCPUS_MAX, &vcpus, err))
		goto bad;
	if ((f = opt(in, "memory_mib")) &&
	    get_int(f, "memory_mib", VMSPEC_MEMORY_MIB_MIN, VMSPEC_MEMORY_MIB_MAX, &memory, err))
		goto bad;
	if ((f = opt(in, "cpu_template")) && get_enum(f, "cpu_template", CPU_TEMPLATES, &tmpl, err))
		goto bad;
	if (json_object_set_new(o, "vcpus", json_integer(vcpus)) ||
	    json_object_set_new(o, "memory_mib", json_integer(memory)) ||
	    json_object_set_new(o, "cpu_template", json_string(tmpl)))
		goto nomem;
	if (check_boot(opt(in, "boot"), o, err) || check_disks(opt(in, "disks"), o, err) ||
	    check_nics(opt(in, "nics"), o, err) || check_ports(opt(in, "console_ports"), o, err))
		goto bad;
	if ((f = opt(in, "rng")) && get_bool(f, "rng", &rng, err))
		goto bad;
	if ((f = opt(in, "auto_start")) && get_enum(f, "auto_start", AUTO_START, &astart, err))
		goto bad;
	if ((f = opt(in, "auto_stop")) && get_enum(f, "auto_stop", AUTO_STOP, &astop, err))
		goto bad;
	if ((f = opt(in, "notes")) && get_string(f, "notes", VMSPEC_NOTES_MAX, &notes, err))
		goto bad;
	if (json_object_set_new(o, "rng", json_boolean(rng)) ||
	    json_object_set_new(o, "auto_start", json_string(astart)) ||
	    json_object_set_new(o, "auto_stop", json_string(astop)) ||
	    json_object_set_new(o, "notes", json_string(notes)))
		goto nomem;
	*out = o;
	return 0;
nomem:
	oom(err);
bad:
	json_decref(o);
	return err->code && !strcmp(err->code, "internal") ? -ENOMEM : -EINVAL;
}

json_t *json_merge_patch(json_t *target, json_t *patch)
{
	if (!json_is_object(patch))
		return json_deep_copy(patch);
	json_t *res = json_is_object(target) ? json_deep_copy(target) : json_object();
	const char *key;
	json_t *v;
	if (!res)
		return NULL;
	json_object_foreach(patch, key, v)
	{
		if (json_is_null(v)) {
			json_object_del(res, key);
			continue;
		}
		json_t *merged = json_merge_patch(json_object_get(res, key), v);
		if (!merged || json_object_set_new(res, key, merged)) {
			json_decref(res);
			return NULL;
		}
	}
	return res;
}
