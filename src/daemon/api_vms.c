/* The VMs resource: create, list, show, modify (merge patch, rename), delete — definitions only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/disks.h"
#include "daemon/nics.h"
#include "daemon/vmctl.h"
#include "daemon/vmspec.h"

/* Spec fields that are berthd's alone: they may change in every state. */
static const char *const BERTHD_ONLY[] = {"name", "notes", "auto_start", "auto_stop"};

/* Whether a and b differ in a field the VMM sees (the hardware). */
static bool hardware_differs(json_t *a, json_t *b)
{
	json_t *x = json_copy(a), *y = json_copy(b);
	bool differs = true;
	if (x && y) {
		for (size_t i = 0; i < sizeof(BERTHD_ONLY) / sizeof(BERTHD_ONLY[0]); i++) {
			json_object_del(x, BERTHD_ONLY[i]);
			json_object_del(y, BERTHD_ONLY[i]);
		}
		differs = !json_equal(x, y);
	}
	json_decref(x);
	json_decref(y);
	return differs;
}

/* A VM without a VMM: its definition may change, it may be deleted. */
static bool state_is_at_rest(const char *state)
{
	return !strcmp(state, "off") || !strcmp(state, "crashed") || !strcmp(state, "saved");
}

/* The spec of a stored VM: its config plus its name (NULL if the stored config is unreadable). */
static json_t *vm_spec(const struct db_vm *vm)
{
	json_t *spec = json_loads(vm->config, 0, NULL);
	if (!json_is_object(spec) || json_object_set_new(spec, "name", json_string(vm->name))) {
		log_err("api", "VM %s: stored config is not a JSON object", vm->uuid);
		json_decref(spec);
		return NULL;
	}
	return spec;
}

/* The API representation: identity, the spec, then the read-only fields. */
static json_t *vm_json(const struct db_vm *vm)
{
	json_t *spec = vm_spec(vm);
	json_t *o = json_pack("{s:s, s:s}", "uuid", vm->uuid, "name", vm->name);
	if (!spec || !o)
		goto fail;
	json_object_del(spec, "name");
	if (json_object_update(o, spec) ||
	    json_object_set_new(o, "state", json_string(vm->state)) ||
	    json_object_set_new(o, "state_reason",
				vm->state_reason ? json_string(vm->state_reason) : json_null()) ||
	    json_object_set_new(o, "created", json_string(vm->created)) ||
	    json_object_set_new(o, "modified", json_string(vm->modified)) ||
	    json_object_set_new(o, "generation", json_integer(vm->generation)) ||
	    json_object_set_new(o, "vmm_pid",
				vm->vmm_pid > 0 ? json_integer(vm->vmm_pid) : json_null()))
		goto fail;
	json_decref(spec);
	return o;
fail:
	json_decref(spec);
	json_decref(o);
	return NULL;
}

static void respond_vm(struct api_resp *resp, unsigned status, const struct db_vm *vm)
{
	resp->body = vm_json(vm);
	if (!resp->body) {
		api_error(resp, 500, "internal", NULL, "cannot represent VM %s", vm->uuid);
		return;
	}
	resp->status = status;
	resp->etag = vm->generation;
}

/* The config column: the normalized spec without its name. */
static char *config_text(json_t *spec)
{
	json_t *c = json_copy(spec);
	char *text;
	if (!c)
		return NULL;
	json_object_del(c, "name");
	text = json_dumps(c, JSON_COMPACT);
	json_decref(c);
	return text;
}

static void spec_failed(struct api_resp *resp, int ret, const struct spec_error *err)
{
	if (ret == -ENOMEM)
		api_error(resp, 500, "internal", NULL, "out of memory");
	else if (ret == -EEXIST)
		api_error(resp, 409, "conflict", err->field, "%s", err->msg);
	else if (ret != -EINVAL)
		api_error(resp, 500, "internal", err->field, "%s", err->msg);
	else
		api_error(resp, 400, err->code, err->field, "%s", err->msg);
}

void api_vms_create(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct spec_error serr = {0};
	struct db_vm vm = {0}, row = {0};
	json_t *spec = NULL, *detail = NULL;
	char now[32];
	int ret;

	if ((ret = vmspec_normalize(req->json, &spec, &serr))) {
		spec_failed(resp, ret, &serr);
		return;
	}
	api_now(now);
	if (api_uuid_v4(vm.uuid)) {
		api_error(resp, 500, "internal", NULL, "no random numbers for a UUID");
		goto out;
	}
	vm.name = (char *)json_string_value(json_object_get(spec, "name"));
	vm.created = now;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	/* the NICs' switches exist, their MACs settled (the pool) in the same transaction */
	if ((ret = nics_resolve(db, vm.uuid, spec, NULL, &serr)) ||
	    (ret = disks_resolve(db, spec, &serr))) {
		db_rollback(db);
		spec_failed(resp, ret, &serr);
		goto out;
	}
	vm.config = config_text(spec);
	detail =
	    json_pack("{s:o, s:s, s:O}", "actor", api_actor(req), "name", vm.name, "spec", spec);
	if (!vm.config || !detail) {
		db_rollback(db);
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto out;
	}
	if ((ret = db_vm_insert(db, &vm)) ||
	    (ret = db_event_add(db, now, vm.uuid, "vm-created", detail)) ||
	    (ret = db_vm_find(db, vm.uuid, &row))) {
		db_rollback(db);
		if (ret == -EEXIST)
			api_error(resp, 409, "conflict", "name", "a VM named '%s' already exists",
				  vm.name);
		else
			api_db_failed(resp, ret);
		goto out;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	log_info("api", "VM %s (%s) created by uid %u", vm.name, vm.uuid, (unsigned)req->uid);
	respond_vm(resp, 201, &row);
	snprintf(resp->location, sizeof(resp->location), API_PREFIX "/vms/%s", vm.uuid);
out:
	db_vm_clear(&row);
	free(vm.config);
	json_decref(detail);
	json_decref(spec);
}

/* The list can hold thousands of VMs: each VM's JSON is spliced from its stored config (compact
 * JSON of the spec without the name, written by config_text) rather than parsed and printed again;
 * the result is the same text vm_json() would give. */
static void put_str(FILE *f, const char *s)
{
	if (!s) {
		fputs("null", f);
		return;
	}
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

struct list_acc {
	FILE *f;
	unsigned n;
};

static int list_one(const struct db_vm *vm, void *arg)
{
	struct list_acc *a = arg;
	size_t len = strlen(vm->config);
	if (len < 2 || vm->config[0] != '{' || vm->config[len - 1] != '}') {
		log_err("api", "VM %s: stored config is not a JSON object", vm->uuid);
		return -EIO;
	}
	fputs(a->n++ ? ",{\"uuid\":" : "{\"uuid\":", a->f);
	put_str(a->f, vm->uuid);
	fputs(",\"name\":", a->f);
	put_str(a->f, vm->name);
	if (len > 2) {
		fputc(',', a->f);
		fwrite(vm->config + 1, 1, len - 2, a->f);
	}
	fputs(",\"state\":", a->f);
	put_str(a->f, vm->state);
	fputs(",\"state_reason\":", a->f);
	put_str(a->f, vm->state_reason);
	fputs(",\"created\":", a->f);
	put_str(a->f, vm->created);
	fputs(",\"modified\":", a->f);
	put_str(a->f, vm->modified);
	fprintf(a->f, ",\"generation\":%lld,\"vmm_pid\":", (long long)vm->generation);
	if (vm->vmm_pid > 0)
		fprintf(a->f, "%lld}", (long long)vm->vmm_pid);
	else
		fputs("null}", a->f);
	return 0;
}

void api_vms_list(struct api_req *req, struct api_resp *resp)
{
	json_t *name = json_object_get(req->query, "name");
	struct list_acc a = {0};
	char *text = NULL;
	size_t len = 0;
	int ret;

	if (name && !json_is_string(name)) {
		api_error(resp, 400, "invalid-argument", "name",
			  "name: needs a value (?name=NAME)");
		return;
	}
	if (!(a.f = open_memstream(&text, &len))) {
		api_db_failed(resp, -ENOMEM);
		return;
	}
	fputs("{\"vms\":[", a.f);
	if ((ret = db_begin(req->ctx->db, false)))
		goto out;
	ret = db_vm_list(req->ctx->db, name ? json_string_value(name) : NULL, list_one, &a);
	db_rollback(req->ctx->db); /* read only */
	fputs("]}\n", a.f);
out:
	if (fclose(a.f) && !ret)
		ret = -ENOMEM;
	if (ret) {
		free(text);
		api_db_failed(resp, ret);
		return;
	}
	resp->status = 200;
	resp->text = text;
	resp->text_len = len;
	resp->content_type = "application/json";
}

/* Inside a transaction: the VM named by the path, or a 404. */
static int find_vm(struct api_req *req, struct api_resp *resp, struct db_vm *vm)
{
	int ret = db_vm_find(req->ctx->db, req->params.v[0], vm);
	if (ret == -ENOENT)
		api_error(resp, 404, "not-found", NULL, "no VM with the name or UUID '%s'",
			  req->params.v[0]);
	else if (ret)
		api_db_failed(resp, ret);
	return ret;
}

/* If-Match against the VM's generation: 0 to go on, else the response is an error. */
static int check_if_match(struct api_req *req, struct api_resp *resp, const struct db_vm *vm)
{
	if (!req->if_match)
		return 0;
	int m = route_if_match(req->if_match, vm->generation);
	if (m < 0) {
		api_error(resp, 400, "invalid-argument", NULL,
			  "If-Match: not an entity tag list like \"3\" or *");
		return -EINVAL;
	}
	if (m == 0) {
		api_error(resp, 412, "precondition-failed", NULL,
			  "VM '%s' has changed: its ETag is now \"%lld\" (If-Match: %s)", vm->name,
			  (long long)vm->generation, req->if_match);
		resp->etag = vm->generation;
		return -ESTALE;
	}
	return 0;
}

void api_vms_get(struct api_req *req, struct api_resp *resp)
{
	struct db_vm vm = {0};
	int ret = db_begin(req->ctx->db, false);
	if (ret) {
		api_db_failed(resp, ret);
		return;
	}
	ret = find_vm(req, resp, &vm);
	db_rollback(req->ctx->db);
	if (!ret)
		respond_vm(resp, 200, &vm);
	db_vm_clear(&vm);
}

void api_vms_patch(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct spec_error serr = {0};
	struct db_vm vm = {0}, row = {0};
	json_t *cur = NULL, *merged = NULL, *spec = NULL, *detail = NULL;
	char *old_name = NULL, now[32], uuid[DB_UUID_LEN + 1] = "";
	bool held = false;
	int ret;

	/* the UUID first, to keep actions off the VM while its definition changes */
	if ((ret = db_begin(db, false))) {
		api_db_failed(resp, ret);
		return;
	}
	ret = find_vm(req, resp, &vm);
	db_rollback(db);
	if (ret)
		return;
	memcpy(uuid, vm.uuid, sizeof(uuid));
	db_vm_clear(&vm);
	held = req->ctx->vmctl && vmctl_hold(req->ctx->vmctl, uuid) == 0;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (find_vm(req, resp, &vm) || check_if_match(req, resp, &vm))
		goto rollback;
	if (!(cur = vm_spec(&vm)) || !(merged = json_merge_patch(cur, req->json))) {
		api_error(resp, 500, "internal", NULL, "cannot apply the patch");
		goto rollback;
	}
	if ((ret = vmspec_normalize(merged, &spec, &serr)) ||
	    (ret = nics_resolve(db, vm.uuid, spec, cur, &serr)) ||
	    (ret = disks_resolve(db, spec, &serr))) {
		spec_failed(resp, ret, &serr);
		goto rollback;
	}
	if (json_equal(spec, cur)) { /* nothing changes: no new generation, no event */
		db_rollback(db);
		respond_vm(resp, 200, &vm);
		goto out;
	}
	if (req->ctx->vmctl && hardware_differs(spec, cur)) {
		if (strcmp(vm.state, "off") && strcmp(vm.state, "crashed")) {
			api_error(resp, 409, "invalid-state", NULL,
				  "VM '%s' is %s: only name, notes, auto_start and auto_stop may "
				  "change unless it is off or crashed%s",
				  vm.name, vm.state,
				  !strcmp(vm.state, "saved") ? " (start it and turn it off to "
							       "discard the saved state)"
							     : "");
			goto rollback;
		}
		if (!held) {
			api_error(resp, 409, "busy", NULL,
				  "VM '%s' is busy with an operation: try again when it has ended",
				  vm.name);
			goto rollback;
		}
		if (!json_equal(json_object_get(spec, "disks"), json_object_get(cur, "disks")) &&
		    disks_vm_has_checkpoints(req->ctx->state_dir, req->ctx->run_dir, vm.uuid)) {
			api_error(resp, 409, "has-checkpoints", "disks",
				  "VM '%s' has checkpoints, which record its disks: delete them "
				  "before changing its disks",
				  vm.name);
			goto rollback;
		}
	}
	bool renamed = strcmp(vm.name, json_string_value(json_object_get(spec, "name"))) != 0;
	json_object_set(cur, "name", json_object_get(spec, "name"));
	bool only_renamed = renamed && json_equal(spec, cur);
	old_name = vm.name;
	vm.name = strdup(json_string_value(json_object_get(spec, "name")));
	free(vm.config);
	vm.config = config_text(spec);
	vm.generation++;
	api_now(now);
	free(vm.modified);
	vm.modified = strdup(now);
	detail = json_pack("{s:o, s:s, s:O}", "actor", api_actor(req), "name", vm.name, "patch",
			   req->json);
	if (detail && renamed)
		json_object_set_new(detail, "previous_name", json_string(old_name));
	if (!vm.name || !vm.config || !vm.modified || !detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	ret = db_vm_update(db, &vm);
	if (!ret)
		ret = db_event_add(db, now, vm.uuid, only_renamed ? "vm-renamed" : "vm-modified",
				   detail);
	if (!ret)
		ret = db_vm_find(db, vm.uuid, &row);
	if (ret == -EEXIST) {
		api_error(resp, 409, "conflict", "name", "a VM named '%s' already exists", vm.name);
		goto rollback;
	} else if (ret) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (!json_equal(json_object_get(spec, "disks"), json_object_get(cur, "disks")))
		disks_reset_empty_tree(req->ctx->state_dir, req->ctx->run_dir, vm.uuid);
	log_info("api", "VM %s (%s) %s by uid %u (generation %lld)", vm.name, vm.uuid,
		 only_renamed ? "renamed" : "modified", (unsigned)req->uid,
		 (long long)vm.generation);
	respond_vm(resp, 200, &row);
	goto out;
rollback:
	db_rollback(db);
out:
	if (held)
		vmctl_release(req->ctx->vmctl, uuid);
	free(old_name);
	db_vm_clear(&vm);
	db_vm_clear(&row);
	json_decref(cur);
	json_decref(merged);
	json_decref(spec);
	json_decref(detail);
}

static int count_vm(const char *vm, const char *uuid, const char *state, void *arg)
{
	(void)vm, (void)uuid, (void)state;
	++*(int *)arg;
	return 0;
}

/*
 * delete_disks=true, in the transaction that deleted the VM: its managed disks that no other VM
 * uses and that back no other disk leave the inventory (a disk backing another one of its disks
 * goes once that one has); detail gets "deleted_disks" [{name, uuid, path}] (the files go after
 * the commit) and "kept_disks" [{name, uuid, reason}]. Plain paths are never touched.
 */
static int drop_disks(struct db *db, json_t *spec, json_t *detail)
{
	json_t *gone = json_array(), *kept = json_array(), *d;
	bool progress = true;
	size_t i;
	int ret = 0;

	if (!gone || !kept || json_object_set_new(detail, "deleted_disks", gone) ||
	    json_object_set_new(detail, "kept_disks", kept))
		return -ENOMEM;
	while (progress && !ret) {
		progress = false;
		json_array_foreach(json_object_get(spec, "disks"), i, d)
		{
			const char *uuid = json_string_value(json_object_get(d, "disk"));
			struct db_disk row;
			int users = 0, kids = 0;
			if (!uuid || json_is_true(json_object_get(d, "dropped")))
				continue;
			if ((ret = db_disk_find(db, uuid, &row)) == -ENOENT) {
				ret = 0; /* named twice, or gone meanwhile */
				continue;
			}
			if (ret || (ret = db_disk_users(db, uuid, count_vm, &users)) ||
			    (ret = db_disk_children(db, uuid, count_vm, &kids)) || users || kids ||
			    (ret = db_disk_delete(db, uuid))) {
				db_disk_clear(&row);
				if (ret)
					break;
				continue;
			}
			json_object_set_new(d, "dropped", json_true());
			ret = json_array_append_new(gone,
						    json_pack("{s:s, s:s, s:s}", "name", row.name,
							      "uuid", row.uuid, "path", row.path))
				  ? -ENOMEM
				  : 0;
			db_disk_clear(&row);
			progress = true;
		}
	}
	json_array_foreach(json_object_get(spec, "disks"), i, d)
	{
		const char *uuid = json_string_value(json_object_get(d, "disk"));
		struct db_disk row;
		int users = 0;
		if (ret || !uuid || json_object_del(d, "dropped") == 0 ||
		    db_disk_find(db, uuid, &row))
			continue;
		ret = db_disk_users(db, uuid, count_vm, &users);
		if (!ret && json_array_append_new(
				kept, json_pack("{s:s, s:s, s:s}", "name", row.name, "uuid",
						row.uuid, "reason",
						users ? "attached to another VM"
						      : "the backing disk of another disk")))
			ret = -ENOMEM;
		db_disk_clear(&row);
	}
	return ret;
}

static void unlink_dropped(json_t *detail)
{
	json_t *d;
	size_t i;
	json_array_foreach(json_object_get(detail, "deleted_disks"), i, d)
	{
		const char *path = json_string_value(json_object_get(d, "path"));
		if (path && unlink(path) && errno != ENOENT)
			log_warn("api", "removing disk image %s: %s", path, strerror(errno));
		else
			log_info("api", "disk %s deleted with its VM",
				 json_string_value(json_object_get(d, "name")));
	}
}

void api_vms_delete(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	json_t *q = json_object_get(req->query, "delete_disks"), *detail = NULL, *spec = NULL;
	struct db_vm vm = {0};
	bool delete_disks = false, held = false;
	char now[32], uuid[DB_UUID_LEN + 1];
	int ret;

	if (q && (!json_is_string(q) || route_parse_bool(json_string_value(q), &delete_disks))) {
		api_error(resp, 400, "invalid-argument", "delete_disks",
			  "delete_disks: must be true or false");
		return;
	}
	if ((ret = db_begin(db, false))) {
		api_db_failed(resp, ret);
		return;
	}
	ret = find_vm(req, resp, &vm);
	db_rollback(db);
	if (ret)
		return;
	memcpy(uuid, vm.uuid, sizeof(uuid));
	db_vm_clear(&vm);
	if (req->ctx->vmctl && vmctl_hold(req->ctx->vmctl, uuid)) {
		api_error(resp, 409, "busy", NULL,
			  "VM '%s' is busy with an operation: try again when it has ended",
			  req->params.v[0]);
		return;
	}
	held = req->ctx->vmctl != NULL;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (find_vm(req, resp, &vm) || check_if_match(req, resp, &vm))
		goto rollback;
	if (!state_is_at_rest(vm.state)) {
		api_error(resp, 409, "invalid-state", NULL,
			  "VM '%s' is %s: turn it off (or save it) before deleting it", vm.name,
			  vm.state);
		goto rollback;
	}
	spec = vm_spec(&vm);
	detail = json_pack("{s:o, s:s, s:O*, s:b}", "actor", api_actor(req), "name", vm.name,
			   "spec", spec, "delete_disks", delete_disks);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	/* the layers of a VM's checkpoints hold what it wrote since the first one: deleting the VM
	 * deletes its checkpoint tree, so it must be asked for with the disks */
	if (!delete_disks && req->ctx->state_dir &&
	    disks_vm_has_checkpoints(req->ctx->state_dir, req->ctx->run_dir, vm.uuid)) {
		api_error(resp, 409, "has-checkpoints", "delete_disks",
			  "VM '%s' has checkpoints, whose disk layers hold what it wrote since the "
			  "first one: delete the checkpoints first (that merges them into its disks), "
			  "or delete the VM with its disks (delete_disks=true)",
			  vm.name);
		goto rollback;
	}
	api_now(now);
	if ((ret = db_vm_delete(db, vm.uuid, vm.generation)) ||
	    (delete_disks && (ret = drop_disks(db, spec, detail))) ||
	    (ret = db_event_add(db, now, vm.uuid, "vm-deleted", detail))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	log_info("api", "VM %s (%s) deleted by uid %u%s", vm.name, vm.uuid, (unsigned)req->uid,
		 delete_disks ? "" : "; its disks are kept");
	unlink_dropped(detail);
	resp->status = 204;
	if (held)
		vmctl_forget(req->ctx->vmctl, uuid);
	held = false;
	goto out;
rollback:
	db_rollback(db);
out:
	if (held)
		vmctl_release(req->ctx->vmctl, uuid);
	db_vm_clear(&vm);
	json_decref(spec);
	json_decref(detail);
}

/* The body of an attach as a spec disk {disk, readonly, cache, serial}; NULL with resp set. */
static json_t *attach_item(struct api_req *req, struct api_resp *resp)
{
	static const char *const keys[] = {"disk", "readonly", "cache", "serial"};
	json_t *v, *item = json_object();
	const char *key;

	if (!item) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		return NULL;
	}
	json_object_foreach(req->json, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			known |= !strcmp(key, keys[i]);
		if (!known) {
			api_error(resp, 400, "unknown-field", key, "unknown field '%s'", key);
			json_decref(item);
			return NULL;
		}
		json_object_set(item, key, v);
	}
	if (!json_is_string(json_object_get(item, "disk"))) {
		api_error(resp, 400, "invalid-argument", "disk",
			  "disk: required, the name or UUID of a managed disk");
		json_decref(item);
		return NULL;
	}
	return item;
}

/* Detach: the index of the disk the path names (a number, or a managed disk's name or UUID),
 * -ENOENT with resp set. */
static int detach_index(struct api_req *req, struct api_resp *resp, json_t *disks, const char *vm)
{
	const char *ref = req->params.v[1];
	struct db_disk d = {0};
	json_t *item;
	size_t i;

	if (*ref >= '0' && *ref <= '9' && strspn(ref, "0123456789") == strlen(ref)) {
		unsigned long n = strtoul(ref, NULL, 10);
		if (strlen(ref) <= 2 && n < json_array_size(disks))
			return (int)n;
		api_error(resp, 404, "not-found", NULL,
			  "VM '%s' has no disks[%s] (it has %zu disk%s)", vm, ref,
			  json_array_size(disks), json_array_size(disks) == 1 ? "" : "s");
		return -ENOENT;
	}
	int ret = db_disk_find(req->ctx->db, ref, &d);
	if (ret && ret != -ENOENT) {
		api_db_failed(resp, ret);
		return ret;
	}
	json_array_foreach(disks, i, item)
	{
		const char *uuid = json_string_value(json_object_get(item, "disk"));
		if (!ret && uuid && !strcmp(uuid, d.uuid)) {
			db_disk_clear(&d);
			return (int)i;
		}
	}
	db_disk_clear(&d);
	api_error(resp, 404, "not-found", NULL,
		  ret ? "no disk with the name or UUID '%s' (or give the disk's index)"
		      : "disk '%s' is not attached to VM '%s'",
		  ref, vm);
	return -ENOENT;
}

/* Attach (req->json) or detach (req->params.v[1]) a disk: the VM's spec changes as with a PATCH
 * (If-Match, generation, audit event), only while the VM is off. */
static void edit_disks(struct api_req *req, struct api_resp *resp, bool attach)
{
	struct db *db = req->ctx->db;
	struct spec_error serr = {0};
	struct db_vm vm = {0}, row = {0};
	json_t *cur = NULL, *next = NULL, *spec = NULL, *detail = NULL, *item = NULL;
	char now[32], uuid[DB_UUID_LEN + 1] = "";
	bool held = false;
	int idx = -1, ret;

	if (attach && !(item = attach_item(req, resp)))
		return;
	if ((ret = db_begin(db, false))) {
		api_db_failed(resp, ret);
		goto out;
	}
	ret = find_vm(req, resp, &vm);
	db_rollback(db);
	if (ret)
		goto out;
	memcpy(uuid, vm.uuid, sizeof(uuid));
	db_vm_clear(&vm);
	if (req->ctx->vmctl && vmctl_hold(req->ctx->vmctl, uuid)) {
		api_error(resp, 409, "busy", NULL,
			  "VM '%s' is busy with an operation: try again when it has ended",
			  req->params.v[0]);
		goto out;
	}
	held = req->ctx->vmctl != NULL;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (find_vm(req, resp, &vm) || check_if_match(req, resp, &vm))
		goto rollback;
	if (strcmp(vm.state, "off") && strcmp(vm.state, "crashed")) {
		api_error(resp, 409, "invalid-state", NULL,
			  "VM '%s' is %s: disks are %s only while it is off (no hot-plug yet)",
			  vm.name, vm.state, attach ? "attached" : "detached");
		goto rollback;
	}
	if (disks_vm_has_checkpoints(req->ctx->state_dir, req->ctx->run_dir, vm.uuid)) {
		api_error(resp, 409, "has-checkpoints", NULL,
			  "VM '%s' has checkpoints, which record its disks: delete them before "
			  "%s a disk",
			  vm.name, attach ? "attaching" : "detaching");
		goto rollback;
	}
	if (!(cur = vm_spec(&vm)) || !(next = json_deep_copy(cur))) {
		api_error(resp, 500, "internal", NULL, "cannot read VM '%s'", vm.name);
		goto rollback;
	}
	json_t *disks = json_object_get(next, "disks");
	if (attach) {
		idx = (int)json_array_size(disks);
		json_array_append(disks, item);
	} else {
		if ((idx = detach_index(req, resp, disks, vm.name)) < 0)
			goto rollback;
		item = json_incref(json_array_get(disks, (size_t)idx));
		json_array_remove(disks, (size_t)idx);
	}
	if ((ret = vmspec_normalize(next, &spec, &serr)) ||
	    (ret = nics_resolve(db, vm.uuid, spec, cur, &serr)) ||
	    (ret = disks_resolve(db, spec, &serr))) {
		char pre[32];
		size_t n = (size_t)snprintf(pre, sizeof(pre), "disks[%d].", idx);
		if (attach && !strncmp(serr.field, pre, n)) /* name the field of the request */
			memmove(serr.field, serr.field + n, strlen(serr.field + n) + 1);
		spec_failed(resp, ret, &serr);
		goto rollback;
	}
	json_t *done = attach ? json_array_get(json_object_get(spec, "disks"), (size_t)idx) : item;
	free(vm.config);
	vm.config = config_text(spec);
	vm.generation++;
	api_now(now);
	free(vm.modified);
	vm.modified = strdup(now);
	detail = json_pack("{s:o, s:s, s:i, s:O*, s:O*}", "actor", api_actor(req), "name", vm.name,
			   "index", idx, "disk", json_object_get(done, "disk"), "path",
			   json_object_get(done, "path"));
	if (!vm.config || !vm.modified || !detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = db_vm_update(db, &vm)) ||
	    (ret = db_event_add(db, now, vm.uuid, attach ? "vm-disk-attached" : "vm-disk-detached",
				detail)) ||
	    (ret = db_vm_find(db, vm.uuid, &row))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	disks_reset_empty_tree(req->ctx->state_dir, req->ctx->run_dir, vm.uuid);
	log_info("api", "VM %s: disk %s %s by uid %u", vm.name,
		 json_string_value(json_object_get(done, "path")), attach ? "attached" : "detached",
		 (unsigned)req->uid);
	respond_vm(resp, 200, &row);
	goto out;
rollback:
	db_rollback(db);
out:
	if (held)
		vmctl_release(req->ctx->vmctl, uuid);
	db_vm_clear(&vm);
	db_vm_clear(&row);
	json_decref(cur);
	json_decref(next);
	json_decref(spec);
	json_decref(detail);
	json_decref(item);
}

void api_vm_disk_attach(struct api_req *req, struct api_resp *resp)
{
	edit_disks(req, resp, true);
}

void api_vm_disk_detach(struct api_req *req, struct api_resp *resp)
{
	edit_disks(req, resp, false);
}
