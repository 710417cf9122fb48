/* Small helpers shared by berth programs: size parsing, file reading, checked arithmetic. */
#ifndef BERTH_UTIL_H
#define BERTH_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KiB (1024ULL)
#define MiB (1024ULL * KiB)
#define GiB (1024ULL * MiB)
#define ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uint64_t)(a)-1))
#define ALIGN_DOWN(x, a) ((x) & ~((uint64_t)(a)-1))

/* CLOCK_MONOTONIC in nanoseconds (for durations and deadlines). */
uint64_t mono_ns(void);
static inline int64_t mono_ms(void)
{
	return (int64_t)(mono_ns() / 1000000);
}

/* "512M", "2G", "65536K", "1073741824" (bytes). Suffixes K/M/G/T, optional "iB"/"B".
 * -EINVAL/-ERANGE. */
int parse_size(const char *s, uint64_t *out);
/* Decimal unsigned integer, whole string; -EINVAL or -ERANGE. */
int parse_u64(const char *s, uint64_t *out);
/* Format a byte count as "512M"/"4G" when exact, otherwise bytes. */
void format_size(uint64_t v, char *buf, size_t len);

/* Read a whole regular file (at most max bytes) into a malloc'd buffer; -errno, -EFBIG if larger.
 */
int read_file(const char *path, uint64_t max, uint8_t **data, size_t *len);

/* Write all of buf to fd, retrying on EINTR/short writes; -errno. */
int write_all(int fd, const void *buf, size_t len);

static inline bool add_overflows_u64(uint64_t a, uint64_t b)
{
	return a + b < a;
}

#endif
