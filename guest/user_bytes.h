/* Byte helpers for ring-3 code (no libc there): copy, zero, compare, big-endian loads and stores.
 */
#ifndef BERTH_GUEST_USER_BYTES_H
#define BERTH_GUEST_USER_BYTES_H

#include <stdint.h>

static inline void copy(void *d, const void *s, uint32_t n)
{
	uint8_t *dp = d;
	const uint8_t *sp = s;

	while (n--)
		*dp++ = *sp++;
}

static inline void zero(void *d, uint32_t n)
{
	uint8_t *dp = d;

	while (n--)
		*dp++ = 0;
}

static inline int same(const void *a, const void *b, uint32_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--)
		if (*x++ != *y++)
			return 0;
	return 1;
}

static inline uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

#endif
