/* berth-img: create, inspect and check disk images (qcow2, raw); dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "img/img.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

static const struct img_cmd cmds[] = {
    {"create", "create a qcow2 or raw image, optionally on a backing file", cmd_create,
     cmd_create_usage},
    {"info", "show format, sizes, backing chain and features", cmd_info, cmd_info_usage},
    {"check", "check a qcow2 image's refcounts and tables (read-only)", cmd_check, cmd_check_usage},
};
#define NCMDS (sizeof(cmds) / sizeof(cmds[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"Usage: berth-img COMMAND [OPTIONS] ...\n"
		"       berth-img COMMAND --help\n\n"
		"Create, inspect and check disk images for berth (qcow2 versions 2 and 3, raw).\n\n"
		"Commands:\n");
	for (size_t i = 0; i < NCMDS; i++)
		fprintf(f, "  %-8s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(
	    f,
	    "\nOptions:\n"
	    "  -h, --help     show this help (or 'berth-img help COMMAND')\n"
	    "  -V, --version  show the version\n\n"
	    "Every command takes --json (or --output=json) for machine-readable output on\n"
	    "stdout; errors always go to stderr as 'berth-img: error: COMMAND: ...'.\n\n"
	    "Exit status:\n"
	    "  0  success (check: no problems found)\n"
	    "  1  error: bad arguments, unreadable or invalid image (check: could not complete)\n"
	    "  2  check: corruptions found\n"
	    "  3  check: leaked clusters found, no corruptions\n");
}

static const struct img_cmd *find(const char *name)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

int main(int argc, char **argv)
{
	log_init("berth-img", NULL, LOG_WARN); /* the block layer's own messages */
	if (argc < 2) {
		usage(stderr);
		return IMG_EXIT_ERROR;
	}
	const char *a = argv[1];
	if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
		usage(stdout);
		return IMG_EXIT_OK;
	}
	if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
		printf("berth-img %s\n", BERTH_VERSION);
		return IMG_EXIT_OK;
	}
	if (!strcmp(a, "help")) {
		if (argc < 3) {
			usage(stdout);
			return IMG_EXIT_OK;
		}
		const struct img_cmd *c = find(argv[2]);
		if (!c) {
			img_err(NULL, "help: unknown command '%s' (create, info, check)", argv[2]);
			return IMG_EXIT_ERROR;
		}
		c->usage(stdout);
		return IMG_EXIT_OK;
	}
	const struct img_cmd *c = find(a);
	if (!c) {
		img_err(NULL, "%s '%s' (commands: create, info, check; see 'berth-img --help')",
			a[0] == '-' ? "unknown option" : "unknown command", a);
		return IMG_EXIT_ERROR;
	}
	return c->run(argc - 1, argv + 1);
}
