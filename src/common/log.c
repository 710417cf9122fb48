/* Logging to stderr: "<prog> <vm> <tag>: <level>: message", one write per line so threads don't
 * interleave. */
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char g_prog[32] = "berth";
static char g_vm[64];
static enum log_level g_level = LOG_INFO;
static bool g_journal;

void log_init(const char *prog, const char *vm_name, enum log_level level)
{
	if (prog)
		snprintf(g_prog, sizeof(g_prog), "%s", prog);
	if (vm_name)
		snprintf(g_vm, sizeof(g_vm), "%s", vm_name);
	g_level = level;
}

void log_set_level(enum log_level level)
{
	g_level = level;
}

void log_set_journal(bool on)
{
	g_journal = on;
}

enum log_level log_get_level(void)
{
	return g_level;
}

int log_level_parse(const char *s, enum log_level *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_vmsg(enum log_level level, const char *tag, const char *fmt, va_list ap)
{
	static const char *const lvl[] = {"error", "warning", "info", "debug"};
	char line[2048];
	int n;

	if (level > g_level)
		return;
	static const char *const prio[] = {"<3>", "<4>", "<6>", "<7>"};
	if (g_journal)
		n = snprintf(line, sizeof(line), "%s%s%s%s%s", prio[level], g_vm,
			     g_vm[0] ? (tag ? " " : ": ") : "", tag ? tag : "", tag ? ": " : "");
	else
		n = snprintf(line, sizeof(line), "%s%s%s%s%s: %s: ", g_prog, g_vm[0] ? " " : "",
			     g_vm, tag ? " " : "", tag ? tag : "", lvl[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = 0;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	if (m < 0)
		m = 0;
	size_t len = (size_t)n + (size_t)m;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, tag, fmt, ap);
	va_end(ap);
}
