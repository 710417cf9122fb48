/* Helpers the berth-img subcommands share: error messages, option errors, human sizes, JSON
 * output, format probing and backing file paths. */
#include "img/img.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "img/qmeta.h"

void img_err(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "berth-img: error: %s%s", cmd ? cmd : "", cmd ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int img_opt_error(const char *cmd, int c, char **argv)
{
	const char *arg = argv[optind - 1];
	if (c == ':') {
		img_err(cmd, "option '%s' needs a value (see 'berth-img %s --help')", arg, cmd);
	} else if (optopt && !(arg[0] == '-' && arg[1] == '-')) {
		img_err(cmd, "unknown option '-%c' (see 'berth-img %s --help')", optopt, cmd);
	} else {
		const char *eq = strchr(arg, '=');
		img_err(cmd, "%s option '%.*s' (see 'berth-img %s --help')",
			optopt ? "option takes no value:" : "unknown",
			eq ? (int)(eq - arg) : (int)strlen(arg), arg, cmd);
	}
	return IMG_EXIT_ERROR;
}

int img_parse_output(const char *cmd, const char *arg, bool *json)
{
	if (!strcmp(arg, "json")) {
		*json = true;
		return 0;
	}
	if (!strcmp(arg, "human")) {
		*json = false;
		return 0;
	}
	img_err(cmd, "--output '%s': must be 'human' or 'json'", arg);
	return -1;
}

int img_parse_format(const char *cmd, const char *opt, const char *arg, enum blk_format *fmt)
{
	if (blk_format_parse(arg, fmt) == 0)
		return 0;
	img_err(cmd, "%s '%s': unknown format (raw, qcow2 or auto)", opt, arg);
	return -1;
}

void img_human_size(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	if (v < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)v);
		return;
	}
	unsigned u = 0;
	double d = (double)v;
	while (d >= 1024 && u < 6) {
		d /= 1024;
		u++;
	}
	/* Three significant digits, without trailing zeroes. */
	snprintf(buf, len, d >= 100 ? "%.0f" : d >= 10 ? "%.1f" : "%.2f", d);
	char *dot = strchr(buf, '.');
	if (dot) {
		char *e = buf + strlen(buf) - 1;
		while (e > dot && *e == '0')
			*e-- = 0;
		if (e == dot)
			*e = 0;
	}
	size_t n = strlen(buf);
	snprintf(buf + n, len - n, " %s", units[u]);
}

int img_print_json(json_t *j)
{
	char *s = j ? json_dumps(j, JSON_INDENT(4)) : NULL;
	json_decref(j);
	if (!s)
		return -1;
	puts(s);
	free(s);
	return 0;
}

int img_probe(int fd, enum blk_format *fmt)
{
	uint8_t head[8];
	int r = qm_pread_pad(fd, head, sizeof(head), 0);
	if (r)
		return r;
	*fmt = be32_get(head) == QCOW2_MAGIC ? BLK_FMT_QCOW2 : BLK_FMT_RAW;
	return 0;
}

int img_backing_path(const char *image, const char *backing, char *out, size_t len)
{
	const char *slash = strrchr(image, '/');
	int n;
	if (backing[0] == '/' || !slash)
		n = snprintf(out, len, "%s", backing);
	else
		n = snprintf(out, len, "%.*s/%s", (int)(slash - image), image, backing);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

const char *img_path_arg(const char *cmd, int argc, char **argv, int optind, bool more_ok)
{
	if (optind >= argc) {
		img_err(cmd, "PATH is missing (see 'berth-img %s --help')", cmd);
		return NULL;
	}
	if (!more_ok && optind + 1 < argc) {
		img_err(cmd, "unexpected argument '%s' after PATH", argv[optind + 1]);
		return NULL;
	}
	return argv[optind];
}
