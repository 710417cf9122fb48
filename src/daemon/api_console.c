/* GET /api/v1/vms/{id}/console: a VM's serial console as a raw byte stream on the upgraded
 * connection (101 Switching Protocols, Upgrade: berth-console). */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "daemon/api.h"
#include "daemon/console.h"
#include "daemon/vmctl.h"

/* Whether a comma-separated header value holds token (case-insensitive, spaces ignored). */
static bool has_token(const char *list, const char *token)
{
	size_t n = strlen(token);
	while (list && *list) {
		while (*list == ' ' || *list == '\t' || *list == ',')
			list++;
		size_t len = strcspn(list, ",");
		size_t end = len;
		while (end && (list[end - 1] == ' ' || list[end - 1] == '\t'))
			end--;
		if (end == n && !strncasecmp(list, token, n))
			return true;
		list += len;
	}
	return false;
}

void api_vm_console(struct api_req *req, struct api_resp *resp)
{
	char path[108], uuid[37], name[64];
	struct console_conn *cc = NULL;
	struct vmctl_err e;
	int ret;

	if (!has_token(req->upgrade, API_CONSOLE_PROTOCOL) ||
	    !has_token(req->connection, "upgrade")) {
		api_error(resp, 426, "upgrade-required", NULL,
			  "the console is a byte stream: send Upgrade: " API_CONSOLE_PROTOCOL
			  " and Connection: Upgrade");
		return;
	}
	if (!req->ctx->vmctl) {
		api_error(resp, 400, "not-supported", NULL, "this berthd does not manage VMs");
		return;
	}
	if (vmctl_console(req->ctx->vmctl, req->params.v[0], path, uuid, name, &e)) {
		api_error(resp, e.status, e.code, NULL, "%s", e.msg);
		return;
	}
	/* a console is for those who may act on the VM: viewers watch, operators also type */
	ret = console_open(path, name, req->role >= ROLE_OPERATOR, &cc);
	if (ret == -EBUSY) {
		api_error(resp, 409, "busy", NULL,
			  "the console of VM '%s' is in use by another client (one at a time)",
			  name);
		return;
	}
	if (ret == -ENOENT || ret == -ECONNREFUSED) {
		api_error(resp, 409, "invalid-state", NULL,
			  "VM '%s' has no console to attach to (is it stopping?)", name);
		return;
	}
	if (ret) {
		api_error(resp, 500, "internal", NULL, "the console of VM '%s': %s", name,
			  strerror(-ret));
		return;
	}
	resp->status = 101;
	resp->console = cc;
}
