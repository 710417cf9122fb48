/* One logging API for every berth program: levels, tagged with the VM name and the device. */
#ifndef BERTH_LOG_H
#define BERTH_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Set the process-wide prefix (usually the VM name) and the most verbose level printed. */
void log_init(const char *prog, const char *vm_name, enum log_level level);
void log_set_level(enum log_level level);
/* Journal format: each line starts with its syslog priority ("<3>" error … "<7>" debug), which
 * systemd's journal reads from a service's stderr; the program name is left to the journal. */
void log_set_journal(bool on);
enum log_level log_get_level(void);
/* Parse "error|warn|info|debug"; returns -EINVAL if unknown. */
int log_level_parse(const char *s, enum log_level *out);

/* tag names the component ("serial0", "cpu1", "boot"); may be NULL. */
void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *tag, const char *fmt, va_list ap);

#define log_err(tag, ...) log_msg(LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...) log_msg(LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...) log_msg(LOG_INFO, tag, __VA_ARGS__)
#define log_debug(tag, ...)                                                                        \
	do {                                                                                       \
		if (log_get_level() >= LOG_DEBUG)                                                  \
			log_msg(LOG_DEBUG, tag, __VA_ARGS__);                                      \
	} while (0)

#endif
