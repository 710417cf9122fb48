/* Shared helpers for berth's cmocka unit tests: cmocka includes, substring asserts, temp files. */
#ifndef BERTH_TEST_UNIT_H
#define BERTH_TEST_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

/* Fail unless haystack contains needle; prints both so a failure explains itself. */
#define assert_contains(haystack, needle)                                                          \
	do {                                                                                       \
		const char *h_ = (haystack), *n_ = (needle);                                       \
		if (!h_ || !strstr(h_, n_))                                                        \
			fail_msg("expected \"%s\" to contain \"%s\"", h_ ? h_ : "(null)", n_);     \
	} while (0)

#define assert_not_contains(haystack, needle)                                                      \
	do {                                                                                       \
		const char *h_ = (haystack), *n_ = (needle);                                       \
		if (h_ && strstr(h_, n_))                                                          \
			fail_msg("expected \"%s\" not to contain \"%s\"", h_, n_);                 \
	} while (0)

/* Little-endian readers/writers for byte buffers (tables, headers). */
static inline uint64_t le_rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static inline void le_wr(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* Find needle in a byte buffer; returns the offset or -1. */
static inline long mem_find(const uint8_t *h, size_t hlen, const void *needle, size_t nlen)
{
	if (nlen > hlen)
		return -1;
	for (size_t i = 0; i + nlen <= hlen; i++)
		if (!memcmp(h + i, needle, nlen))
			return (long)i;
	return -1;
}

/* Write data to a new temp file and return its malloc'd path (caller unlinks and frees). */
static inline char *write_temp_file(const void *data, size_t len)
{
	char *path = strdup("/tmp/berth-unit-XXXXXX");
	assert_non_null(path);
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

#endif
