/* berth CLI: `berth checkpoint ...` — take, list, show, apply and delete checkpoints of a VM. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/table.h"

#define VMS "/api/v1/vms"

static const char *str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "-";
}

/* /api/v1/vms/<vm>/checkpoints[/<cp>][suffix], both percent-encoded. */
static int ckpt_path(char *buf, size_t len, const char *vm, const char *cp, const char *suffix)
{
	char base[512];
	if (!*vm || cli_path(base, sizeof(base), VMS, vm, "/checkpoints"))
		return cli_usage(NULL, NULL, "'%.80s' is not a VM name or UUID", vm);
	if (!cp) {
		snprintf(buf, len, "%s", base);
		return EXIT_OK;
	}
	if (!*cp || cli_path(buf, len, base, cp, suffix))
		return cli_usage(NULL, NULL, "'%.80s' is not a checkpoint id or name", cp);
	return EXIT_OK;
}

static void show_ckpt(const json_t *cp)
{
	size_t i;
	json_t *d;
	kv_print(stdout, "Name", "%s", str(cp, "name"));
	kv_print(stdout, "Id", "%s", str(cp, "id"));
	kv_print(stdout, "Kind", "%s", str(cp, "kind"));
	kv_print(stdout, "Parent", "%s", str(cp, "parent"));
	kv_print(stdout, "Created", "%s", str(cp, "created"));
	kv_print(stdout, "Current", "%s",
		 json_is_true(json_object_get(cp, "current")) ? "yes" : "no");
	json_array_foreach(json_object_get(cp, "disks"), i, d)
	{
		char key[32];
		snprintf(key, sizeof(key), "Disk %zu", i);
		kv_print(stdout, key, "%s", json_string_value(d) ? json_string_value(d) : "-");
	}
}

static int ckpt_list(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	static const char *const head[] = {"ID", "NAME", "KIND", "PARENT", "CREATED", "CURRENT"};
	struct response r;
	struct table t;
	char path[640];
	size_t i;
	json_t *cp;
	int code;
	(void)v;

	if ((code = ckpt_path(path, sizeof(path), a->pos[0], NULL, NULL)) ||
	    (code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	table_init(&t, 6, head);
	json_array_foreach(json_object_get(r.body, "checkpoints"), i, cp)
	{
		const char *row[] = {
		    str(cp, "id"),	str(cp, "name"),
		    str(cp, "kind"),	str(cp, "parent"),
		    str(cp, "created"), json_is_true(json_object_get(cp, "current")) ? "*" : ""};
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

static int ckpt_show(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[900];
	int code;
	(void)v;

	if ((code = ckpt_path(path, sizeof(path), a->pos[0], a->pos[1], NULL)) ||
	    (code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	if (c->json)
		cli_print_json(r.body);
	else
		show_ckpt(r.body);
	response_free(&r);
	return EXIT_OK;
}

/* Send the request that starts an operation, follow it, report how it ended. */
static int run_op(struct cli *c, const char *method, const char *path, const json_t *body,
		  const char *what)
{
	struct response r;
	json_t *op;
	int code = cli_api(c, method, path, NULL, body, &r);
	if (code)
		return code;
	op = json_incref(r.body);
	response_free(&r);
	if (!json_is_object(op) || !json_is_string(json_object_get(op, "id"))) {
		json_decref(op);
		return cli_fail(EXIT_ERROR, "berthd's answer to %s is not an operation", what);
	}
	if ((code = cli_op_follow(c, what, &op)))
		goto out;
	if (c->json)
		cli_print_json(op);
	if (strcmp(str(op, "state"), "succeeded")) {
		const char *msg =
		    json_string_value(json_object_get(json_object_get(op, "error"), "message"));
		code = cli_fail(EXIT_ERROR, "%s failed: %s", what, msg ? msg : "no reason given");
		goto out;
	}
	if (!c->json) {
		json_t *res = json_object_get(op, "result"),
		       *cp = json_object_get(res, "checkpoint");
		printf("%s: done (checkpoint %s '%s'", what, str(cp, "id"), str(cp, "name"));
		if (json_is_string(json_object_get(res, "state")))
			printf(", the VM is %s", str(res, "state"));
		if (json_is_integer(json_object_get(res, "merged_bytes")))
			printf(", %lld bytes merged",
			       (long long)json_integer_value(json_object_get(res, "merged_bytes")));
		printf(")\n");
	}
out:
	json_decref(op);
	return code;
}

static int ckpt_create(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	char path[640], what[256];
	int code;
	(void)v;

	if ((code = ckpt_path(path, sizeof(path), a->pos[0], NULL, NULL)))
		return code;
	json_t *body =
	    json_pack("{s:s, s:b}", "name", a->pos[1], "disk_only", args_has(a, "disk-only"));
	if (!body)
		return cli_fail(EXIT_ERROR, "out of memory");
	snprintf(what, sizeof(what), "checkpoint %.64s of %.80s", a->pos[1], a->pos[0]);
	code = run_op(c, "POST", path, body, what);
	json_decref(body);
	return code;
}

static int ckpt_apply(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	char path[900], what[256];
	int code;
	(void)v;

	if ((code = ckpt_path(path, sizeof(path), a->pos[0], a->pos[1], "/apply")))
		return code;
	snprintf(what, sizeof(what), "apply %.64s to %.80s", a->pos[1], a->pos[0]);
	return run_op(c, "POST", path, NULL, what);
}

static int ckpt_delete(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	char path[900], what[256];
	int code;
	(void)v;

	if ((code = ckpt_path(path, sizeof(path), a->pos[0], a->pos[1], NULL)))
		return code;
	snprintf(what, sizeof(what), "delete %.64s of %.80s", a->pos[1], a->pos[0]);
	return run_op(c, "DELETE", path, NULL, what);
}

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
    {"disk-only", 0, NULL, NULL,
     "leave memory and device state out (a checkpoint of a VM that is off always is)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_verb cli_checkpoint_verbs[] = {
    {"create", ckpt_create, "VM NAME", 2, 2, "take a checkpoint of a VM (Checkpoint-VM)",
     "Take a checkpoint named NAME of a VM. A running or paused VM keeps running: its memory,\n"
     "devices and disks are captured (a standard checkpoint) while the guest is paused for a few\n"
     "milliseconds. A VM that is off gets a disk-only checkpoint; a saved VM keeps its saved\n"
     "state in the checkpoint and stays saved. NAME: letters, digits, '.', '_', '-', ':'.",
     create_opts, true},
    {"list", ckpt_list, "VM", 1, 1, "list the checkpoints of a VM (Get-VMSnapshot)",
     "List the checkpoints of a VM in the order they were taken: id, name, kind (standard or\n"
     "disk-only), parent, when, and a * at the current one (the one the VM's present state\n"
     "descends from).",
     no_opts, true},
    {"show", ckpt_show, "VM CHECKPOINT", 2, 2, "show one checkpoint",
     "Show one checkpoint of a VM, by id (c1, c2, ...) or name, with the image that holds each\n"
     "of its disks.",
     no_opts, true},
    {"apply", ckpt_apply, "VM CHECKPOINT", 2, 2, "apply a checkpoint (Restore-VMSnapshot)",
     "Revert a VM to a checkpoint. What the VM did since its last checkpoint is discarded (take\n"
     "a checkpoint first to keep it). A running or paused VM stays running or paused. A VM\n"
     "that is off or saved ends saved in the checkpoint's state (start resumes it there); with\n"
     "a disk-only checkpoint it ends off, on the checkpoint's disks.",
     no_opts, true},
    {"delete", ckpt_delete, "VM CHECKPOINT", 2, 2, "delete a checkpoint (Remove-VMSnapshot)",
     "Delete a checkpoint. Its disk layers merge into their neighbours, while the VM runs if it\n"
     "does; the progress line follows the merge on a terminal. The VM's present state is not\n"
     "changed.",
     no_opts, true},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
