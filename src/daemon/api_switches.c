/* The switches resource: create (the bridge made on the host), list, show, delete (unless used). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/switch.h"
#include "daemon/vmspec.h"
#include "daemon/vswitch.h"

static const char *const KINDS[] = {"external", "internal", "private"};

static json_t *switch_json(const struct db_switch *s)
{
	struct sw_link l;
	bool present = sw_link_get(s->bridge, &l) == 0 && l.is_bridge;
	const char *mode = present ? vswitch_vlan_mode(s) : NULL;
	return json_pack("{s:s, s:s, s:s, s:s?, s:s?, s:s, s:b, s:s?, s:I, s:s}", "uuid", s->uuid,
			 "name", s->name, "kind", s->kind, "host_nic", s->host_nic, "address",
			 s->address, "bridge", s->bridge, "bridge_present", present, "vlan_mode",
			 mode, "generation", (json_int_t)s->generation, "created", s->created);
}

static void respond_switch(struct api_resp *resp, unsigned status, const struct db_switch *s)
{
	resp->body = switch_json(s);
	if (!resp->body) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		return;
	}
	resp->status = status;
	resp->etag = s->generation;
}

/* A string member (absent or null: NULL); false with the response set if it is not a string. */
static bool opt_string(json_t *body, const char *key, size_t max, const char **out,
		       struct api_resp *resp)
{
	json_t *v = json_object_get(body, key);
	*out = NULL;
	if (!v || json_is_null(v))
		return true;
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
	    json_string_length(v) > max) {
		api_error(resp, 400, "invalid-argument", key,
			  "%s: must be a string of at most %zu "
			  "bytes",
			  key, max);
		return false;
	}
	*out = json_string_value(v);
	return true;
}

/* Validate a POST body into s (strings pointing into body). false with the response set. */
static bool check_body(json_t *body, struct db_switch *s, struct api_resp *resp)
{
	static const char *const keys[] = {"name", "kind", "host_nic", "address"};
	const char *key, *name, *kind, *nic, *addr;
	struct in_addr a;
	unsigned prefix;
	char err[256];
	json_t *v;

	json_object_foreach(body, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			known |= !strcmp(key, keys[i]);
		if (!known) {
			bool ro = !strcmp(key, "uuid") || !strcmp(key, "bridge") ||
				  !strcmp(key, "bridge_present") || !strcmp(key, "generation") ||
				  !strcmp(key, "vlan_mode") || !strcmp(key, "created");
			api_error(resp, 400, ro ? "invalid-argument" : "unknown-field", key,
				  ro ? "%s: is read-only (set by berthd)" : "unknown field '%s'",
				  key);
			return false;
		}
	}
	if (!opt_string(body, "name", 255, &name, resp) ||
	    !opt_string(body, "kind", 16, &kind, resp) ||
	    !opt_string(body, "host_nic", 255, &nic, resp) ||
	    !opt_string(body, "address", 64, &addr, resp))
		return false;
	if (!name || !vmspec_name_valid(name)) {
		api_error(resp, 400, "invalid-argument", "name",
			  "name: %s1 to %d characters of letters, digits, '.', '_' and '-', not "
			  "starting with '.' or '-' and not shaped like a UUID",
			  name ? "" : "required: ", VMSPEC_NAME_MAX);
		return false;
	}
	if (!kind || (strcmp(kind, KINDS[0]) && strcmp(kind, KINDS[1]) && strcmp(kind, KINDS[2]))) {
		api_error(resp, 400, "invalid-argument", "kind",
			  "kind: %smust be one of \"external\" (a host NIC bridged), \"internal\" "
			  "(the host has an address on it), \"private\" (VMs only)",
			  kind ? "" : "required: ");
		return false;
	}
	bool external = !strcmp(kind, "external"), internal = !strcmp(kind, "internal");
	if (external != (nic != NULL)) {
		api_error(resp, 400, "invalid-argument", "host_nic",
			  external ? "host_nic: required for an external switch"
				   : "host_nic: only an external switch has one");
		return false;
	}
	if (internal != (addr != NULL)) {
		api_error(resp, 400, "invalid-argument", "address",
			  internal ? "address: required for an internal switch (the host's "
				     "address on it, like 10.0.0.1/24)"
				   : "address: only an internal switch has one");
		return false;
	}
	if (addr && sw_parse_cidr(addr, &a, &prefix)) {
		api_error(resp, 400, "invalid-argument", "address",
			  "address: an IPv4 address with a prefix length, like 10.0.0.1/24");
		return false;
	}
	if (nic && vswitch_check_uplink(nic, err, sizeof(err))) {
		api_error(resp, 400, "invalid-argument", "host_nic", "host_nic: %s", err);
		return false;
	}
	s->name = (char *)name;
	s->kind = (char *)kind;
	s->host_nic = (char *)nic;
	s->address = (char *)addr;
	return true;
}

static int nic_taken(const struct db_switch *s, void *arg)
{
	const char *nic = arg;
	return s->host_nic && !strcmp(s->host_nic, nic) ? -EADDRINUSE : 0;
}

void api_switches_create(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct db_switch s = {0}, row = {0};
	char now[32], bridge[16], err[256];
	json_t *detail = NULL;
	bool applied = false;
	int ret;

	if (!check_body(req->json, &s, resp))
		return;
	api_now(now);
	if (api_uuid_v4(s.uuid)) {
		api_error(resp, 500, "internal", NULL, "no random numbers for a UUID");
		return;
	}
	vswitch_bridge_name(s.uuid, bridge);
	s.bridge = bridge;
	s.created = now;
	detail = json_pack("{s:o, s:s, s:s, s:s?, s:s?, s:s}", "actor", api_actor(req), "name",
			   s.name, "kind", s.kind, "host_nic", s.host_nic, "address", s.address,
			   "bridge", bridge);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		return;
	}
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if ((ret = db_switch_find(db, s.name, &row)) != -ENOENT) {
		if (!ret)
			api_error(resp, 409, "conflict", "name",
				  "a switch named '%s' already exists", s.name);
		else
			api_db_failed(resp, ret);
		goto rollback;
	}
	if (s.host_nic && (ret = db_switch_list(db, nic_taken, s.host_nic))) {
		if (ret == -EADDRINUSE)
			api_error(resp, 409, "conflict", "host_nic",
				  "host_nic: %s is the uplink of another switch", s.host_nic);
		else
			api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_switch_insert(db, &s)) ||
	    (ret = db_event_add(db, now, NULL, "switch-created", detail)) ||
	    (ret = db_switch_find(db, s.uuid, &row))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	/* the bridge before the commit: a switch is in the inventory only if it could be made */
	if ((ret = vswitch_apply(&s, err, sizeof(err)))) {
		applied = true; /* partly, maybe */
		api_error(resp, ret == -EEXIST ? 409 : 500,
			  ret == -EEXIST ? "conflict" : "internal", NULL, "switch '%s': %s", s.name,
			  err);
		goto rollback;
	}
	applied = true;
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		vswitch_remove(&s);
		goto out;
	}
	log_info("api", "switch %s (%s, bridge %s) created by uid %u", s.name, s.kind, bridge,
		 (unsigned)req->uid);
	respond_switch(resp, 201, &row);
	snprintf(resp->location, sizeof(resp->location), API_PREFIX "/switches/%s", s.uuid);
	goto out;
rollback:
	db_rollback(db);
	if (applied) {
		struct sw_link l;
		/* a bridge of this name that was not there before is ours to take back */
		if (ret != -EEXIST && sw_link_get(bridge, &l) == 0)
			vswitch_remove(&s);
	}
out:
	db_switch_clear(&row);
	json_decref(detail);
}

static int list_one(const struct db_switch *s, void *arg)
{
	json_t *o = switch_json(s);
	return !o || json_array_append_new(arg, o) ? -ENOMEM : 0;
}

static int list_all(struct db *db, json_t *list)
{
	return db_switch_list(db, list_one, list);
}

void api_switches_list(struct api_req *req, struct api_resp *resp)
{
	api_respond_list(req, resp, "switches", list_all);
}

static int find_switch(struct api_req *req, struct api_resp *resp, struct db_switch *s)
{
	int ret = db_switch_find(req->ctx->db, req->params.v[0], s);
	if (ret == -ENOENT)
		api_error(resp, 404, "not-found", NULL, "no switch with the name or UUID '%s'",
			  req->params.v[0]);
	else if (ret)
		api_db_failed(resp, ret);
	return ret;
}

void api_switches_get(struct api_req *req, struct api_resp *resp)
{
	struct db_switch s = {0};
	int ret = db_begin(req->ctx->db, false);
	if (ret) {
		api_db_failed(resp, ret);
		return;
	}
	ret = find_switch(req, resp, &s);
	db_rollback(req->ctx->db);
	if (!ret)
		respond_switch(resp, 200, &s);
	db_switch_clear(&s);
}

struct users {
	char list[256];
	int n;
};

static int add_user(const char *vm, void *arg)
{
	struct users *u = arg;
	size_t len = strlen(u->list);
	if (u->n++ < 8)
		snprintf(u->list + len, sizeof(u->list) - len, "%s'%s'", len ? ", " : "", vm);
	return 0;
}

void api_switches_delete(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct db_switch s = {0};
	struct users u = {"", 0};
	json_t *detail = NULL;
	char now[32];
	int ret;

	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		return;
	}
	if (find_switch(req, resp, &s))
		goto rollback;
	if (req->if_match) {
		int m = route_if_match(req->if_match, s.generation);
		if (m < 0)
			api_error(resp, 400, "invalid-argument", NULL,
				  "If-Match: not an entity tag list like \"3\" or *");
		else if (m == 0)
			api_error(resp, 412, "precondition-failed", NULL,
				  "switch '%s' has changed: its ETag is now \"%lld\"", s.name,
				  (long long)s.generation);
		if (m <= 0)
			goto rollback;
	}
	if ((ret = db_switch_users(db, s.name, add_user, &u))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if (u.n) {
		api_error(resp, 409, "in-use", NULL,
			  "switch '%s' is used by the NICs of %d VM%s (%s%s): remove them first",
			  s.name, u.n, u.n == 1 ? "" : "s", u.list, u.n > 8 ? ", ..." : "");
		goto rollback;
	}
	api_now(now);
	detail = json_pack("{s:o, s:s, s:s, s:s}", "actor", api_actor(req), "name", s.name, "uuid",
			   s.uuid, "bridge", s.bridge);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = db_switch_delete(db, s.uuid)) ||
	    (ret = db_event_add(db, now, NULL, "switch-deleted", detail))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if ((ret = vswitch_remove(&s)))
		log_warn("api", "switch %s: removing bridge %s: %s", s.name, s.bridge,
			 strerror(-ret));
	log_info("api", "switch %s (%s) deleted by uid %u", s.name, s.uuid, (unsigned)req->uid);
	resp->status = 204;
	goto out;
rollback:
	db_rollback(db);
out:
	db_switch_clear(&s);
	json_decref(detail);
}
