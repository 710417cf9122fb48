/* berth CLI: a VM spec (create) or merge patch (set) from command-line options and --from-json. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/vm_spec.h"
#include "common/util.h"

/* Take ownership of value; EXIT_ERROR when out of memory. */
static int set_new(json_t *obj, const char *key, json_t *value)
{
	if (!value || json_object_set_new(obj, key, value))
		return cli_fail(EXIT_ERROR, "out of memory");
	return EXIT_OK;
}

static int set_str(json_t *obj, const char *key, const char *s)
{
	return set_new(obj, key, json_string(s));
}

/* The "boot" member as an object, created (or replacing null) when needed. */
static json_t *boot_of(json_t *obj)
{
	json_t *b = json_object_get(obj, "boot");
	if (json_is_object(b))
		return b;
	b = json_object();
	if (!b || json_object_set_new(obj, "boot", b))
		return NULL;
	return b;
}

/* Relative paths are made absolute against the working directory when berthd is local (the
 * API wants absolute paths, and the daemon's working directory is not the user's). */
static int host_path(const struct cli *c, const char *opt, const char *p, json_t **out)
{
	if (!*p)
		return cli_usage(NULL, NULL, "--%s: empty path", opt);
	if (p[0] == '/' || c->conn.host) {
		*out = json_string(p);
	} else {
		char *cwd = getcwd(NULL, 0);
		if (!cwd)
			return cli_fail(EXIT_ERROR,
					"--%s %s: cannot read the working directory: %s", opt, p,
					strerror(errno));
		char *abs = NULL;
		if (asprintf(&abs, "%s/%s", strcmp(cwd, "/") == 0 ? "" : cwd, p) < 0)
			abs = NULL;
		free(cwd);
		*out = abs ? json_string(abs) : NULL;
		free(abs);
	}
	return *out ? EXIT_OK : cli_fail(EXIT_ERROR, "out of memory");
}

static int parse_memory(const char *s, json_t **out)
{
	uint64_t v;
	bool digits = *s && strspn(s, "0123456789") == strlen(s);
	int r = digits ? parse_u64(s, &v) : parse_size(s, &v);
	if (r || (!digits && v % MiB))
		return cli_usage(NULL, NULL,
				 "--memory '%s': give a size in whole MiB, e.g. 512M or 2G (a bare "
				 "number is MiB)",
				 s);
	v = digits ? v : v / MiB;
	if (v > INT32_MAX)
		v = INT32_MAX; /* berthd names the limit */
	*out = json_integer((json_int_t)v);
	return EXIT_OK;
}

/* "PATH[,format=F][,readonly][,cache=C][,serial=S]" as a DiskSpec. */
static int parse_disk(const struct cli *c, const char *arg, json_t **out)
{
	char *copy = strdup(arg), *save = NULL;
	json_t *d = json_object(), *path = NULL;
	int ret = EXIT_OK;

	if (!copy || !d) {
		ret = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	char *tok = strtok_r(copy, ",", &save);
	if (!tok || arg[0] == ',') {
		ret = cli_usage(NULL, NULL, "--disk '%s': starts with the image's path", arg);
		goto out;
	}
	ret = host_path(c, "disk", tok, &path);
	if (ret || (ret = set_new(d, "path", path)))
		goto out;
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *eq = strchr(tok, '=');
		if (strcmp(tok, "readonly") == 0 || strcmp(tok, "ro") == 0) {
			ret = set_new(d, "readonly", json_true());
		} else if (eq &&
			   (strncmp(tok, "format=", 7) == 0 || strncmp(tok, "cache=", 6) == 0 ||
			    strncmp(tok, "serial=", 7) == 0)) {
			*eq = '\0';
			ret = set_str(d, tok, eq + 1);
		} else {
			ret = cli_usage(NULL, NULL,
					"--disk '%s': unknown option '%s' (format=, readonly, "
					"cache=, serial=)",
					arg, tok);
		}
		if (ret)
			goto out;
	}
	*out = d;
	d = NULL;
out:
	json_decref(d);
	free(copy);
	return ret;
}

/* "switch=NAME[,mac=M][,vlan=N][,mac-spoofing=on|off]" as a NicSpec (berthd checks the values and names the field). */
static int parse_nic(const char *arg, json_t **out)
{
	char *copy = strdup(arg), *save = NULL, *tok;
	json_t *n = json_object();
	int ret = EXIT_OK;

	if (!copy || !n) {
		ret = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;
		if (eq && (strncmp(tok, "switch=", 7) == 0 || strncmp(tok, "mac=", 4) == 0)) {
			*eq = '\0';
			ret = set_str(n, tok, eq + 1);
		} else if (eq && strncmp(tok, "vlan=", 5) == 0) {
			if (parse_u64(eq + 1, &v) || v > 65535)
				ret =
				    cli_usage(NULL, NULL, "--nic '%s': vlan= takes a number", arg);
			else
				ret = set_new(n, "vlan", json_integer((json_int_t)v));
		} else if (eq && strncmp(tok, "mac-spoofing=", 13) == 0) {
			if (strcmp(eq + 1, "on") && strcmp(eq + 1, "off"))
				ret = cli_usage(NULL, NULL,
						"--nic '%s': mac-spoofing= takes on or off", arg);
			else
				ret = set_new(n, "mac_spoofing", json_boolean(!strcmp(eq + 1, "on")));
		} else {
			ret = cli_usage(NULL, NULL,
					"--nic '%s': unknown option '%s' (switch=, mac=, vlan=, "
					"mac-spoofing=)",
					arg, tok);
		}
	}
	if (!ret && !json_object_get(n, "switch"))
		ret = cli_usage(NULL, NULL, "--nic '%s': switch=NAME is required", arg);
	if (!ret) {
		*out = n;
		n = NULL;
	}
out:
	json_decref(n);
	free(copy);
	return ret;
}

/* Every value of a repeatable option (--disk, --console-port, --nic) as the JSON array key; --none
 * sets an empty one. */
static int list_of(const struct cli *c, const struct cli_args *a, const char *opt, const char *key,
		   const char *none, json_t *obj)
{
	json_t *arr;
	bool any = args_has(a, opt), clear = none && args_has(a, none);

	if (any && clear)
		return cli_usage(NULL, NULL, "--%s and --%s contradict each other", opt, none);
	if (!any && !clear)
		return EXIT_OK;
	arr = json_array();
	if (!arr)
		return cli_fail(EXIT_ERROR, "out of memory");
	for (int i = 0; i < a->nset; i++) {
		if (strcmp(a->set[i].opt->name, opt) != 0)
			continue;
		json_t *item = NULL;
		int ret;
		if (strcmp(opt, "disk") == 0) {
			ret = parse_disk(c, a->set[i].val, &item);
		} else if (strcmp(opt, "nic") == 0) {
			ret = parse_nic(a->set[i].val, &item);
		} else {
			item = json_pack("{s:s}", "name", a->set[i].val);
			ret = item ? EXIT_OK : cli_fail(EXIT_ERROR, "out of memory");
		}
		if (!ret && json_array_append_new(arr, item))
			ret = cli_fail(EXIT_ERROR, "out of memory");
		if (ret) {
			json_decref(arr);
			return ret;
		}
	}
	return set_new(obj, key, arr);
}

int vm_spec_load(const char *path, json_t **out)
{
	json_error_t jerr;
	json_t *doc = strcmp(path, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
					     : json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc && jerr.line < 1)
		return cli_usage(NULL, NULL, "--from-json %s: %s", path, jerr.text);
	if (!doc)
		return cli_usage(NULL, NULL, "--from-json %s: %s (line %d)",
				 strcmp(path, "-") == 0 ? "(stdin)" : path, jerr.text, jerr.line);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return cli_usage(NULL, NULL, "--from-json %s: not a JSON object", path);
	}
	*out = doc;
	return EXIT_OK;
}

int vm_spec_apply(const struct cli *c, const struct cli_args *a, json_t *obj)
{
	static const struct {
		const char *opt, *key;
	} strings[] = {{"cpu-template", "cpu_template"},
		       {"auto-start", "auto_start"},
		       {"auto-stop", "auto_stop"},
		       {"notes", "notes"},
		       {"name", "name"}};
	const char *v;
	json_t *j = NULL, *boot;
	int ret;

	if ((v = args_get(a, "vcpus"))) {
		uint64_t n;
		if (parse_u64(v, &n) || n > INT32_MAX)
			return cli_usage(NULL, NULL, "--vcpus '%s': not a whole number", v);
		if ((ret = set_new(obj, "vcpus", json_integer((json_int_t)n))))
			return ret;
	}
	if ((v = args_get(a, "memory"))) {
		if ((ret = parse_memory(v, &j)) || (ret = set_new(obj, "memory_mib", j)))
			return ret;
	}
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		if ((v = args_get(a, strings[i].opt)) && (ret = set_str(obj, strings[i].key, v)))
			return ret;
	if (args_has(a, "initrd") && args_has(a, "no-initrd"))
		return cli_usage(NULL, NULL, "--initrd and --no-initrd contradict each other");
	if (args_has(a, "kernel") || args_has(a, "initrd") || args_has(a, "no-initrd") ||
	    args_has(a, "cmdline")) {
		if (!(boot = boot_of(obj)))
			return cli_fail(EXIT_ERROR, "out of memory");
		if ((v = args_get(a, "kernel")) &&
		    ((ret = host_path(c, "kernel", v, &j)) || (ret = set_new(boot, "kernel", j))))
			return ret;
		if ((v = args_get(a, "initrd")) &&
		    ((ret = host_path(c, "initrd", v, &j)) || (ret = set_new(boot, "initrd", j))))
			return ret;
		if (args_has(a, "no-initrd") && (ret = set_new(boot, "initrd", json_null())))
			return ret;
		if ((v = args_get(a, "cmdline")) && (ret = set_str(boot, "cmdline", v)))
			return ret;
	}
	if ((ret = list_of(c, a, "disk", "disks", "no-disks", obj)) ||
	    (ret = list_of(c, a, "console-port", "console_ports", "no-console-ports", obj)) ||
	    (ret = list_of(c, a, "nic", "nics", "no-nics", obj)))
		return ret;
	if (args_has(a, "rng") && args_has(a, "no-rng"))
		return cli_usage(NULL, NULL, "--rng and --no-rng contradict each other");
	if (args_has(a, "rng") && (ret = set_new(obj, "rng", json_true())))
		return ret;
	if (args_has(a, "no-rng") && (ret = set_new(obj, "rng", json_false())))
		return ret;
	return EXIT_OK;
}
