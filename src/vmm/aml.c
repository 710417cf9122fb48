/* A tiny AML emitter: enough of the ACPI 6 grammar for berth's DSDT. */
#include "vmm/aml.h"

#include <string.h>

void aml_init(struct aml *a, uint8_t *buf, size_t cap)
{
	a->buf = buf;
	a->len = 0;
	a->cap = cap;
	a->overflow = false;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (a->overflow || n > a->cap - a->len) {
		a->overflow = true;
		return;
	}
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t b)
{
	aml_bytes(a, &b, 1);
}

static void put_le(struct aml *a, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		aml_byte(a, (uint8_t)(v >> (8 * i)));
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0)
		aml_byte(a, 0x00); /* ZeroOp */
	else if (v == 1)
		aml_byte(a, 0x01); /* OneOp */
	else if (v <= 0xff)
		aml_byte(a, 0x0a), put_le(a, v, 1);
	else if (v <= 0xffff)
		aml_byte(a, 0x0b), put_le(a, v, 2);
	else if (v <= 0xffffffff)
		aml_byte(a, 0x0c), put_le(a, v, 4);
	else
		aml_byte(a, 0x0e), put_le(a, v, 8);
}

/* PkgLength counts itself plus what follows; 1 to 4 bytes. */
static void pkg_length(struct aml *a, size_t body)
{
	size_t total = body + 1;
	if (total <= 0x3f) {
		aml_byte(a, (uint8_t)total);
		return;
	}
	total = body + 2;
	if (total <= 0xfff) {
		aml_byte(a, (uint8_t)(0x40 | (total & 0xf)));
		aml_byte(a, (uint8_t)(total >> 4));
		return;
	}
	total = body + 3;
	if (total <= 0xfffff) {
		aml_byte(a, (uint8_t)(0x80 | (total & 0xf)));
		put_le(a, total >> 4, 2);
		return;
	}
	total = body + 4;
	aml_byte(a, (uint8_t)(0xc0 | (total & 0xf)));
	put_le(a, total >> 4, 3);
}

void aml_namestring(struct aml *a, const char *name)
{
	if (*name == '\\')
		aml_byte(a, '\\'), name++;
	char seg[4];
	size_t n = strlen(name);
	memset(seg, '_', 4);
	memcpy(seg, name, n < 4 ? n : 4);
	aml_bytes(a, seg, 4);
}

void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = (uint32_t)((id[0] - 0x40) & 0x1f) << 26 |
		     (uint32_t)((id[1] - 0x40) & 0x1f) << 21 |
		     (uint32_t)((id[2] - 0x40) & 0x1f) << 16;
	for (int i = 3; i < 7; i++) {
		char c = id[i];
		uint32_t h = (uint32_t)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
		v |= h << (4 * (6 - i));
	}
	/* Stored big-endian. */
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	aml_byte(a, 0x0c);
	aml_bytes(a, b, 4);
}

void aml_name(struct aml *a, const char *name, const struct aml *v)
{
	aml_byte(a, 0x08); /* NameOp */
	aml_namestring(a, name);
	aml_bytes(a, v->buf, v->len);
}

void aml_package(struct aml *a, unsigned n, const struct aml *elements)
{
	aml_byte(a, 0x12); /* PackageOp */
	pkg_length(a, 1 + elements->len);
	aml_byte(a, (uint8_t)n); /* NumElements */
	aml_bytes(a, elements->buf, elements->len);
	a->overflow |= elements->overflow;
}

void aml_package_ints(struct aml *a, const uint64_t *vals, unsigned n)
{
	uint8_t tmp[128];
	struct aml body;
	aml_init(&body, tmp, sizeof(tmp));
	for (unsigned i = 0; i < n; i++)
		aml_integer(&body, vals[i]);
	aml_package(a, n, &body);
}

static void named_block(struct aml *a, const uint8_t *op, size_t oplen, const char *name,
			const struct aml *body)
{
	size_t namelen = (*name == '\\') + 4;
	aml_bytes(a, op, oplen);
	pkg_length(a, namelen + body->len);
	aml_namestring(a, name);
	aml_bytes(a, body->buf, body->len);
	a->overflow |= body->overflow;
}

void aml_scope(struct aml *a, const char *name, const struct aml *body)
{
	static const uint8_t op[] = {0x10}; /* ScopeOp */
	named_block(a, op, sizeof(op), name, body);
}

void aml_device(struct aml *a, const char *name, const struct aml *body)
{
	static const uint8_t op[] = {0x5b, 0x82}; /* ExtOpPrefix DeviceOp */
	named_block(a, op, sizeof(op), name, body);
}

void aml_buffer(struct aml *a, const struct aml *raw)
{
	uint8_t tmp[16];
	struct aml size;
	aml_init(&size, tmp, sizeof(tmp));
	aml_integer(&size, raw->len);
	aml_byte(a, 0x11); /* BufferOp */
	pkg_length(a, size.len + raw->len);
	aml_bytes(a, size.buf, size.len);
	aml_bytes(a, raw->buf, raw->len);
	a->overflow |= raw->overflow;
}

void aml_res_io(struct aml *a, uint16_t base, uint8_t len)
{
	uint8_t d[8] = {
	    0x47, 0x01, (uint8_t)base, (uint8_t)(base >> 8), (uint8_t)base, (uint8_t)(base >> 8),
	    0x01, len};
	aml_bytes(a, d, sizeof(d));
}

void aml_res_irq(struct aml *a, unsigned irq)
{
	uint16_t mask = (uint16_t)(1u << irq);
	uint8_t d[3] = {0x22, (uint8_t)mask, (uint8_t)(mask >> 8)};
	aml_bytes(a, d, sizeof(d));
}

void aml_res_end(struct aml *a)
{
	uint8_t d[2] = {0x79, 0x00}; /* End Tag, checksum 0 = "treat as correct" */
	aml_bytes(a, d, sizeof(d));
}

/* Large resource: tag, 16-bit length, then the body. */
static void large_res(struct aml *a, uint8_t tag, const uint8_t *body, uint16_t len)
{
	uint8_t h[3] = {tag, (uint8_t)len, (uint8_t)(len >> 8)};
	aml_bytes(a, h, 3);
	aml_bytes(a, body, len);
}

#define GF_PRODUCER_FIXED 0x0c /* producer, positive decode, MinFixed, MaxFixed */

void aml_res_bus_numbers(struct aml *a, uint16_t min, uint16_t max)
{
	uint8_t b[13] = {2 /* bus numbers */, GF_PRODUCER_FIXED, 0};
	uint16_t f[5] = {0, min, max, 0, (uint16_t)(max - min + 1)};
	for (int i = 0; i < 5; i++)
		b[3 + 2 * i] = (uint8_t)f[i], b[4 + 2 * i] = (uint8_t)(f[i] >> 8);
	large_res(a, 0x88, b, sizeof(b));
}

static uint8_t mem_flags(bool prefetchable)
{
	return (uint8_t)(1 /* read/write */ | (prefetchable ? 3 : 0) << 1);
}

void aml_res_mem32(struct aml *a, uint32_t min, uint32_t max, bool prefetchable)
{
	uint8_t b[23] = {0 /* memory */, GF_PRODUCER_FIXED, mem_flags(prefetchable)};
	uint32_t f[5] = {0, min, max, 0, max - min + 1};
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 4; j++)
			b[3 + 4 * i + j] = (uint8_t)(f[i] >> (8 * j));
	large_res(a, 0x87, b, sizeof(b));
}

void aml_res_mem64(struct aml *a, uint64_t min, uint64_t max, bool prefetchable)
{
	uint8_t b[43] = {0 /* memory */, GF_PRODUCER_FIXED, mem_flags(prefetchable)};
	uint64_t f[5] = {0, min, max, 0, max - min + 1};
	for (int i = 0; i < 5; i++)
		for (int j = 0; j < 8; j++)
			b[3 + 8 * i + j] = (uint8_t)(f[i] >> (8 * j));
	large_res(a, 0x8a, b, sizeof(b));
}

void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len)
{
	uint8_t b[9] = {0 /* read-only */};
	for (int j = 0; j < 4; j++) {
		b[1 + j] = (uint8_t)(base >> (8 * j));
		b[5 + j] = (uint8_t)(len >> (8 * j));
	}
	large_res(a, 0x86, b, sizeof(b));
}
