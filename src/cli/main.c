/* berth: the command-line client of berthd — dispatch through the verb table, help, completion. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/cli.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

/* The nouns; each file cmd_<noun>.c holds its verb rows. */
const struct cli_noun cli_nouns[] = {
    {"host", "the host berthd runs on", cli_host_verbs},
    {"vm", "virtual machines", cli_vm_verbs},
    {"switch", "virtual switches (Linux bridges berthd manages)", cli_switch_verbs},
    {"disk", "managed disk images in berthd's pool", cli_disk_verbs},
    {"token", "API tokens for remote callers (admin)", cli_token_verbs},
    {"checkpoint", "checkpoints of VMs (take, list, apply, delete)", cli_checkpoint_verbs},
    {NULL, NULL, NULL},
};

static const char exit_text[] =
    "Exit status: 0 success; 1 an error from berthd or another failure; 2 bad usage (nothing\n"
    "was sent); 3 not found; 4 conflict (the name is taken, or the VM changed since it was\n"
    "read); 5 cannot reach berthd; 6 permission denied; 7 not authenticated (no token, or\n"
    "an unknown or expired one).\n";

static const struct cli_noun *find_noun(const char *name)
{
	for (const struct cli_noun *n = cli_nouns; n->noun; n++)
		if (strcmp(n->noun, name) == 0)
			return n;
	return NULL;
}

static const struct cli_verb *find_verb(const struct cli_noun *n, const char *name)
{
	for (const struct cli_verb *v = n->verbs; v->verb; v++)
		if (strcmp(v->verb, name) == 0)
			return v;
	return NULL;
}

static void print_opts(FILE *f, const struct cli_opt *opts)
{
	for (const struct cli_opt *o = opts; o->name; o++) {
		char left[160];
		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->metavar ? " " : "",
			 o->metavar ? o->metavar : "");
		if (strlen(left) <= 24)
			fprintf(f, "  %-24s  %s\n", left, o->help);
		else
			fprintf(f, "  %s\n  %-24s  %s\n", left, "", o->help);
	}
}

static void synopsis(char *buf, size_t len, const struct cli_noun *n, const struct cli_verb *v)
{
	snprintf(buf, len, "%s %s%s%s", n->noun, v->verb, v->synopsis[0] ? " " : "", v->synopsis);
}

static void help_main(FILE *f)
{
	char syn[128];
	fprintf(
	    f,
	    "usage: berth [--socket PATH | --host URL [--token TOKEN] [--cacert FILE]] [--json]\n"
	    "             NOUN VERB [ARGS]\n"
	    "       berth help [NOUN [VERB]]\n"
	    "       berth --version\n\n"
	    "Manage berth's virtual machines through berthd, the host daemon (man berth).\n\n"
	    "Commands:\n");
	for (const struct cli_noun *n = cli_nouns; n->noun; n++)
		for (const struct cli_verb *v = n->verbs; v->verb; v++) {
			synopsis(syn, sizeof(syn), n, v);
			fprintf(f, "  %-24s  %s\n", syn, v->summary);
		}
	fprintf(f, "\nGlobal options (anywhere on the command line):\n");
	print_opts(f, cli_global_opts);
	fprintf(f, "  %-24s  %s\n\n%s", "--version", "print berth's version and exit", exit_text);
}

static void help_noun(FILE *f, const struct cli_noun *n)
{
	char syn[128];
	fprintf(f, "usage: berth %s VERB [ARGS] [options]\n\n%s:\n", n->noun, n->summary);
	for (const struct cli_verb *v = n->verbs; v->verb; v++) {
		synopsis(syn, sizeof(syn), n, v);
		fprintf(f, "  %-24s  %s\n", syn, v->summary);
	}
	fprintf(f, "\n'berth %s VERB --help' describes a verb and its options.\n", n->noun);
}

static void help_verb(FILE *f, const struct cli_noun *n, const struct cli_verb *v)
{
	char syn[128];
	synopsis(syn, sizeof(syn), n, v);
	fprintf(f, "usage: berth %s%s\n\n%s\n", syn, v->opts->name ? " [options]" : "", v->help);
	if (v->opts->name) {
		fprintf(f, "\nOptions:\n");
		print_opts(f, v->opts);
	}
	fprintf(f, "\nGlobal options:\n");
	print_opts(f, cli_global_opts);
	fprintf(f, "\n%s", exit_text);
}

/* `berth help [NOUN [VERB]]` */
static int cmd_help(int argc, char **argv)
{
	const struct cli_noun *n;
	const struct cli_verb *v;

	if (argc == 0) {
		help_main(stdout);
		return EXIT_OK;
	}
	if (!(n = find_noun(argv[0])))
		return cli_usage(NULL, NULL, "no help for '%s': not a command", argv[0]);
	if (argc == 1) {
		help_noun(stdout, n);
		return EXIT_OK;
	}
	if (argc > 2 || !(v = find_verb(n, argv[1])))
		return cli_usage(n, NULL, "no help for '%s %s': not a verb of %s", argv[0], argv[1],
				 argv[0]);
	help_verb(stdout, n, v);
	return EXIT_OK;
}

static void complete_word(const char *cur, const char *word)
{
	if (strncmp(word, cur, strlen(cur)) == 0)
		printf("%s\n", word);
}

static void complete_opts(const char *cur, const struct cli_opt *opts)
{
	char w[80];
	for (const struct cli_opt *o = opts; o && o->name; o++) {
		snprintf(w, sizeof(w), "--%s", o->name);
		complete_word(cur, w);
	}
}

static void complete_vms(struct cli *c, const char *cur)
{
	struct response r;
	size_t i;
	json_t *vm;

	if (cli_api(c, "GET", "/api/v1/vms", NULL, NULL, &r))
		return;
	json_array_foreach(json_object_get(r.body, "vms"), i, vm)
	{
		const char *name = json_string_value(json_object_get(vm, "name"));
		if (name)
			complete_word(cur, name);
	}
	response_free(&r);
}

/* `berth __complete CWORD WORD...` (for the bash completion script): the candidates for word
 * CWORD, one a line; "@files" asks the script for file names. Errors print nothing useful. */
static int cmd_complete(struct cli *c, int argc, char **argv)
{
	const struct cli_noun *n = NULL;
	const struct cli_verb *v = NULL;
	const struct cli_opt *want = NULL; /* the option whose value is being completed */
	int npos = 0;

	if (argc < 2)
		return EXIT_USAGE;
	int cword = atoi(argv[0]);
	char **words = argv + 1;
	int nwords = argc - 1;
	if (cword < 1 || cword > nwords)
		return EXIT_USAGE;
	const char *cur = cword < nwords ? words[cword] : "";

	for (int i = 1; i < cword; i++) {
		const char *w = words[i];
		want = NULL;
		if (w[0] == '-') {
			const struct cli_opt *o = v ? cli_find_opt(v->opts, w + 2) : NULL;
			bool global = !o;
			if (!o)
				o = cli_find_opt(cli_global_opts, w + 2);
			if (o && (o->flags & OPT_ARG)) {
				if (i + 1 == cword) {
					want = o;
					break;
				}
				if (global)
					cli_global_opt(c, o, words[i + 1]);
				i++;
			}
		} else if (!n) {
			n = find_noun(w);
			if (!n && strcmp(w, "help") != 0)
				return EXIT_OK;
		} else if (!v) {
			v = find_verb(n, w);
			if (!v)
				return EXIT_OK;
		} else {
			npos++;
		}
	}
	if (c->socket_given && !c->host_given)
		c->conn.host = NULL; /* as run() does */
	if (want) {
		if (want->choices) {
			char buf[256], *save = NULL;
			snprintf(buf, sizeof(buf), "%s", want->choices);
			for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save))
				complete_word(cur, t);
		} else if (want->flags & OPT_FILE) {
			printf("@files\n");
		}
		return EXIT_OK;
	}
	if (cur[0] == '-') {
		if (v)
			complete_opts(cur, v->opts);
		complete_opts(cur, cli_global_opts);
		if (!n)
			complete_word(cur, "--version");
	} else if (!n) {
		for (const struct cli_noun *i = cli_nouns; i->noun; i++)
			complete_word(cur, i->noun);
		complete_word(cur, "help");
	} else if (!v) {
		for (const struct cli_verb *i = n->verbs; i->verb; i++)
			complete_word(cur, i->verb);
	} else if (v->complete_vm && npos == 0) {
		complete_vms(c, cur);
	}
	return EXIT_OK;
}

/* Global options before the noun or between noun and verb. Returns the index of the next word,
 * or -(exit code + 1) when done (help, version, usage error). */
static int leading_opts(struct cli *c, const struct cli_noun *n, int i, int argc, char **argv)
{
	for (; i < argc && argv[i][0] == '-'; i++) {
		const char *w = argv[i];
		if (strcmp(w, "-h") == 0 || strcmp(w, "--help") == 0) {
			if (n)
				help_noun(stdout, n);
			else
				help_main(stdout);
			return -(EXIT_OK + 1);
		}
		if (!n && (strcmp(w, "-V") == 0 || strcmp(w, "--version") == 0)) {
			printf("berth %s\n", BERTH_VERSION);
			return -(EXIT_OK + 1);
		}
		char name[64];
		const char *eq = strchr(w, '=');
		size_t len = eq ? (size_t)(eq - w) : strlen(w);
		snprintf(name, sizeof(name), "%.*s", (int)len, w);
		const struct cli_opt *o =
		    strncmp(name, "--", 2) == 0 ? cli_find_opt(cli_global_opts, name + 2) : NULL;
		if (!o)
			return -(cli_usage(n, NULL, "unknown option '%s'", name) + 1);
		const char *val = NULL;
		if (o->flags & OPT_ARG) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return -(
				    cli_usage(n, NULL, "%s needs a value (%s)", name, o->metavar) +
				    1);
		} else if (eq) {
			return -(cli_usage(n, NULL, "%s takes no value", name) + 1);
		}
		int r = cli_global_opt(c, o, val);
		if (r)
			return -(r + 1);
	}
	return i;
}

static int run(struct cli *c, int argc, char **argv)
{
	const struct cli_noun *n;
	const struct cli_verb *v;
	struct cli_args a;
	int i, code;

	if ((i = leading_opts(c, NULL, 1, argc, argv)) < 0)
		return -i - 1;
	if (i == argc) {
		help_main(stderr);
		return EXIT_USAGE;
	}
	if (strcmp(argv[i], "help") == 0)
		return cmd_help(argc - i - 1, argv + i + 1);
	if (strcmp(argv[i], "__complete") == 0)
		return cmd_complete(c, argc - i - 1, argv + i + 1);
	if (!(n = find_noun(argv[i])))
		return cli_usage(NULL, NULL, "unknown command '%s'", argv[i]);
	if ((i = leading_opts(c, n, i + 1, argc, argv)) < 0)
		return -i - 1;
	if (i == argc) {
		help_noun(stderr, n);
		return EXIT_USAGE;
	}
	if (!(v = find_verb(n, argv[i])))
		return cli_usage(n, NULL, "unknown verb '%s' for %s", argv[i], n->noun);
	if ((code = args_parse(c, n, v, argc - i - 1, argv + i + 1, &a)))
		return code;
	if (a.help) {
		help_verb(stdout, n, v);
		return EXIT_OK;
	}
	if (c->host_given && c->socket_given)
		return cli_usage(n, v, "--socket and --host exclude each other");
	if (c->socket_given)
		c->conn.host = NULL; /* over $BERTH_HOST */
	cli_set_command(n, v);
	return v->run(c, v, &a);
}

int main(int argc, char **argv)
{
	struct cli c = {0};
	const char *env;

	if ((env = getenv("BERTH_SOCKET")) && *env)
		c.conn.socket_path = env;
	if ((env = getenv("BERTH_HOST")) && *env)
		c.conn.host = env;
	if ((env = getenv("BERTH_TOKEN")) && *env)
		c.conn.token = env;
	if ((env = getenv("BERTH_CACERT")) && *env)
		c.conn.cacert = env;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "berth: error: cannot initialise libcurl\n");
		return EXIT_ERROR;
	}
	int code = run(&c, argc, argv);
	client_close(c.client);
	curl_global_cleanup();
	if (fflush(stdout) != 0 && code == EXIT_OK)
		code = EXIT_ERROR;
	return code;
}
