/* berthd's REST API: the router table, authorisation by role, body and query checks, errors. */
#include "daemon/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/console.h"
#include "daemon/db.h"

/* BODY_OPT_JSON: a JSON object or no body at all (an action without arguments). */
enum body_kind { BODY_NONE = 0, BODY_JSON, BODY_MERGE_PATCH, BODY_OPT_JSON };

struct route {
	const char *method;
	const char *pattern;
	void (*fn)(struct api_req *req, struct api_resp *resp);
	enum api_role min_role;
	enum body_kind body;
	const char *query[3]; /* the query parameters it accepts */
};

static const struct route ROUTES[] = {
    {"GET", API_PREFIX "/openapi.json", api_openapi_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"GET", API_PREFIX "/host", api_host_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"GET", "/metrics", api_metrics_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"GET", API_PREFIX "/events", api_events_get, ROLE_VIEWER, BODY_NONE, {"since", NULL}},
    {"GET", API_PREFIX "/vms", api_vms_list, ROLE_VIEWER, BODY_NONE, {"name", NULL}},
    {"POST", API_PREFIX "/vms", api_vms_create, ROLE_ADMIN, BODY_JSON, {NULL}},
    {"GET", API_PREFIX "/vms/{id}", api_vms_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"PATCH", API_PREFIX "/vms/{id}", api_vms_patch, ROLE_ADMIN, BODY_MERGE_PATCH, {NULL}},
    {"DELETE",
     API_PREFIX "/vms/{id}",
     api_vms_delete,
     ROLE_ADMIN,
     BODY_NONE,
     {"delete_disks", NULL}},
#define ACTION(name)                                                                               \
	{                                                                                          \
		"POST", API_PREFIX "/vms/{id}/" name, api_vm_action, ROLE_OPERATOR, BODY_OPT_JSON, \
		{                                                                                  \
			"wait", NULL                                                               \
		}                                                                                  \
	}
    {"GET", API_PREFIX "/vms/{id}/console", api_vm_console, ROLE_VIEWER, BODY_NONE, {NULL}},
    ACTION("start"),
    ACTION("shutdown"),
    ACTION("turn-off"),
    ACTION("restart"),
    ACTION("pause"),
    ACTION("resume"),
    ACTION("save"),
#undef ACTION
    /* checkpoints: viewers see them, operators change them */
    {"GET", API_PREFIX "/vms/{id}/checkpoints", api_ckpt_list, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"POST",
     API_PREFIX "/vms/{id}/checkpoints",
     api_ckpt_create,
     ROLE_OPERATOR,
     BODY_JSON,
     {"wait", NULL}},
    {"GET", API_PREFIX "/vms/{id}/checkpoints/{cp}", api_ckpt_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"DELETE",
     API_PREFIX "/vms/{id}/checkpoints/{cp}",
     api_ckpt_delete,
     ROLE_OPERATOR,
     BODY_NONE,
     {"wait", NULL}},
    {"POST",
     API_PREFIX "/vms/{id}/checkpoints/{cp}/apply",
     api_ckpt_apply,
     ROLE_OPERATOR,
     BODY_OPT_JSON,
     {"wait", NULL}},
    {"GET", API_PREFIX "/switches", api_switches_list, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"POST", API_PREFIX "/switches", api_switches_create, ROLE_ADMIN, BODY_JSON, {NULL}},
    {"GET", API_PREFIX "/switches/{id}", api_switches_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"DELETE", API_PREFIX "/switches/{id}", api_switches_delete, ROLE_ADMIN, BODY_NONE, {NULL}},
    {"GET", API_PREFIX "/disks", api_disks_list, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"POST", API_PREFIX "/disks", api_disks_create, ROLE_ADMIN, BODY_JSON, {NULL}},
    {"GET", API_PREFIX "/disks/{id}", api_disks_get, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"DELETE", API_PREFIX "/disks/{id}", api_disks_delete, ROLE_ADMIN, BODY_NONE, {NULL}},
    {"POST", API_PREFIX "/disks/{id}/resize", api_disks_resize, ROLE_ADMIN, BODY_JSON, {NULL}},
    {"POST", API_PREFIX "/vms/{id}/disks", api_vm_disk_attach, ROLE_OPERATOR, BODY_JSON, {NULL}},
    {"DELETE",
     API_PREFIX "/vms/{id}/disks/{disk}",
     api_vm_disk_detach,
     ROLE_OPERATOR,
     BODY_NONE,
     {NULL}},
    {"GET", API_PREFIX "/tokens", api_tokens_list, ROLE_ADMIN, BODY_NONE, {NULL}},
    {"POST", API_PREFIX "/tokens", api_tokens_create, ROLE_ADMIN, BODY_JSON, {NULL}},
    {"GET", API_PREFIX "/tokens/{id}", api_tokens_get, ROLE_ADMIN, BODY_NONE, {NULL}},
    {"DELETE", API_PREFIX "/tokens/{id}", api_tokens_delete, ROLE_ADMIN, BODY_NONE, {NULL}},
    {"GET", API_PREFIX "/operations", api_ops_list, ROLE_VIEWER, BODY_NONE, {NULL}},
    {"GET", API_PREFIX "/operations/{id}", api_ops_get, ROLE_VIEWER, BODY_NONE, {"wait", NULL}},
    {"POST",
     API_PREFIX "/host/stop-vms",
     api_host_stop_vms,
     ROLE_OPERATOR,
     BODY_OPT_JSON,
     {"wait", NULL}},
};

const char *api_role_name(enum api_role r)
{
	static const char *const names[] = {"none", "viewer", "operator", "admin"};
	return r < ARRAY_SIZE(names) ? names[r] : "none";
}

void api_db_failed(struct api_resp *resp, int err)
{
	api_error(resp, 500, "internal", NULL, "inventory error: %s", strerror(-err));
}

void api_respond_list(struct api_req *req, struct api_resp *resp, const char *key,
		      int (*fill)(struct db *db, json_t *list))
{
	json_t *list = json_array();
	int ret;
	if (!list || (ret = db_begin(req->ctx->db, false))) {
		api_db_failed(resp, list ? ret : -ENOMEM);
		goto out;
	}
	ret = fill(req->ctx->db, list);
	db_rollback(req->ctx->db);
	if (ret) {
		api_db_failed(resp, ret);
		goto out;
	}
	resp->status = 200;
	resp->body = json_pack("{s:O}", key, list);
out:
	json_decref(list);
}

void api_error(struct api_resp *resp, unsigned status, const char *code, const char *field,
	       const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(resp->body);
	json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
	if (e && field && *field)
		json_object_set_new(e, "field", json_string(field));
	resp->status = status;
	resp->body = e ? json_pack("{s:o}", "error", e) : NULL;
	resp->raw = NULL;
	resp->etag = 0;
	free(resp->text);
	resp->text = NULL;
	resp->stream = false;
}

void api_resp_free(struct api_resp *resp)
{
	json_decref(resp->body);
	resp->body = NULL;
	free(resp->text);
	resp->text = NULL;
	console_conn_free(resp->console);
	resp->console = NULL;
}

void api_now(char buf[32])
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
}

int api_uuid_v4(char out[37])
{
	unsigned char b[16];
	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -EIO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return 0;
}

json_t *api_actor(const struct api_req *req)
{
	json_t *a = json_pack("{s:s}", "role", api_role_name(req->role));
	if (a && !req->address) {
		json_object_set_new(a, "uid", json_integer((json_int_t)req->uid));
		json_object_set_new(a, "pid", json_integer((json_int_t)req->pid));
	}
	if (a && req->address)
		json_object_set_new(a, "address", json_string(req->address));
	if (a && req->token_name)
		json_object_set_new(a, "token",
				    json_pack("{s:I, s:s}", "id", (json_int_t)req->token_id, "name",
					      req->token_name));
	return a;
}

/* "application/json" or another accepted type, with optional parameters ("; charset=utf-8"). */
static bool media_type_is(const char *ct, const char *type)
{
	size_t n = strlen(type);
	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, type, n))
		return false;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static bool check_query(const struct route *r, struct api_req *req, struct api_resp *resp)
{
	const char *key;
	json_t *v;
	json_object_foreach(req->query, key, v)
	{
		bool known = false;
		for (size_t i = 0; i < ARRAY_SIZE(r->query) && r->query[i]; i++)
			known |= !strcmp(key, r->query[i]);
		if (!known) {
			api_error(resp, 400, "unknown-field", key, "unknown query parameter '%s'",
				  key);
			return false;
		}
	}
	return true;
}

static bool check_body(const struct route *r, struct api_req *req, struct api_resp *resp)
{
	json_error_t jerr;

	if (r->body == BODY_OPT_JSON && req->body_len == 0)
		return true;
	if (r->body == BODY_NONE) {
		if (req->body_len == 0)
			return true;
		api_error(resp, 400, "invalid-argument", NULL, "%s %s takes no request body",
			  r->method, r->pattern);
		return false;
	}
	if (!media_type_is(req->content_type, "application/json") &&
	    !(r->body == BODY_MERGE_PATCH &&
	      media_type_is(req->content_type, "application/merge-patch+json"))) {
		api_error(
		    resp, 415, "unsupported-media-type", NULL,
		    "the request body must be JSON: Content-Type: application/json%s (got %s)",
		    r->body == BODY_MERGE_PATCH ? " or application/merge-patch+json" : "",
		    req->content_type ? req->content_type : "none");
		return false;
	}
	/* NUL in strings is let through so the validator can name the field it is in */
	req->json = json_loadb(req->body ? req->body : "", req->body_len,
			       JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!req->json) {
		api_error(resp, 400, "invalid-json", NULL, "invalid JSON at line %d column %d: %s",
			  jerr.line, jerr.column, jerr.text);
		return false;
	}
	if (!json_is_object(req->json)) {
		api_error(resp, 400, "invalid-argument", NULL,
			  "the request body must be a JSON object");
		return false;
	}
	return true;
}

void api_dispatch(struct api_req *req, struct api_resp *resp)
{
	const struct route *r = NULL;
	size_t off = 0;
	bool path_known = false;

	resp->allow[0] = '\0';
	if (req->role == ROLE_NONE) {
		api_error(resp, 403, "forbidden", NULL,
			  "access denied: uid %u is neither root nor in one of berthd's groups",
			  (unsigned)req->uid);
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ROUTES); i++) {
		struct route_params p;
		if (!route_match(ROUTES[i].pattern, req->path, &p))
			continue;
		path_known = true;
		off += (size_t)snprintf(resp->allow + off, sizeof(resp->allow) - off, "%s%s",
					off ? ", " : "", ROUTES[i].method);
		if (off >= sizeof(resp->allow))
			off = sizeof(resp->allow) - 1;
		if (!r && !strcmp(ROUTES[i].method, req->method)) {
			r = &ROUTES[i];
			req->params = p;
		}
	}
	if (!path_known) {
		api_error(resp, 404, "not-found", NULL, "no such resource: %s", req->path);
		return;
	}
	if (!r) {
		api_error(resp, 405, "method-not-allowed", NULL,
			  "%s is not allowed on %s (allowed: %s)", req->method, req->path,
			  resp->allow);
		return;
	}
	resp->allow[0] = '\0';
	if (req->role < r->min_role) {
		api_error(resp, 403, "forbidden", NULL, "%s %s needs the %s role (you have %s)",
			  r->method, r->pattern, api_role_name(r->min_role),
			  api_role_name(req->role));
		return;
	}
	if (!check_query(r, req, resp) || !check_body(r, req, resp))
		goto out;
	r->fn(req, resp);
	if (!resp->status)
		api_error(resp, 500, "internal", NULL, "the handler gave no response");
out:
	json_decref(req->json);
	req->json = NULL;
}

void api_openapi_get(struct api_req *req, struct api_resp *resp)
{
	resp->status = 200;
	resp->raw = req->ctx->openapi;
	resp->raw_len = req->ctx->openapi_len;
}
