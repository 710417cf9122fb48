/* libFuzzer target: guest-written split-ring memory through vq_init/vq_pop/vq_push and the
 * notification helpers, checked against an independent walk of the same descriptors. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/virtqueue.h"

/*
 * Input:
 *   byte 0       queue size: 1 << (b % 9), so 1..256
 *   byte 1       bit 0 INDIRECT_DESC negotiated, bit 1 EVENT_IDX negotiated, bit 2 start with
 *                notifications disabled
 *   bytes 2..13  desc, avail, used ring addresses (LE u32 each, see gpa_of)
 *   byte 14      number of guest writes (0..16) interleaved with the pops
 *   then         4 bytes per write: LE u16 offset into region 0, LE u16 value
 *   the rest     guest RAM: region 0 (60 KiB at 0), then region 1 (4 KiB at 4 GiB)
 */
#define LO_SIZE (60u * 1024)
#define HI_BASE (1ULL << 32)
#define HI_SIZE (4u * 1024)
#define MAX_WRITES 16
#define MAX_POPS 64

static void check(int ok)
{
	if (!ok)
		abort();
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* bit 31 set: region 1 (and a little past it); else 0..128 KiB (past region 0 too). */
static uint64_t gpa_of(uint32_t v)
{
	return v & 0x80000000u ? HI_BASE + (v & 0x1fff) : v & 0x1ffff;
}

struct ram {
	uint8_t *lo, *hi;
	struct guest_mem m;
};

/* The reference's own bounds check: a host pointer for [gpa, gpa+len) or NULL. */
static uint8_t *ref_ptr(const struct ram *r, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	if (gpa < LO_SIZE && len <= LO_SIZE - gpa)
		return r->lo + gpa;
	if (gpa >= HI_BASE && gpa - HI_BASE < HI_SIZE && len <= HI_SIZE - (gpa - HI_BASE))
		return r->hi + (gpa - HI_BASE);
	return NULL;
}

static uint16_t ld16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

struct rdesc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static struct rdesc ld_desc(const uint8_t *p)
{
	struct rdesc d;
	d.addr = (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
	d.len = rd32(p + 8);
	d.flags = ld16(p + 12);
	d.next = ld16(p + 14);
	return d;
}

/* What the reference walk expects: the buffers in order, and where the writable ones begin. */
struct expect {
	unsigned n, first_in;
	struct iovec iov[2 * VQ_MAX_SIZE];
};

static bool ref_add(const struct ram *r, struct expect *x, const struct rdesc *d)
{
	if (d->len == 0)
		return true; /* nothing to transfer: skipped */
	uint8_t *p = ref_ptr(r, d->addr, d->len);
	if (!p)
		return false;
	bool w = d->flags & VQ_DESC_F_WRITE;
	if (!w && x->first_in != UINT32_MAX)
		return false; /* readable after writable */
	if (w && x->first_in == UINT32_MAX)
		x->first_in = x->n;
	check(x->n < 2 * VQ_MAX_SIZE);
	x->iov[x->n++] = (struct iovec){p, d->len};
	return true;
}

/* Walk the chain at head the way virtio 1.2 (2.7.5, 2.7.5.3) allows; false if malformed. */
static bool ref_walk(const struct ram *r, uint64_t desc, uint16_t size, bool indirect,
		     uint16_t head, struct expect *x)
{
	x->n = 0;
	x->first_in = UINT32_MAX;
	uint16_t i = head;
	for (unsigned count = 0;; count++) {
		if (count >= size)
			return false;
		struct rdesc d = ld_desc(ref_ptr(r, desc + 16ULL * i, 16));
		if (d.flags & VQ_DESC_F_INDIRECT) {
			if (!indirect || count || (d.flags & VQ_DESC_F_NEXT) || d.len == 0 ||
			    d.len % 16 || d.len / 16 > VQ_MAX_SIZE)
				return false;
			/* berth also wants the table 8-byte aligned (region bases are aligned). */
			const uint8_t *t = ref_ptr(r, d.addr, d.len);
			if (!t || (d.addr & 7))
				return false;
			unsigned n = d.len / 16, j = 0;
			for (unsigned c = 0;; c++) {
				if (c >= n)
					return false;
				struct rdesc e = ld_desc(t + 16 * j);
				if ((e.flags & VQ_DESC_F_INDIRECT) || !ref_add(r, x, &e))
					return false;
				if (!(e.flags & VQ_DESC_F_NEXT))
					return true;
				if (e.next >= n)
					return false;
				j = e.next;
			}
		}
		if (!ref_add(r, x, &d))
			return false;
		if (!(d.flags & VQ_DESC_F_NEXT))
			return true;
		if (d.next >= size)
			return false;
		i = d.next;
	}
}

static bool iov_in_ram(const struct ram *r, const struct iovec *v)
{
	const uint8_t *p = v->iov_base;
	if (!v->iov_len)
		return false;
	if (p >= r->lo && p < r->lo + LO_SIZE)
		return v->iov_len <= (size_t)(r->lo + LO_SIZE - p);
	if (p >= r->hi && p < r->hi + HI_SIZE)
		return v->iov_len <= (size_t)(r->hi + HI_SIZE - p);
	return false;
}

/* Everything a successful pop promises, and agreement with the reference walk. */
static void check_elem(const struct ram *r, const struct vq_elem *e, const struct expect *x,
		       uint16_t size, bool indirect)
{
	check(e->out_num <= VQ_MAX_SIZE && e->in_num <= VQ_MAX_SIZE);
	check(indirect || e->out_num + e->in_num <= size);
	uint64_t out = 0, in = 0;
	for (unsigned k = 0; k < e->out_num; k++) {
		check(iov_in_ram(r, &e->out[k]));
		out += e->out[k].iov_len;
	}
	for (unsigned k = 0; k < e->in_num; k++) {
		check(iov_in_ram(r, &e->in[k]));
		in += e->in[k].iov_len;
	}
	check(out == e->out_len && in == e->in_len);
	/* Same buffers, same order, readable ones first. */
	check(e->out_num + e->in_num == x->n);
	unsigned first_in = x->first_in == UINT32_MAX ? x->n : x->first_in;
	check(e->out_num == first_in);
	for (unsigned k = 0; k < x->n; k++) {
		const struct iovec *v = k < e->out_num ? &e->out[k] : &e->in[k - e->out_num];
		check(v->iov_base == x->iov[k].iov_base && v->iov_len == x->iov[k].iov_len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vq_elem e;
	static struct expect x;
	enum { HDR = 15 };
	if (size < HDR)
		return 0;
	uint16_t qsize = (uint16_t)(1u << (data[0] % 9));
	bool indirect = data[1] & 1, event_idx = data[1] & 2, quiet = data[1] & 4;
	uint64_t desc = gpa_of(rd32(data + 2)), avail = gpa_of(rd32(data + 6));
	uint64_t used = gpa_of(rd32(data + 10));
	unsigned nwrites = data[14] % (MAX_WRITES + 1);
	size_t wbytes = 4 * (size_t)nwrites;
	if (size < HDR + wbytes)
		return 0;
	const uint8_t *writes = data + HDR;
	const uint8_t *image = writes + wbytes;
	size_t ilen = size - HDR - wbytes;

	/* Exact-size heap buffers so the sanitizer sees any access past a region. */
	struct ram r;
	r.lo = calloc(1, LO_SIZE);
	r.hi = calloc(1, HI_SIZE);
	check(r.lo && r.hi);
	memcpy(r.lo, image, ilen < LO_SIZE ? ilen : LO_SIZE);
	if (ilen > LO_SIZE)
		memcpy(r.hi, image + LO_SIZE, ilen - LO_SIZE < HI_SIZE ? ilen - LO_SIZE : HI_SIZE);
	memset(&r.m, 0, sizeof(r.m));
	r.m.fd = -1;
	r.m.regions[0] = (struct mem_region){0, LO_SIZE, 0, r.lo};
	r.m.regions[1] = (struct mem_region){HI_BASE, HI_SIZE, LO_SIZE, r.hi};
	r.m.nregions = 2;

	struct virtqueue vq;
	int ret = vq_init(&vq, &r.m, qsize, desc, avail, used, indirect, event_idx);
	bool init_ok = !(desc & 15) && !(avail & 1) && !(used & 3) &&
		       ref_ptr(&r, desc, 16ULL * qsize) && ref_ptr(&r, avail, 6 + 2ULL * qsize) &&
		       ref_ptr(&r, used, 6 + 8ULL * qsize);
	check(ret == (init_ok ? 0 : -EINVAL));
	if (ret)
		goto out;
	uint8_t *av = ref_ptr(&r, avail, 6 + 2ULL * qsize);
	uint8_t *us = ref_ptr(&r, used, 6 + 8ULL * qsize);

	if (quiet) {
		check(!vq_enable_notify(&vq, false));
		if (!event_idx)
			check(ld16(us) == VQ_USED_F_NO_NOTIFY);
	}
	uint16_t last_avail = 0, used_idx = 0, signalled = 0;
	bool signalled_valid = false;
	unsigned w = 0;
	for (unsigned pops = 0; pops < MAX_POPS; pops++) {
		if (w < nwrites) {
			/* The guest changes something between two pops. */
			const uint8_t *op = writes + 4 * w++;
			unsigned off = ld16(op) % (LO_SIZE - 1);
			r.lo[off] = op[2];
			r.lo[off + 1] = op[3];
		}
		const char *why = NULL;
		uint16_t aidx = ld16(av + 2);
		int rc = vq_pop(&vq, &e, &why);
		if (aidx == last_avail) {
			check(rc == 0);
			/* Nothing new: re-enable notifications; true means buffers raced in. */
			bool again = vq_enable_notify(&vq, true);
			if (event_idx)
				check(ld16(us + 4 + 8 * (size_t)qsize) == last_avail);
			else
				check(ld16(us) == 0);
			check(again == (ld16(av + 2) != last_avail));
			if (!again && w >= nwrites)
				break;
			continue;
		}
		uint16_t head = ld16(av + 4 + 2 * (size_t)(last_avail % qsize));
		bool ok = (uint16_t)(aidx - last_avail) <= qsize && head < qsize &&
			  ref_walk(&r, desc, qsize, indirect, head, &x);
		if (rc < 0) {
			check(rc == -EINVAL && why && why[0]);
			check(!ok);
			/* A device would now be marked NEEDS_RESET; stop like it would. */
			break;
		}
		check(rc == 1 && ok);
		check(e.head == head);
		check_elem(&r, &e, &x, qsize, indirect);
		last_avail++;
		check(vq.last_avail == last_avail);

		/* Complete it: the used ring gets (head, len) at the old index, then the index. */
		uint32_t len = (uint32_t)(e.in_len > 0xffffffffu ? 0xffffffffu : e.in_len);
		if (e.in_num)
			memset(e.in[0].iov_base, 0xa5, e.in[0].iov_len);
		vq_push(&vq, e.head, len);
		const uint8_t *el = us + 4 + 8 * (size_t)(used_idx % qsize);
		check(rd32(el) == e.head && rd32(el + 4) == len);
		used_idx++;
		check(ld16(us + 2) == used_idx && vq.used_idx == used_idx);

		bool need = vq_need_interrupt(&vq);
		if (!event_idx) {
			check(need == !(ld16(av) & VQ_AVAIL_F_NO_INTERRUPT));
		} else {
			uint16_t ev = ld16(av + 4 + 2 * (size_t)qsize);
			bool want = !signalled_valid || (uint16_t)(used_idx - ev - 1) <
							    (uint16_t)(used_idx - signalled);
			check(need == want);
			signalled = used_idx;
			signalled_valid = true;
		}
	}
out:
	free(r.lo);
	free(r.hi);
	return 0;
}
