/* berth CLI: the verb table, parsed arguments, exit codes and helpers shared by the commands. */
#ifndef BERTH_CLI_H
#define BERTH_CLI_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "cli/client.h"

/* Stable exit codes (docs/cli.md, berth(1)). */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_ERROR = 1,		  /* an API error not listed below, or a local failure */
	EXIT_USAGE = 2,		  /* bad command line: nothing was sent */
	EXIT_NOT_FOUND = 3,	  /* HTTP 404 */
	EXIT_CONFLICT = 4,	  /* HTTP 409 or 412: someone else got there first */
	EXIT_UNREACHABLE = 5,	  /* could not connect to berthd */
	EXIT_DENIED = 6,	  /* HTTP 403, or no permission on the socket */
	EXIT_UNAUTHENTICATED = 7, /* HTTP 401: no token, or an unknown, deleted or expired one */
};

#define OPT_ARG 0x1    /* takes a value */
#define OPT_REPEAT 0x2 /* may be given more than once; every value is kept */
#define OPT_FILE 0x4   /* the value is a file name (for completion) */

struct cli_opt {
	const char *name;    /* long name without "--" */
	unsigned flags;	     /* OPT_* */
	const char *metavar; /* for help, when OPT_ARG */
	const char *choices; /* space-separated values for completion, or NULL */
	const char *help;
};

#define CLI_MAX_POS 8
#define CLI_MAX_SET 128

/* The command line of one verb once parsed: positional words and the options given, in order. */
struct cli_args {
	int npos;
	const char *pos[CLI_MAX_POS];
	bool help; /* --help was given */
	int nset;
	struct {
		const struct cli_opt *opt;
		const char *val; /* NULL for a flag */
	} set[CLI_MAX_SET];
};

/* Global state of one run: how to reach berthd and how to print. */
struct cli {
	struct client_opts conn;
	struct client *client; /* opened on the first request */
	bool json;	       /* --json: print the API's JSON document instead of tables */
	bool socket_given;     /* --socket on the command line (conflicts with --host) */
	bool host_given;       /* --host on the command line */
};

struct cli_verb;
typedef int (*cli_handler)(struct cli *c, const struct cli_verb *v, const struct cli_args *a);

/* One row of the verb table: `berth NOUN VERB ARGS`. Help, parsing and completion come from it. */
struct cli_verb {
	const char *verb;
	cli_handler run;
	const char *synopsis; /* positional arguments, e.g. "NAME|UUID" */
	int min_pos, max_pos;
	const char *summary;	    /* one line for lists */
	const char *help;	    /* paragraph(s) for `--help` */
	const struct cli_opt *opts; /* terminated by {NULL} */
	bool complete_vm;	    /* the first positional argument is a VM (completion) */
};

struct cli_noun {
	const char *noun;
	const char *summary;
	const struct cli_verb *verbs; /* terminated by {NULL} */
};

/* The nouns, one file each (cmd_*.c). */
extern const struct cli_verb cli_host_verbs[];
extern const struct cli_verb cli_vm_verbs[];
extern const struct cli_verb cli_switch_verbs[];
extern const struct cli_verb cli_disk_verbs[];

extern const struct cli_verb cli_token_verbs[];

extern const struct cli_verb cli_checkpoint_verbs[];
extern const struct cli_noun cli_nouns[];
extern const struct cli_opt cli_global_opts[];

/* Arguments. */
const char *args_get(const struct cli_args *a, const char *name); /* the last value, or NULL */
bool args_has(const struct cli_args *a, const char *name);
/* Parse argv[0..argc) for verb v (its options and the global ones, anywhere; "--" ends
 * options). EXIT_OK or EXIT_USAGE (message printed). Global options update c. */
int args_parse(struct cli *c, const struct cli_noun *n, const struct cli_verb *v, int argc,
	       char **argv, struct cli_args *a);
/* Apply one global option (name without "--", value or NULL); EXIT_OK or EXIT_USAGE. */
int cli_global_opt(struct cli *c, const struct cli_opt *o, const char *val);
const struct cli_opt *cli_find_opt(const struct cli_opt *opts, const char *name);

/* Errors: print `berth: error: ...` on stderr and return code. */
void cli_set_command(const struct cli_noun *n, const struct cli_verb *v);
int cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A usage error naming the help to read (that of n and v, or without n of the command being
 * run); returns EXIT_USAGE. */
int cli_usage(const struct cli_noun *n, const struct cli_verb *v, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One API request. On a 2xx answer returns EXIT_OK with r filled (free with response_free);
 * otherwise prints the error (API body, or why berthd could not be reached) and returns its exit
 * code with r freed. body may be NULL; if_match NULL sends none. */
int cli_api(struct cli *c, const char *method, const char *path, const char *if_match,
	    const json_t *body, struct response *r);
/* As cli_api, but an HTTP error answer is not printed: r is kept (status set) for the caller,
 * who prints it with cli_report and frees it. Transport errors are printed (r->status 0). */
int cli_api_keep(struct cli *c, const char *method, const char *path, const char *if_match,
		 const json_t *body, struct response *r);
/* Print the API error in r (message, field, then hint if not NULL); returns its exit code. */
int cli_report(const struct response *r, const char *hint);
/* "/api/v1/vms/<id>" with id percent-encoded; -ENAMETOOLONG if it does not fit. */
int cli_path(char *buf, size_t len, const char *prefix, const char *id, const char *suffix);
/* Print a JSON document (one, indented) on stdout. */
void cli_print_json(const json_t *doc);
/* Ask on the terminal; true for y/yes. */
bool cli_confirm(const char *question);

/* Handlers shared by rows of cli_vm_verbs: the lifecycle verbs (vm_life.c: POST the action, then
 * follow its operation) and the console (console.c). */
int cli_vm_action(struct cli *c, const struct cli_verb *v, const struct cli_args *a);
int cli_vm_console(struct cli *c, const struct cli_verb *v, const struct cli_args *a);
/* Follow an operation (owned, replaced by its final version) until it has finished, with a
 * progress line "what: running 40%" on stderr when that is a terminal. EXIT_* */
int cli_op_follow(struct cli *c, const char *what, json_t **op);

#endif
