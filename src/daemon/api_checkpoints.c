/* /vms/{id}/checkpoints: list, show, create, apply and delete a VM's checkpoints. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/api.h"
#include "daemon/ckpttree.h"
#include "daemon/route.h"
#include "daemon/vmctl.h"

static bool available(struct api_req *req, struct api_resp *resp)
{
	if (req->ctx->vmctl && req->ctx->ops)
		return true;
	api_error(resp, 400, "not-supported", NULL, "this berthd does not manage VMs");
	return false;
}

static void refused(struct api_resp *resp, const struct vmctl_err *e)
{
	api_error(resp, e->status, e->code, e->field, "%s", e->msg);
}

/* ?wait=true|false */
static int get_wait(struct api_req *req, struct api_resp *resp, bool *wait)
{
	json_t *q = json_object_get(req->query, "wait");
	*wait = false;
	if (q && (!json_is_string(q) || route_parse_bool(json_string_value(q), wait))) {
		api_error(resp, 400, "invalid-argument", "wait", "wait: must be true or false");
		return -EINVAL;
	}
	return 0;
}

static void answer_op(struct api_req *req, struct api_resp *resp, const char *op, bool wait)
{
	api_op_answer(req->ctx, op, true, resp);
	if (wait && resp->status != 404 && strlen(op) < sizeof(resp->wait_op)) {
		memcpy(resp->wait_op, op, strlen(op) + 1);
		resp->op_created = true;
	}
}

void api_ckpt_list(struct api_req *req, struct api_resp *resp)
{
	struct vmctl_err e;
	char uuid[37];
	json_t *list;
	if (!available(req, resp))
		return;
	if (vmctl_ckpt_list(req->ctx->vmctl, req->params.v[0], &list, uuid, &e)) {
		refused(resp, &e);
		return;
	}
	resp->status = 200;
	resp->body = list;
}

void api_ckpt_get(struct api_req *req, struct api_resp *resp)
{
	struct vmctl_err e;
	char uuid[37];
	json_t *list;
	if (!available(req, resp))
		return;
	if (vmctl_ckpt_list(req->ctx->vmctl, req->params.v[0], &list, uuid, &e)) {
		refused(resp, &e);
		return;
	}
	json_t *c = ckpt_api_find(list, req->params.v[1]);
	if (c) {
		resp->status = 200;
		resp->body = json_incref(c);
	} else {
		api_error(resp, 404, "not-found", "checkpoint", "VM '%s' has no checkpoint '%s'",
			  req->params.v[0], req->params.v[1]);
	}
	json_decref(list);
}

/* A checkpoint name: 1 to 64 letters, digits, '.', '_', '-', ':', not an id (c<number>). */
static bool name_valid(const char *s, size_t len)
{
	if (len == 0 || len > CKPT_NAME_MAX || s[0] == '-' || s[0] == '.')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == ':'))
			return false;
	}
	if (s[0] == 'c' && len > 1 && strspn(s + 1, "0123456789") == len - 1)
		return false;
	return true;
}

void api_ckpt_create(struct api_req *req, struct api_resp *resp)
{
	char op[OP_ID_LEN + 1];
	struct vmctl_err e;
	const char *key;
	json_t *v, *name = NULL;
	bool wait, disk_only = false;

	if (!available(req, resp) || get_wait(req, resp, &wait))
		return;
	json_object_foreach(req->json, key, v)
	{
		if (!strcmp(key, "name")) {
			name = v;
		} else if (!strcmp(key, "disk_only")) {
			if (!json_is_boolean(v)) {
				api_error(resp, 400, "invalid-argument", "disk_only",
					  "disk_only: must be true or false");
				return;
			}
			disk_only = json_is_true(v);
		} else {
			api_error(resp, 400, "unknown-field", key, "unknown field '%s'", key);
			return;
		}
	}
	if (!name) {
		api_error(resp, 400, "invalid-argument", "name", "name: required");
		return;
	}
	if (!json_is_string(name) ||
	    !name_valid(json_string_value(name), json_string_length(name)) ||
	    strlen(json_string_value(name)) != json_string_length(name)) {
		api_error(resp, 400, "invalid-argument", "name",
			  "name: 1 to %d characters of letters, digits, '.', '_', '-' and ':', not "
			  "starting with '.' or '-', and not shaped like a checkpoint id (c1, c2, "
			  "...)",
			  CKPT_NAME_MAX);
		return;
	}
	json_t *actor = api_actor(req);
	int r = vmctl_ckpt_op(req->ctx->vmctl, req->params.v[0], CKPT_CREATE,
			      json_string_value(name), disk_only, actor, op, &e);
	json_decref(actor);
	if (r) {
		refused(resp, &e);
		return;
	}
	answer_op(req, resp, op, wait);
}

static void ckpt_act(struct api_req *req, struct api_resp *resp, enum ckpt_op kind)
{
	char op[OP_ID_LEN + 1];
	struct vmctl_err e;
	const char *key;
	json_t *v;
	bool wait;

	if (!available(req, resp) || get_wait(req, resp, &wait))
		return;
	json_object_foreach(req->json, key, v)
	{
		api_error(resp, 400, "unknown-field", key, "unknown field '%s'", key);
		return;
	}
	json_t *actor = api_actor(req);
	int r = vmctl_ckpt_op(req->ctx->vmctl, req->params.v[0], kind, req->params.v[1], false,
			      actor, op, &e);
	json_decref(actor);
	if (r) {
		refused(resp, &e);
		return;
	}
	answer_op(req, resp, op, wait);
}

void api_ckpt_apply(struct api_req *req, struct api_resp *resp)
{
	ckpt_act(req, resp, CKPT_APPLY);
}

void api_ckpt_delete(struct api_req *req, struct api_resp *resp)
{
	ckpt_act(req, resp, CKPT_DELETE);
}
