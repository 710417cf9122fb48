/* berth CLI: `berth disk ...` — managed disk images in berthd's pool, attached to VMs. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/util.h"

#define DISKS "/api/v1/disks"
#define VMS "/api/v1/vms"

static const char *str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "-";
}

/* 10G, 1.5G, 512: sizes for people. */
static void human(const json_t *v, char *buf, size_t len)
{
	static const char sfx[] = "KMGTP";
	if (!json_is_integer(v)) {
		snprintf(buf, len, "-");
		return;
	}
	double x = (double)json_integer_value(v);
	int i = -1;
	while (x >= 1024 && i < 4) {
		x /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%.0f", x);
	else if (x == (double)(int64_t)x)
		snprintf(buf, len, "%.0f%c", x, sfx[i]);
	else
		snprintf(buf, len, "%.1f%c", x, sfx[i]);
}

static void users(const json_t *d, char *buf, size_t len)
{
	size_t i, off = 0;
	json_t *u;
	buf[0] = '\0';
	json_array_foreach(json_object_get(d, "attached_to"), i, u)
	{
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", str(u, "name"));
		if (off >= len)
			break;
	}
	if (!buf[0])
		snprintf(buf, len, "-");
}

static int disk_path(char *buf, size_t len, const char *id, const char *suffix)
{
	if (!*id || cli_path(buf, len, DISKS, id, suffix))
		return cli_usage(NULL, NULL, "'%.80s' is not a disk name or UUID", id);
	return EXIT_OK;
}

/* --size: 10G, 512M, 1T or bytes (a multiple of 512). */
static int size_opt(const struct cli_args *a, bool required, json_t **out)
{
	const char *s = args_get(a, "size");
	uint64_t v;
	*out = NULL;
	if (!s) {
		if (required)
			return cli_usage(NULL, NULL, "--size is required, e.g. --size 10G");
		return EXIT_OK;
	}
	if (parse_size(s, &v) || v < 512 || v % 512 || v > INT64_MAX)
		return cli_usage(NULL, NULL,
				 "--size '%.40s': a size like 10G, 512M or 1T (bytes: a multiple "
				 "of 512)",
				 s);
	*out = json_integer((json_int_t)v);
	return EXIT_OK;
}

static void show_disk(const json_t *d)
{
	char size[32], alloc[32], vms[256];
	human(json_object_get(d, "size"), size, sizeof(size));
	human(json_object_get(d, "allocated"), alloc, sizeof(alloc));
	users(d, vms, sizeof(vms));
	kv_print(stdout, "Name", "%s", str(d, "name"));
	kv_print(stdout, "UUID", "%s", str(d, "uuid"));
	kv_print(stdout, "Format", "%s", str(d, "format"));
	kv_print(stdout, "Size", "%s (%" JSON_INTEGER_FORMAT " bytes)", size,
		 json_integer_value(json_object_get(d, "size")));
	kv_print(stdout, "Allocated", "%s%s", alloc,
		 json_is_true(json_object_get(d, "present")) ? "" : " (image file missing)");
	kv_print(stdout, "Path", "%s", str(d, "path"));
	kv_print(stdout, "Backing", "%s", str(d, "backing_name"));
	kv_print(stdout, "Attached to", "%s", vms);
	kv_print(stdout, "Created", "%s", str(d, "created"));
}

static int print_disk(struct cli *c, struct response *r)
{
	if (c->json)
		cli_print_json(r->body);
	else
		show_disk(r->body);
	response_free(r);
	return EXIT_OK;
}

static int disk_list(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	static const char *const head[] = {"NAME",    "FORMAT",	     "SIZE", "ALLOCATED",
					   "BACKING", "ATTACHED TO", "UUID"};
	char size[32], alloc[32], vms[256];
	struct response r;
	struct table t;
	size_t i;
	json_t *d;
	int code;
	(void)v;
	(void)a;

	if ((code = cli_api(c, "GET", DISKS, NULL, NULL, &r)))
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	table_init(&t, 7, head);
	json_array_foreach(json_object_get(r.body, "disks"), i, d)
	{
		human(json_object_get(d, "size"), size, sizeof(size));
		human(json_object_get(d, "allocated"), alloc, sizeof(alloc));
		users(d, vms, sizeof(vms));
		const char *row[] = {str(d, "name"), str(d, "format"),	     size,
				     alloc,	     str(d, "backing_name"), vms,
				     str(d, "uuid")};
		if (table_add(&t, row)) {
			code = cli_fail(EXIT_ERROR, "out of memory");
			break;
		}
	}
	if (!code)
		table_print(&t, stdout);
	table_free(&t);
	response_free(&r);
	return code;
}

static int disk_show(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	int code;
	(void)v;

	if ((code = disk_path(path, sizeof(path), a->pos[0], NULL)) ||
	    (code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	return print_disk(c, &r);
}

static int disk_create(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	const char *format = args_get(a, "format"), *backing = args_get(a, "backing");
	struct response r;
	json_t *size;
	int code;
	(void)v;

	if ((code = size_opt(a, !backing, &size)))
		return code;
	json_t *body = json_pack("{s:s}", "name", a->pos[0]);
	if (size)
		json_object_set_new(body, "size", size);
	if (format)
		json_object_set_new(body, "format", json_string(format));
	if (backing)
		json_object_set_new(body, "backing", json_string(backing));
	code = cli_api(c, "POST", DISKS, NULL, body, &r);
	json_decref(body);
	return code ? code : print_disk(c, &r);
}

static int disk_resize(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	json_t *size;
	int code;
	(void)v;

	if ((code = disk_path(path, sizeof(path), a->pos[0], "/resize")) ||
	    (code = size_opt(a, true, &size)))
		return code;
	json_t *body = json_pack("{s:o}", "size", size);
	code = cli_api(c, "POST", path, NULL, body, &r);
	json_decref(body);
	return code ? code : print_disk(c, &r);
}

static int disk_delete(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512], q[256];
	int code;
	(void)v;

	if ((code = disk_path(path, sizeof(path), a->pos[0], NULL)))
		return code;
	if (!args_has(a, "yes")) {
		if (!isatty(STDIN_FILENO))
			return cli_usage(NULL, NULL,
					 "not deleting %s: stdin is not a terminal to confirm on; "
					 "pass --yes",
					 a->pos[0]);
		snprintf(q, sizeof(q), "Delete disk %s and its image file?", a->pos[0]);
		if (!cli_confirm(q))
			return cli_fail(EXIT_ERROR, "not deleted");
	}
	if ((code = cli_api(c, "DELETE", path, NULL, NULL, &r)))
		return code;
	response_free(&r);
	if (!c->json)
		printf("deleted disk %s\n", a->pos[0]);
	return EXIT_OK;
}

static int disk_attach(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	const char *serial = args_get(a, "serial"), *cache = args_get(a, "cache");
	struct response r;
	char path[512];
	int code;
	(void)v;

	if (!*a->pos[0] || cli_path(path, sizeof(path), VMS, a->pos[0], "/disks"))
		return cli_usage(NULL, NULL, "'%.80s' is not a VM name or UUID", a->pos[0]);
	json_t *body = json_pack("{s:s}", "disk", a->pos[1]);
	if (args_has(a, "readonly"))
		json_object_set_new(body, "readonly", json_true());
	if (serial)
		json_object_set_new(body, "serial", json_string(serial));
	if (cache)
		json_object_set_new(body, "cache", json_string(cache));
	code = cli_api(c, "POST", path, NULL, body, &r);
	json_decref(body);
	if (code)
		return code;
	if (c->json)
		cli_print_json(r.body);
	else
		printf("attached disk %s to VM %s as disks[%zu]\n", a->pos[1], a->pos[0],
		       json_array_size(json_object_get(r.body, "disks")) - 1);
	response_free(&r);
	return EXIT_OK;
}

static int disk_detach(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	int code;
	(void)v;

	if (!*a->pos[0] || !*a->pos[1] || strlen(a->pos[1]) > 255 ||
	    cli_path(path, sizeof(path), VMS, a->pos[0], "/disks"))
		return cli_usage(NULL, NULL,
				 "'%.80s %.80s': not a VM and a disk name, UUID or index",
				 a->pos[0], a->pos[1]);
	char full[800];
	if (cli_path(full, sizeof(full), path, a->pos[1], NULL))
		return cli_usage(NULL, NULL, "'%.80s': not a disk name, UUID or index", a->pos[1]);
	if ((code = cli_api(c, "DELETE", full, NULL, NULL, &r)))
		return code;
	if (c->json)
		cli_print_json(r.body);
	else
		printf("detached disk %s from VM %s\n", a->pos[1], a->pos[0]);
	response_free(&r);
	return EXIT_OK;
}

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
    {"size", OPT_ARG, "SIZE", NULL,
     "virtual size: 10G, 512M, 1T or bytes; required unless --backing (then the backing "
     "disk's size)"},
    {"format", OPT_ARG, "FMT", "qcow2 raw", "qcow2 (default; allocated as written) or raw"},
    {"backing", OPT_ARG, "DISK", NULL,
     "qcow2: another managed disk this one is an overlay of (its name or UUID)"},
    {NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt resize_opts[] = {
    {"size", OPT_ARG, "SIZE", NULL, "the new virtual size (at least the current one)"},
    {NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
    {"yes", 0, NULL, NULL, "do not ask (needed when stdin is not a terminal)"},
    {NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt attach_opts[] = {
    {"readonly", 0, NULL, NULL, "the guest may only read it"},
    {"serial", OPT_ARG, "S", NULL, "the serial number the guest reads (at most 20 characters)"},
    {"cache", OPT_ARG, "MODE", "none writeback",
     "none (default: O_DIRECT) or writeback (the host page cache)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_verb cli_disk_verbs[] = {
    {"create", disk_create, "NAME", 1, 1, "create a managed disk image in berthd's pool",
     "Create a disk image in berthd's disk pool (qcow2 by default, or sparse raw). With\n"
     "--backing the new qcow2 image is an overlay of another managed disk: only managed\n"
     "disks can be backing files. Prints the new disk.",
     create_opts, false},
    {"list", disk_list, "", 0, 0, "list the managed disks",
     "List the managed disks: name, format, virtual size, space the file takes, backing disk,\n"
     "the VMs using it and UUID.",
     no_opts, false},
    {"show", disk_show, "NAME|UUID", 1, 1, "show one managed disk",
     "Show one managed disk, including its image path and the VMs it is attached to.", no_opts,
     false},
    {"resize", disk_resize, "NAME|UUID", 1, 1, "grow a managed disk",
     "Grow a disk to --size (disks never shrink). Every VM using it must be off and have no\n"
     "checkpoints (exit status 4 otherwise). The guest sees the new size at its next boot.",
     resize_opts, false},
    {"delete", disk_delete, "NAME|UUID", 1, 1, "delete a managed disk and its image",
     "Delete a managed disk and its image file. Refused (exit status 4) while it is attached\n"
     "to a VM or is the backing disk of another disk.",
     delete_opts, false},
    {"attach", disk_attach, "VM DISK", 2, 2, "attach a managed disk to a VM (VM off)",
     "Append a managed disk to a VM's disks (it becomes the next virtio-blk device). The VM\n"
     "must be off: there is no hot-plug yet (exit status 4 otherwise).",
     attach_opts, true},
    {"detach", disk_detach, "VM DISK", 2, 2, "detach a disk from a VM (VM off)",
     "Remove a disk from a VM's disks; DISK is a managed disk's name or UUID, or the disk's\n"
     "index in the VM's list (0, 1, ...; any disk). The image is kept. The VM must be off.",
     no_opts, true},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
