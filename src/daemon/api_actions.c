/* VM actions, operations and the host's stop-vms: the API side of the VM lifecycle. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/api.h"
#include "daemon/ops.h"
#include "daemon/route.h"
#include "daemon/vmctl.h"

#define SHUTDOWN_TIMEOUT_DEFAULT 60
#define SHUTDOWN_TIMEOUT_MAX 3600

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

/* The body of an action: nothing, {}, or (where timeout_ok) {"timeout_s": N}. */
static int get_timeout(struct api_req *req, struct api_resp *resp, bool timeout_ok, int *timeout_s)
{
	const char *key;
	json_t *v;
	*timeout_s = SHUTDOWN_TIMEOUT_DEFAULT;
	json_object_foreach(req->json, key, v)
	{
		if (!timeout_ok || strcmp(key, "timeout_s")) {
			api_error(resp, 400, "unknown-field", key, "unknown field '%s'", key);
			return -EINVAL;
		}
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > SHUTDOWN_TIMEOUT_MAX) {
			api_error(resp, 400, "invalid-argument", "timeout_s",
				  "timeout_s: must be a whole number of seconds from 1 to %d",
				  SHUTDOWN_TIMEOUT_MAX);
			return -EINVAL;
		}
		*timeout_s = (int)json_integer_value(v);
	}
	return 0;
}

void api_op_answer(struct api_ctx *ctx, const char *id, bool created, struct api_resp *resp)
{
	bool finished = false;
	json_t *op = ops_get(ctx->ops, id, false, &finished);
	json_decref(resp->body);
	resp->body = NULL;
	if (!op) {
		api_error(resp, 404, "not-found", NULL,
			  "no operation '%s' (operations are kept "
			  "in memory: the %d most recent finished ones)",
			  id, OPS_HISTORY);
		return;
	}
	resp->body = op;
	resp->status = created && !finished ? 202 : 200;
	if (created)
		snprintf(resp->location, sizeof(resp->location), API_PREFIX "/operations/%s", id);
}

/* The operation now; with wait, the HTTP layer answers again once it has finished. */
static void respond_op(struct api_req *req, struct api_resp *resp, const char *id, bool wait,
		       bool created)
{
	api_op_answer(req->ctx, id, created, resp);
	if (wait && resp->status != 404 && strlen(id) < sizeof(resp->wait_op)) {
		memcpy(resp->wait_op, id, strlen(id) + 1);
		resp->op_created = created;
	}
}

static void refused(struct api_resp *resp, const struct vmctl_err *e)
{
	api_error(resp, e->status, e->code, NULL, "%s", e->msg);
}

static bool lifecycle_available(struct api_req *req, struct api_resp *resp)
{
	if (req->ctx->vmctl && req->ctx->ops)
		return true;
	api_error(resp, 400, "not-supported", NULL, "this berthd does not manage VMs");
	return false;
}

void api_vm_action(struct api_req *req, struct api_resp *resp)
{
	const char *name = strrchr(req->path, '/') + 1; /* the router matched .../{id}/<action> */
	int a = vmctl_action_parse(name), timeout_s;
	char op[OP_ID_LEN + 1];
	struct vmctl_err e;
	bool wait;

	if (!lifecycle_available(req, resp) || get_wait(req, resp, &wait) ||
	    get_timeout(req, resp, a == ACT_SHUTDOWN, &timeout_s))
		return;
	if (a < 0) {
		api_error(resp, 404, "not-found", NULL, "no such action: %s", name);
		return;
	}
	json_t *actor = api_actor(req);
	int ret = vmctl_action(req->ctx->vmctl, req->params.v[0], (enum vm_action)a, timeout_s,
			       "api", actor, op, &e);
	json_decref(actor);
	if (ret) {
		refused(resp, &e);
		return;
	}
	respond_op(req, resp, op, wait, true);
}

void api_host_stop_vms(struct api_req *req, struct api_resp *resp)
{
	char op[OP_ID_LEN + 1];
	struct vmctl_err e;
	int timeout_s;
	bool wait;

	if (!lifecycle_available(req, resp) || get_wait(req, resp, &wait) ||
	    get_timeout(req, resp, true, &timeout_s))
		return;
	json_t *actor = api_actor(req);
	int ret = vmctl_host_stop(req->ctx->vmctl, timeout_s, actor, op, &e);
	json_decref(actor);
	if (ret) {
		refused(resp, &e);
		return;
	}
	respond_op(req, resp, op, wait, true);
}

void api_ops_list(struct api_req *req, struct api_resp *resp)
{
	if (!lifecycle_available(req, resp))
		return;
	if (!(resp->body = ops_list(req->ctx->ops))) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		return;
	}
	resp->status = 200;
}

void api_ops_get(struct api_req *req, struct api_resp *resp)
{
	bool wait;
	if (!lifecycle_available(req, resp) || get_wait(req, resp, &wait))
		return;
	respond_op(req, resp, req->params.v[0], wait, false);
}
