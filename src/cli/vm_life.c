/* berth CLI: the VM lifecycle verbs (start, stop, turn-off, restart, pause, resume, save) — post
 * the action, then follow its operation with a progress line on a terminal. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define OPS "/api/v1/operations"
#define POLL_MS 200
#define TIMEOUT_MAX 3600

static const char *str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static bool finished(const json_t *op)
{
	const char *s = str(op, "state");
	return s && (!strcmp(s, "succeeded") || !strcmp(s, "failed"));
}

/* The progress line on stderr (a terminal): "start web1: running 30%". */
static void progress_line(const char *what, const json_t *op)
{
	fprintf(stderr, "\r\033[K%s: %s %3lld%%", what, str(op, "state") ? str(op, "state") : "?",
		(long long)json_integer_value(json_object_get(op, "progress")));
	fflush(stderr);
}

/* GET the operation (waiting for its end when wait); *op is replaced. EXIT_* */
static int fetch(struct cli *c, const char *id, bool wait, json_t **op)
{
	struct response r;
	char path[256];
	int code;

	if (cli_path(path, sizeof(path), OPS, id, wait ? "?wait=true" : NULL))
		return cli_fail(EXIT_ERROR, "bad operation id from berthd: '%.60s'", id);
	if ((code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	if (!json_is_object(r.body)) {
		response_free(&r);
		return cli_fail(EXIT_ERROR, "berthd sent no operation for %s", id);
	}
	if (wait && r.status == 202) {
		response_free(&r);
		return cli_fail(EXIT_ERROR,
				"berthd stopped before operation %s finished; the VM's state tells "
				"how far it got ('berth vm show')",
				id);
	}
	json_decref(*op);
	*op = json_incref(r.body);
	response_free(&r);
	return EXIT_OK;
}

int cli_op_follow(struct cli *c, const char *what, json_t **op)
{
	struct timespec pause = {0, POLL_MS * 1000000L};
	bool tty = isatty(STDERR_FILENO);
	char id[64];
	int code = EXIT_OK;

	snprintf(id, sizeof(id), "%s", str(*op, "id") ? str(*op, "id") : "");
	if (!id[0])
		return cli_fail(EXIT_ERROR, "berthd's answer names no operation");
	if (!tty)
		return finished(*op) ? EXIT_OK : fetch(c, id, true, op);
	while (!finished(*op)) {
		progress_line(what, *op);
		nanosleep(&pause, NULL);
		if ((code = fetch(c, id, false, op)))
			break;
	}
	fprintf(stderr, "\r\033[K");
	fflush(stderr);
	return code;
}

/* The API action of a verb: stop is shutdown (or, with --turn-off, turn-off). */
static const char *action_of(const struct cli_verb *v, const struct cli_args *a)
{
	if (strcmp(v->verb, "stop"))
		return v->verb;
	return args_has(a, "turn-off") ? "turn-off" : "shutdown";
}

/* The body of stop: {"timeout_s": N} from --timeout, checked here so nothing is sent if bad. */
static int stop_body(const struct cli_args *a, json_t **body)
{
	const char *t = args_get(a, "timeout");
	char *end;
	long n;

	*body = NULL;
	if (!t)
		return EXIT_OK;
	if (args_has(a, "turn-off"))
		return cli_usage(NULL, NULL,
				 "--timeout is for shutting down; --turn-off stops at once");
	errno = 0;
	n = strtol(t, &end, 10);
	if (errno || end == t || *end || n < 1 || n > TIMEOUT_MAX)
		return cli_usage(NULL, NULL,
				 "--timeout: '%s' is not a number of seconds from 1 to %d", t,
				 TIMEOUT_MAX);
	if (!(*body = json_pack("{s:I}", "timeout_s", (json_int_t)n)))
		return cli_fail(EXIT_ERROR, "out of memory");
	return EXIT_OK;
}

/* After success: "VM web1: running (booted)", from the VM as it is now. */
static int print_state(struct cli *c, const char *path)
{
	struct response r;
	int code = cli_api(c, "GET", path, NULL, NULL, &r);
	if (code)
		return code;
	const char *reason = str(r.body, "state_reason");
	printf("VM %s: %s%s%s%s\n", str(r.body, "name"), str(r.body, "state"), reason ? " (" : "",
	       reason ? reason : "", reason ? ")" : "");
	response_free(&r);
	return EXIT_OK;
}

int cli_vm_action(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	const char *action = action_of(v, a), *name = a->pos[0];
	char path[512], vm_path[512], suffix[32], what[256];
	json_t *body = NULL, *op = NULL;
	struct response r;
	int code;

	snprintf(suffix, sizeof(suffix), "/%s", action);
	if (!*name || cli_path(path, sizeof(path), "/api/v1/vms", name, suffix) ||
	    cli_path(vm_path, sizeof(vm_path), "/api/v1/vms", name, NULL))
		return cli_usage(NULL, NULL, "'%.80s' is not a VM name or UUID", name);
	if (!strcmp(v->verb, "stop") && (code = stop_body(a, &body)))
		return code;
	code = cli_api(c, "POST", path, NULL, body, &r);
	json_decref(body);
	if (code)
		return code;
	op = json_incref(r.body);
	response_free(&r);
	if (!json_is_object(op) || !str(op, "id")) {
		json_decref(op);
		return cli_fail(EXIT_ERROR, "berthd's answer to %s is not an operation", action);
	}
	if (args_has(a, "no-wait")) {
		if (c->json)
			cli_print_json(op);
		else
			printf("%s\n", str(op, "id"));
		json_decref(op);
		return EXIT_OK;
	}
	snprintf(what, sizeof(what), "%s %s", action, name);
	if ((code = cli_op_follow(c, what, &op)))
		goto out;
	if (c->json)
		cli_print_json(op);
	if (strcmp(str(op, "state"), "succeeded")) {
		const char *msg = str(json_object_get(op, "error"), "message");
		code = cli_fail(EXIT_ERROR, "%s of VM %s failed: %s", action, name,
				msg ? msg : "no reason given");
		goto out;
	}
	if (!c->json)
		code = print_state(c, vm_path);
out:
	json_decref(op);
	return code;
}
