/* berth CLI: argument parsing against the verb table, error reporting, API calls, JSON output. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"

const struct cli_opt cli_global_opts[] = {
    {"json", 0, NULL, NULL, "print the API's JSON document instead of a table"},
    {"socket", OPT_ARG | OPT_FILE, "PATH", NULL,
     "berthd's unix socket (default $BERTH_SOCKET, else " BERTH_DEFAULT_SOCKET ")"},
    {"host", OPT_ARG, "URL", NULL, "a remote berthd, e.g. https://host:8443 (default $BERTH_HOST)"},
    {"token", OPT_ARG, "TOKEN", NULL, "API token for --host (default $BERTH_TOKEN)"},
    {"cacert", OPT_ARG | OPT_FILE, "FILE", NULL,
     "trust this CA or self-signed certificate for https:// (default $BERTH_CACERT, else the "
     "system's CAs)"},
    {"help", 0, NULL, NULL, "show help and exit"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_opt *cli_find_opt(const struct cli_opt *opts, const char *name)
{
	for (const struct cli_opt *o = opts; o && o->name; o++)
		if (strcmp(o->name, name) == 0)
			return o;
	return NULL;
}

const char *args_get(const struct cli_args *a, const char *name)
{
	const char *v = NULL;
	for (int i = 0; i < a->nset; i++)
		if (strcmp(a->set[i].opt->name, name) == 0)
			v = a->set[i].val;
	return v;
}

bool args_has(const struct cli_args *a, const char *name)
{
	for (int i = 0; i < a->nset; i++)
		if (strcmp(a->set[i].opt->name, name) == 0)
			return true;
	return false;
}

static void vfail(const char *fmt, va_list ap)
{
	char msg[2048];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "berth: error: %s\n", msg);
}

int cli_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfail(fmt, ap);
	va_end(ap);
	return code;
}

/* The command being run, for usage messages raised below the handler. */
static const struct cli_noun *cur_noun;
static const struct cli_verb *cur_verb;

void cli_set_command(const struct cli_noun *n, const struct cli_verb *v)
{
	cur_noun = n;
	cur_verb = v;
}

int cli_usage(const struct cli_noun *n, const struct cli_verb *v, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	if (!n) {
		n = cur_noun;
		v = cur_verb;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n && v)
		fprintf(stderr, "berth: error: %s (see 'berth %s %s --help')\n", msg, n->noun,
			v->verb);
	else if (n)
		fprintf(stderr, "berth: error: %s (see 'berth %s --help')\n", msg, n->noun);
	else
		fprintf(stderr, "berth: error: %s (see 'berth --help')\n", msg);
	return EXIT_USAGE;
}

int cli_global_opt(struct cli *c, const struct cli_opt *o, const char *val)
{
	if (strcmp(o->name, "json") == 0) {
		c->json = true;
	} else if (strcmp(o->name, "socket") == 0) {
		if (!*val)
			return cli_usage(NULL, NULL, "--socket: empty path");
		c->conn.socket_path = val;
		c->socket_given = true;
	} else if (strcmp(o->name, "host") == 0) {
		if (!*val)
			return cli_usage(NULL, NULL, "--host: empty URL");
		c->conn.host = val;
		c->host_given = true;
	} else if (strcmp(o->name, "token") == 0) {
		c->conn.token = val;
	} else if (strcmp(o->name, "cacert") == 0) {
		if (!*val)
			return cli_usage(NULL, NULL, "--cacert: empty path");
		c->conn.cacert = val;
	}
	return EXIT_OK;
}

/* Record option o (from opts of the verb or the globals) with its value. */
static int take_opt(struct cli *c, const struct cli_noun *n, const struct cli_verb *v,
		    const struct cli_opt *o, const char *val, bool global, struct cli_args *a)
{
	if (!(o->flags & OPT_REPEAT) && !global) {
		for (int i = 0; i < a->nset; i++)
			if (a->set[i].opt == o)
				return cli_usage(n, v, "--%s given twice", o->name);
	}
	if (global) {
		if (strcmp(o->name, "help") == 0) {
			a->help = true;
			return EXIT_OK;
		}
		return cli_global_opt(c, o, val);
	}
	if (a->nset == CLI_MAX_SET)
		return cli_usage(n, v, "too many options");
	a->set[a->nset].opt = o;
	a->set[a->nset].val = val;
	a->nset++;
	return EXIT_OK;
}

int args_parse(struct cli *c, const struct cli_noun *n, const struct cli_verb *v, int argc,
	       char **argv, struct cli_args *a)
{
	bool only_pos = false;

	memset(a, 0, sizeof(*a));
	for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			a->help = true; /* help wins over whatever else is wrong */
			return EXIT_OK;
		}
	}
	for (int i = 0; i < argc; i++) {
		const char *w = argv[i];
		if (only_pos || w[0] != '-' || strcmp(w, "-") == 0) {
			if (a->npos == CLI_MAX_POS || a->npos >= v->max_pos)
				return cli_usage(n, v, "unexpected argument '%s'", w);
			a->pos[a->npos++] = w;
			continue;
		}
		if (strcmp(w, "--") == 0) {
			only_pos = true;
			continue;
		}
		if (strcmp(w, "-h") == 0) {
			a->help = true;
			continue;
		}
		if (w[1] != '-')
			return cli_usage(n, v, "unknown option '%s'", w);
		char name[64];
		const char *eq = strchr(w + 2, '=');
		size_t len = eq ? (size_t)(eq - (w + 2)) : strlen(w + 2);
		if (len >= sizeof(name))
			return cli_usage(n, v, "unknown option '%.70s'", w);
		memcpy(name, w + 2, len);
		name[len] = '\0';
		bool global = false;
		const struct cli_opt *o = cli_find_opt(v->opts, name);
		if (!o) {
			o = cli_find_opt(cli_global_opts, name);
			global = true;
		}
		if (!o)
			return cli_usage(n, v, "unknown option '--%s'", name);
		const char *val = NULL;
		if (o->flags & OPT_ARG) {
			if (eq) {
				val = eq + 1;
			} else if (i + 1 < argc) {
				val = argv[++i];
			} else {
				return cli_usage(n, v, "--%s needs a value (%s)", name, o->metavar);
			}
		} else if (eq) {
			return cli_usage(n, v, "--%s takes no value", name);
		}
		int r = take_opt(c, n, v, o, val, global, a);
		if (r)
			return r;
	}
	if (a->help)
		return EXIT_OK;
	if (a->npos < v->min_pos)
		return cli_usage(n, v, "missing %s", v->synopsis);
	return EXIT_OK;
}

static int open_client(struct cli *c)
{
	if (c->client)
		return 0;
	int r = client_open(&c->client, &c->conn);
	if (r)
		return cli_fail(EXIT_ERROR, "cannot set up the HTTP client: %s", strerror(-r));
	return 0;
}

static int transport_error(struct cli *c, int err)
{
	const char *target = client_target(c->client);
	const char *why = client_error(c->client);

	switch (-err) {
	case EACCES:
	case EPERM:
		return cli_fail(EXIT_DENIED,
				"permission denied on berthd's socket %s: use root or a member of "
				"berthd's group (berth)",
				target);
	case EKEYREJECTED:
		return cli_fail(EXIT_UNREACHABLE,
				"no trusted TLS connection to berthd at %s: %s (a self-signed "
				"certificate needs --cacert FILE or $BERTH_CACERT)",
				target, why);
	case EPROTO:
	case EFBIG:
		return cli_fail(EXIT_ERROR, "bad answer from berthd at %s: %s", target, why);
	case ENOMEM:
	case EINVAL:
	case ENAMETOOLONG:
		return cli_fail(EXIT_ERROR, "%s", why);
	default:
		if (c->conn.host)
			return cli_fail(EXIT_UNREACHABLE,
					"cannot reach berthd at %s: %s (is berthd running there, "
					"and is the URL right?)",
					target, why);
		return cli_fail(EXIT_UNREACHABLE,
				"cannot reach berthd at %s: %s (is berthd running? check "
				"'systemctl status berthd', or pass --socket PATH)",
				target, why);
	}
}

static int exit_for_status(long status)
{
	switch (status) {
	case 401:
		return EXIT_UNAUTHENTICATED;
	case 403:
		return EXIT_DENIED;
	case 404:
		return EXIT_NOT_FOUND;
	case 409:
	case 412:
		return EXIT_CONFLICT;
	default:
		return EXIT_ERROR;
	}
}

int cli_report(const struct response *r, const char *hint)
{
	int code = exit_for_status(r->status);
	json_t *e = json_object_get(r->body, "error");
	const char *msg = json_string_value(json_object_get(e, "message"));
	const char *field = json_string_value(json_object_get(e, "field"));
	char first[200] = "";

	if (r->status == 401 && !hint)
		hint = " (berthd wants a valid API token: pass --token TOKEN or set $BERTH_TOKEN; "
		       "an admin makes one with 'berth token create NAME --role ROLE')";
	if (!msg && r->raw)
		sscanf(r->raw, "%199[^\r\n]", first);
	if (!msg)
		return cli_fail(code, "berthd answered HTTP %ld%s%s%s", r->status,
				first[0] ? ": " : "", first, hint ? hint : "");
	return cli_fail(code, "%s%s%s%s%s", msg, field ? " (field: " : "", field ? field : "",
			field ? ")" : "", hint ? hint : "");
}

int cli_api_keep(struct cli *c, const char *method, const char *path, const char *if_match,
		 const json_t *body, struct response *r)
{
	memset(r, 0, sizeof(*r));
	int err = open_client(c);
	if (err)
		return err;
	const char *ctype =
	    strcmp(method, "PATCH") == 0 ? "application/merge-patch+json" : "application/json";
	err = client_request(c->client, method, path, if_match, ctype, body, r);
	if (err)
		return transport_error(c, err);
	if (r->status >= 200 && r->status < 300)
		return EXIT_OK;
	return exit_for_status(r->status);
}

int cli_api(struct cli *c, const char *method, const char *path, const char *if_match,
	    const json_t *body, struct response *r)
{
	int code = cli_api_keep(c, method, path, if_match, body, r);
	if (code && r->status) {
		cli_report(r, NULL);
		response_free(r);
	}
	return code;
}

int cli_path(char *buf, size_t len, const char *prefix, const char *id, const char *suffix)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	int n = snprintf(buf, len, "%s/", prefix);
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	o = (size_t)n;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			     *p == '~';
		if (o + 4 > len)
			return -ENAMETOOLONG;
		if (plain) {
			buf[o++] = (char)*p;
		} else {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	n = snprintf(buf + o, len - o, "%s", suffix ? suffix : "");
	if (n < 0 || (size_t)n >= len - o)
		return -ENAMETOOLONG;
	return 0;
}

void cli_print_json(const json_t *doc)
{
	char *s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	if (s) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
}

bool cli_confirm(const char *question)
{
	char line[64];
	fprintf(stderr, "%s [y/N] ", question);
	fflush(stderr);
	if (!fgets(line, sizeof(line), stdin))
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}
