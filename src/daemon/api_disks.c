/* The disks resource: managed images in berthd's pool — create (berth's own qcow2/raw code,
 * backing confined to the pool), list, show, resize (grow, VMs off), delete (unless used). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/disks.h"
#include "daemon/vmctl.h"
#include "daemon/vmspec.h"

static int add_vm(const char *vm, const char *uuid, const char *state, void *arg)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "name", vm, "uuid", uuid, "state", state);
	return !o || json_array_append_new(arg, o) ? -ENOMEM : 0;
}

/* Inside a transaction: the API representation, with who uses it and what it takes on disk. */
static int disk_json(struct db *db, const struct db_disk *d, json_t **out)
{
	struct db_disk below = {0};
	struct stat st;
	json_t *users = json_array(), *o;
	int ret;

	if (!users)
		return -ENOMEM;
	if ((ret = db_disk_users(db, d->uuid, add_vm, users)) ||
	    (d->backing && (ret = db_disk_find(db, d->backing, &below)))) {
		json_decref(users);
		return ret;
	}
	bool present = stat(d->path, &st) == 0;
	o = json_pack(
	    "{s:s, s:s, s:s, s:s, s:I, s:o, s:b, s:o, s:o, s:o, s:s, s:I}", "uuid", d->uuid, "name",
	    d->name, "path", d->path, "format", d->format, "size", (json_int_t)d->size, "allocated",
	    present ? json_integer((json_int_t)st.st_blocks * 512) : json_null(), "present",
	    present, "backing", d->backing ? json_string(d->backing) : json_null(), "backing_name",
	    below.name ? json_string(below.name) : json_null(), "attached_to", users, "created",
	    d->created, "generation", (json_int_t)d->generation);
	db_disk_clear(&below);
	*out = o;
	return o ? 0 : -ENOMEM;
}

static void respond_disk(struct api_req *req, struct api_resp *resp, unsigned status,
			 const struct db_disk *d)
{
	int ret = disk_json(req->ctx->db, d, &resp->body);
	if (ret) {
		api_db_failed(resp, ret);
		return;
	}
	resp->status = status;
	resp->etag = d->generation;
}

static int find_disk(struct api_req *req, struct api_resp *resp, struct db_disk *d)
{
	int ret = db_disk_find(req->ctx->db, req->params.v[0], d);
	if (ret == -ENOENT)
		api_error(resp, 404, "not-found", NULL, "no disk with the name or UUID '%s'",
			  req->params.v[0]);
	else if (ret)
		api_db_failed(resp, ret);
	return ret;
}

static bool check_etag(struct api_req *req, struct api_resp *resp, const struct db_disk *d)
{
	if (!req->if_match)
		return true;
	int m = route_if_match(req->if_match, d->generation);
	if (m < 0)
		api_error(resp, 400, "invalid-argument", NULL,
			  "If-Match: not an entity tag list like \"3\" or *");
	else if (m == 0)
		api_error(resp, 412, "precondition-failed", NULL,
			  "disk '%s' has changed: its ETag is now \"%lld\"", d->name,
			  (long long)d->generation);
	return m > 0;
}

/* size: a whole number of bytes, a multiple of 512, 512..DISK_SIZE_MAX. */
static bool get_size(json_t *v, uint64_t *out, struct api_resp *resp)
{
	if (!json_is_integer(v) || json_integer_value(v) < 512 ||
	    (uint64_t)json_integer_value(v) > DISK_SIZE_MAX || json_integer_value(v) % 512) {
		api_error(resp, 400, "invalid-argument", "size",
			  "size: a whole number of bytes, a multiple of 512 from 512 to %llu (64 "
			  "TiB)",
			  (unsigned long long)DISK_SIZE_MAX);
		return false;
	}
	*out = (uint64_t)json_integer_value(v);
	return true;
}

static bool only_keys(json_t *body, const char *const *keys, size_t n, struct api_resp *resp)
{
	static const char *const ro[] = {"uuid",	 "path",	"allocated", "present",
					 "backing_name", "attached_to", "created",   "generation"};
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v)
	{
		bool known = false, readonly = false;
		for (size_t i = 0; i < n; i++)
			known |= !strcmp(key, keys[i]);
		for (size_t i = 0; i < sizeof(ro) / sizeof(ro[0]); i++)
			readonly |= !strcmp(key, ro[i]);
		if (!known) {
			api_error(resp, 400, readonly ? "invalid-argument" : "unknown-field", key,
				  readonly ? "%s: is read-only (set by berthd)"
					   : "unknown field '%s'",
				  key);
			return false;
		}
	}
	return true;
}

static bool get_str(json_t *body, const char *key, const char **out, struct api_resp *resp)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) > 255) {
		api_error(resp, 400, "invalid-argument", key,
			  "%s: must be a string of at most 255 bytes", key);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

struct names {
	char list[256];
	int n;
	bool busy; /* a VM that is not off or crashed */
	char busy_vm[64], busy_state[16];
	char uuids[8][DB_UUID_LEN + 1];
};

static int add_name(const char *name, const char *uuid, const char *state, void *arg)
{
	struct names *u = arg;
	size_t len = strlen(u->list);
	if (u->n < 8) {
		snprintf(u->list + len, sizeof(u->list) - len, "%s'%s'", len ? ", " : "", name);
		snprintf(u->uuids[u->n], sizeof(u->uuids[0]), "%s", uuid);
	}
	u->n++;
	if (*state && strcmp(state, "off") && strcmp(state, "crashed") && !u->busy) {
		u->busy = true;
		snprintf(u->busy_vm, sizeof(u->busy_vm), "%s", name);
		snprintf(u->busy_state, sizeof(u->busy_state), "%s", state);
	}
	return 0;
}

void api_disks_create(struct api_req *req, struct api_resp *resp)
{
	static const char *const keys[] = {"name", "size", "format", "backing"};
	const struct disk_pool *pool = req->ctx->disks;
	struct db *db = req->ctx->db;
	struct db_disk d = {0}, below = {0}, row = {0};
	const char *name, *format, *backing;
	char now[32], path[4200], err[512];
	struct names writers = {0};
	json_t *detail = NULL;
	bool made = false;
	int ret;

	if (!only_keys(req->json, keys, 4, resp) || !get_str(req->json, "name", &name, resp) ||
	    !get_str(req->json, "format", &format, resp) ||
	    !get_str(req->json, "backing", &backing, resp))
		return;
	if (!name || !vmspec_name_valid(name)) {
		api_error(resp, 400, "invalid-argument", "name",
			  "name: %s1 to %d characters of letters, digits, '.', '_' and '-', not "
			  "starting with '.' or '-' and not shaped like a UUID",
			  name ? "" : "required: ", VMSPEC_NAME_MAX);
		return;
	}
	format = format ? format : "qcow2";
	if (strcmp(format, "qcow2") && strcmp(format, "raw")) {
		api_error(resp, 400, "invalid-argument", "format",
			  "format: must be \"qcow2\" (the default) or \"raw\"");
		return;
	}
	if (backing && strcmp(format, "qcow2")) {
		api_error(resp, 400, "invalid-argument", "backing",
			  "backing: only a qcow2 disk has a backing disk");
		return;
	}
	if (backing && !vmspec_name_valid(backing) && !vmspec_is_uuid(backing)) {
		api_error(resp, 400, "invalid-argument", "backing",
			  "backing: must name a managed disk (its name or UUID); backing files are "
			  "confined to berthd's disk pool");
		return;
	}
	json_t *size = json_object_get(req->json, "size");
	if ((size || !backing) && !get_size(size, &d.size, resp))
		return;
	if (!pool) {
		api_error(resp, 500, "internal", NULL, "berthd has no disk pool");
		return;
	}
	if (api_uuid_v4(d.uuid)) {
		api_error(resp, 500, "internal", NULL, "no random numbers for a UUID");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s.%s", pool->dir, d.uuid, format);
	api_now(now);
	d.name = (char *)name;
	d.format = (char *)format;
	d.path = path;
	d.created = now;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		return;
	}
	if ((ret = db_disk_find(db, name, &row)) != -ENOENT) {
		if (!ret)
			api_error(resp, 409, "conflict", "name", "a disk named '%s' already exists",
				  name);
		else
			api_db_failed(resp, ret);
		goto rollback;
	}
	if (backing) {
		ret = db_disk_find(db, backing, &below);
		if (ret == -ENOENT) {
			api_error(resp, 400, "invalid-argument", "backing",
				  "backing: no managed disk named '%s' (backing files are confined "
				  "to berthd's disk pool)",
				  backing);
			goto rollback;
		} else if (ret) {
			api_db_failed(resp, ret);
			goto rollback;
		}
		if (!disks_in_pool(pool, below.path)) {
			api_error(resp, 400, "invalid-argument", "backing",
				  "backing: disk '%s' is at %s, outside the disk pool %s",
				  below.name, below.path, pool->dir);
			goto rollback;
		}
		if ((ret = db_disk_writers(db, below.uuid, add_name, &writers))) {
			api_db_failed(resp, ret);
			goto rollback;
		}
		if (writers.n) {
			api_error(resp, 409, "in-use", "backing",
				  "backing: disk '%s' is attached writable to %s: an image below "
				  "another must not change (attach it readonly first)",
				  below.name, writers.list);
			goto rollback;
		}
		d.backing = below.uuid;
		if (!size)
			d.size = below.size;
	}
	detail = json_pack("{s:o, s:s, s:s, s:s, s:I, s:s*}", "actor", api_actor(req), "name", name,
			   "path", path, "format", format, "size", (json_int_t)d.size, "backing",
			   below.name);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = disks_create_image(pool, &d, backing ? below.path : NULL,
				      backing ? below.format : NULL, err, sizeof(err)))) {
		api_error(resp, ret == -EEXIST ? 409 : 500,
			  ret == -EEXIST ? "conflict" : "internal", NULL, "creating the image: %s",
			  err);
		goto rollback;
	}
	made = true;
	if ((ret = db_disk_insert(db, &d)) ||
	    (ret = db_event_add(db, now, NULL, "disk-created", detail)) ||
	    (ret = db_disk_find(db, d.uuid, &row))) {
		if (ret == -EEXIST)
			api_error(resp, 409, "conflict", "name", "a disk named '%s' already exists",
				  name);
		else
			api_db_failed(resp, ret);
		goto rollback;
	}
	respond_disk(req, resp, 201, &row);
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		unlink(path);
		goto out;
	}
	log_info("api", "disk %s (%s, %llu bytes, %s) created by uid %u", name, format,
		 (unsigned long long)d.size, path, (unsigned)req->uid);
	snprintf(resp->location, sizeof(resp->location), API_PREFIX "/disks/%s", d.uuid);
	goto out;
rollback:
	db_rollback(db);
	if (made)
		unlink(path);
out:
	db_disk_clear(&row);
	db_disk_clear(&below);
	json_decref(detail);
}

struct list_ctx {
	struct db *db;
	json_t *list;
};

static int list_one(const struct db_disk *d, void *arg)
{
	struct list_ctx *l = arg;
	json_t *o;
	int ret = disk_json(l->db, d, &o);
	return ret ? ret : json_array_append_new(l->list, o) ? -ENOMEM : 0;
}

static int list_all(struct db *db, json_t *list)
{
	struct list_ctx l = {db, list};
	return db_disk_list(db, list_one, &l);
}

void api_disks_list(struct api_req *req, struct api_resp *resp)
{
	api_respond_list(req, resp, "disks", list_all);
}

void api_disks_get(struct api_req *req, struct api_resp *resp)
{
	struct db_disk d = {0};
	int ret = db_begin(req->ctx->db, false);
	if (ret) {
		api_db_failed(resp, ret);
		return;
	}
	if (!find_disk(req, resp, &d))
		respond_disk(req, resp, 200, &d);
	db_rollback(req->ctx->db);
	db_disk_clear(&d);
}

void api_disks_delete(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct db_disk d = {0};
	struct names vms = {0}, kids = {0};
	json_t *detail = NULL;
	char now[32];
	int ret;

	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		return;
	}
	if (find_disk(req, resp, &d) || !check_etag(req, resp, &d))
		goto rollback;
	if ((ret = db_disk_users(db, d.uuid, add_name, &vms)) ||
	    (ret = db_disk_children(db, d.uuid, add_name, &kids))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if (vms.n) {
		api_error(resp, 409, "in-use", NULL,
			  "disk '%s' is attached to %d VM%s (%s%s): detach it first", d.name, vms.n,
			  vms.n == 1 ? "" : "s", vms.list, vms.n > 8 ? ", ..." : "");
		goto rollback;
	}
	if (kids.n) {
		api_error(resp, 409, "in-use", NULL,
			  "disk '%s' is the backing disk of %d disk%s (%s%s): delete them first",
			  d.name, kids.n, kids.n == 1 ? "" : "s", kids.list,
			  kids.n > 8 ? ", ..." : "");
		goto rollback;
	}
	api_now(now);
	detail = json_pack("{s:o, s:s, s:s, s:s}", "actor", api_actor(req), "name", d.name, "uuid",
			   d.uuid, "path", d.path);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = db_disk_delete(db, d.uuid)) ||
	    (ret = db_event_add(db, now, NULL, "disk-deleted", detail))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (unlink(d.path) && errno != ENOENT)
		log_warn("api", "disk %s deleted: removing %s: %s", d.name, d.path,
			 strerror(errno));
	log_info("api", "disk %s (%s) deleted by uid %u", d.name, d.uuid, (unsigned)req->uid);
	resp->status = 204;
	goto out;
rollback:
	db_rollback(db);
out:
	db_disk_clear(&d);
	json_decref(detail);
}

void api_disks_resize(struct api_req *req, struct api_resp *resp)
{
	static const char *const keys[] = {"size"};
	struct db *db = req->ctx->db;
	struct vmctl *vc = req->ctx->vmctl;
	struct db_disk d = {0}, row = {0};
	struct names vms = {0}, again = {0};
	json_t *detail = NULL;
	char now[32], err[512];
	uint64_t size;
	int held = 0, ret;

	if (!only_keys(req->json, keys, 1, resp))
		return;
	if (!json_object_get(req->json, "size")) {
		api_error(resp, 400, "invalid-argument", "size", "size: required (bytes)");
		return;
	}
	if (!get_size(json_object_get(req->json, "size"), &size, resp))
		return;
	/* the VMs using it are kept from starting while the image changes */
	if ((ret = db_begin(db, false))) {
		api_db_failed(resp, ret);
		return;
	}
	if (!find_disk(req, resp, &d) && (ret = db_disk_users(db, d.uuid, add_name, &vms)))
		api_db_failed(resp, ret);
	db_rollback(db);
	if (resp->status)
		goto out;
	if (vms.n > 8) {
		api_error(resp, 409, "busy", NULL, "disk '%s' is attached to more than 8 VMs",
			  d.name);
		goto out;
	}
	for (; vc && held < vms.n; held++)
		if (vmctl_hold(vc, vms.uuids[held])) {
			api_error(
			    resp, 409, "busy", NULL,
			    "a VM using disk '%s' is busy with an operation: try again when it "
			    "has ended",
			    d.name);
			goto out;
		}
	db_disk_clear(&d);
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if (find_disk(req, resp, &d) || !check_etag(req, resp, &d))
		goto rollback;
	if ((ret = db_disk_users(db, d.uuid, add_name, &again))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if (strcmp(again.list, vms.list)) {
		api_error(resp, 409, "busy", NULL,
			  "disk '%s' was attached or detached meanwhile: try again", d.name);
		goto rollback;
	}
	if (again.busy) {
		api_error(resp, 409, "invalid-state", NULL,
			  "disk '%s' is used by VM '%s', which is %s: a disk grows only while "
			  "every VM using it is off",
			  d.name, again.busy_vm, again.busy_state);
		goto rollback;
	}
	for (int i = 0; i < again.n && i < 8; i++)
		if (disks_vm_has_checkpoints(req->ctx->state_dir, req->ctx->run_dir,
					     again.uuids[i])) {
			api_error(resp, 409, "has-checkpoints", NULL,
				  "disk '%s' is used by a VM with checkpoints (their disk layers "
				  "lie above this image): delete the VM's checkpoints first",
				  d.name);
			goto rollback;
		}
	if (size < d.size) {
		api_error(resp, 400, "invalid-argument", "size",
			  "size: %llu is smaller than the disk's %llu bytes: disks only grow",
			  (unsigned long long)size, (unsigned long long)d.size);
		goto rollback;
	}
	if (size == d.size) {
		respond_disk(req, resp, 200, &d);
		goto rollback;
	}
	api_now(now);
	detail = json_pack("{s:o, s:s, s:I, s:I}", "actor", api_actor(req), "name", d.name,
			   "previous_size", (json_int_t)d.size, "size", (json_int_t)size);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = db_disk_set_size(db, d.uuid, size)) ||
	    (ret = db_event_add(db, now, NULL, "disk-resized", detail)) ||
	    (ret = db_disk_find(db, d.uuid, &row))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	/* the image last: if it cannot grow, nothing is committed */
	if ((ret = disks_resize_image(d.path, d.format, size, err, sizeof(err)))) {
		api_error(resp, ret == -EINVAL ? 400 : 500,
			  ret == -EINVAL ? "invalid-argument" : "internal",
			  ret == -EINVAL ? "size" : NULL, "resizing disk '%s': %s", d.name, err);
		goto rollback;
	}
	respond_disk(req, resp, 200, &row);
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	log_info("api", "disk %s resized from %llu to %llu bytes by uid %u", d.name,
		 (unsigned long long)d.size, (unsigned long long)size, (unsigned)req->uid);
	goto out;
rollback:
	db_rollback(db);
out:
	for (int i = 0; vc && i < held; i++)
		vmctl_release(vc, vms.uuids[i]);
	db_disk_clear(&d);
	db_disk_clear(&row);
	json_decref(detail);
}
