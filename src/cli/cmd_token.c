/* berth CLI: `berth token ...` — API tokens for remote callers (admin only). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "common/util.h"

#define TOKENS "/api/v1/tokens"

static const char *str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "-";
}

static int token_path(char *buf, size_t len, const char *id)
{
	if (!*id || cli_path(buf, len, TOKENS, id, NULL))
		return cli_usage(NULL, NULL, "'%.80s' is not a token name or id", id);
	return EXIT_OK;
}

static const char *expiry(const json_t *t)
{
	if (json_is_true(json_object_get(t, "expired")))
		return "expired";
	return json_string_value(json_object_get(t, "expires")) ? str(t, "expires") : "never";
}

static int token_create(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	const char *role = args_get(a, "role"), *days = args_get(a, "expires-days");
	struct response r;
	uint64_t n = 0;
	(void)v;

	if (!role)
		return cli_usage(NULL, NULL, "--role is required: viewer, operator or admin");
	if (days && (parse_u64(days, &n) || n < 1 || n > 3650))
		return cli_usage(NULL, NULL, "--expires-days '%s': a number of days from 1 to 3650",
				 days);
	json_t *body = json_pack("{s:s, s:s}", "name", a->pos[0], "role", role);
	if (body && days)
		json_object_set_new(body, "expires_in_days", json_integer((json_int_t)n));
	int code = cli_api(c, "POST", TOKENS, NULL, body, &r);
	json_decref(body);
	if (code)
		return code;
	if (c->json) {
		cli_print_json(r.body);
	} else {
		/* the secret alone on stdout, so `T=$(berth token create ...)` keeps it */
		printf("%s\n", str(r.body, "token"));
		fprintf(
		    stderr,
		    "Created token %s (id %lld, role %s, expires %s). This is the only time its "
		    "secret is shown: berthd keeps only a hash of it.\n",
		    str(r.body, "name"),
		    (long long)json_integer_value(json_object_get(r.body, "id")),
		    str(r.body, "role"), expiry(r.body));
	}
	response_free(&r);
	return EXIT_OK;
}

static int token_list(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	static const char *const head[] = {"ID", "NAME", "ROLE", "CREATED", "LAST USED", "EXPIRES"};
	struct response r;
	struct table t;
	char id[24];
	size_t i;
	json_t *tok;
	int code;
	(void)v;
	(void)a;

	if ((code = cli_api(c, "GET", TOKENS, NULL, NULL, &r)))
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	table_init(&t, 6, head);
	json_array_foreach(json_object_get(r.body, "tokens"), i, tok)
	{
		snprintf(id, sizeof(id), "%lld",
			 (long long)json_integer_value(json_object_get(tok, "id")));
		const char *row[] = {id,
				     str(tok, "name"),
				     str(tok, "role"),
				     str(tok, "created"),
				     str(tok, "last_used"),
				     expiry(tok)};
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

static int token_delete(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	int code;
	(void)v;

	if ((code = token_path(path, sizeof(path), a->pos[0])) ||
	    (code = cli_api(c, "DELETE", path, NULL, NULL, &r)))
		return code;
	response_free(&r);
	if (!c->json)
		printf("deleted token %s\n", a->pos[0]);
	return EXIT_OK;
}

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
    {"role", OPT_ARG, "ROLE", "viewer operator admin",
     "viewer (reads), operator (also starts and stops VMs, types on consoles) or admin "
     "(everything); required"},
    {"expires-days", OPT_ARG, "N", NULL, "the token stops working after N days (default: never)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_verb cli_token_verbs[] = {
    {"create", token_create, "NAME", 1, 1, "create an API token (its secret is shown once)",
     "Create an API token for remote use (`berth --host URL --token TOKEN ...`). The token is\n"
     "printed alone on stdout, this once: berthd keeps only its SHA-256. Admins only.",
     create_opts, false},
    {"list", token_list, "", 0, 0, "list the API tokens",
     "List the API tokens: id, name, role, creation, last use and expiry. Never their secrets.\n"
     "Admins only.",
     no_opts, false},
    {"delete", token_delete, "NAME|ID", 1, 1, "revoke an API token",
     "Delete an API token: requests with it are refused (401) at once. Admins only.", no_opts,
     false},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
