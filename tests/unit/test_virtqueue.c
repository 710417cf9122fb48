/* Unit tests for vmm/virtqueue: split-ring setup checks, chain walking (direct and indirect) with
 * every malformed-chain rejection, the used ring, notification suppression, iovec copies. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/virtqueue.h"

/*
 * Guest RAM built by hand (no memfd, no KVM): region 0 = [0, 1 MiB), region 1 = [4 GiB, +64 KiB).
 * The rings live at fixed low addresses; buffers and indirect tables above them.
 */
#define LO_SIZE (1 * MiB)
#define HI_BASE (4 * GiB)
#define HI_SIZE (64 * KiB)
#define DESC 0x10000ULL
#define AVAIL 0x20000ULL
#define USED 0x30000ULL
#define BUF 0x40000ULL
#define TABLE 0x80000ULL

struct fixture {
	struct guest_mem m;
	struct virtqueue vq;
	struct vq_elem *e;
	uint16_t size;
	uint64_t desc, avail, used; /* where the current queue's rings are */
};

static int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	f.m.regions[0] = (struct mem_region){0, LO_SIZE, 0, calloc(1, LO_SIZE)};
	f.m.regions[1] = (struct mem_region){HI_BASE, HI_SIZE, LO_SIZE, calloc(1, HI_SIZE)};
	f.m.nregions = 2;
	f.m.fd = -1;
	f.e = calloc(1, sizeof(*f.e));
	assert_non_null(f.m.regions[0].host);
	assert_non_null(f.m.regions[1].host);
	assert_non_null(f.e);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->m.regions[0].host);
	free(f->m.regions[1].host);
	free(f->e);
	return 0;
}

static uint8_t *hva(struct fixture *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gpa_to_hva(&f->m, gpa, len);
	if (!p)
		fail_msg("test bug: 0x%llx+%llu is not RAM", (unsigned long long)gpa,
			 (unsigned long long)len);
	return p;
}

/* --- Ring layout (virtio 1.2, 2.7): what a driver would write. --- */

static void put_desc_at(struct fixture *f, uint64_t table, unsigned i, uint64_t addr, uint32_t len,
			uint16_t flags, uint16_t next)
{
	uint8_t *p = hva(f, table + 16ULL * i, 16);
	le_wr(p, addr, 8);
	le_wr(p + 8, len, 4);
	le_wr(p + 12, flags, 2);
	le_wr(p + 14, next, 2);
}

static void put_desc(struct fixture *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	put_desc_at(f, f->desc, i, addr, len, flags, next);
}

static void set_avail_flags(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail, 2), v, 2);
}

static uint16_t get_avail_idx(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->avail + 2, 2), 2);
}

static void set_avail_idx(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail + 2, 2), v, 2);
}

static void set_avail_ring(struct fixture *f, unsigned slot, uint16_t head)
{
	le_wr(hva(f, f->avail + 4 + 2ULL * slot, 2), head, 2);
}

static void set_used_event(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail + 4 + 2ULL * f->size, 2), v, 2);
}

/* Make head available: ring[idx % size] = head, then idx++. */
static void avail_add(struct fixture *f, uint16_t head)
{
	uint16_t idx = get_avail_idx(f);
	set_avail_ring(f, idx % f->size, head);
	set_avail_idx(f, (uint16_t)(idx + 1));
}

static uint16_t get_used_flags(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used, 2), 2);
}

static uint16_t get_used_idx(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used + 2, 2), 2);
}

static void get_used_elem(struct fixture *f, unsigned slot, uint32_t *id, uint32_t *len)
{
	const uint8_t *p = hva(f, f->used + 4 + 8ULL * slot, 8);
	*id = (uint32_t)le_rd(p, 4);
	*len = (uint32_t)le_rd(p + 4, 4);
}

static uint16_t get_avail_event(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used + 4 + 8ULL * f->size, 2), 2);
}

/* Clear the ring areas and enable a queue of this size at DESC/AVAIL/USED. */
static void ring_init(struct fixture *f, uint16_t size, bool indirect, bool event_idx)
{
	f->size = size;
	f->desc = DESC;
	f->avail = AVAIL;
	f->used = USED;
	memset(hva(f, DESC, AVAIL - DESC), 0, AVAIL - DESC);
	memset(hva(f, AVAIL, USED - AVAIL), 0, USED - AVAIL);
	memset(hva(f, USED, BUF - USED), 0, BUF - USED);
	int r = vq_init(&f->vq, &f->m, size, DESC, AVAIL, USED, indirect, event_idx);
	if (r)
		fail_msg("vq_init(size %u) = %d", size, r);
}

static int pop(struct fixture *f)
{
	const char *why = NULL;
	int r = vq_pop(&f->vq, f->e, &why);
	if (r < 0)
		fail_msg("vq_pop rejected a valid chain: %s", why ? why : "(no reason)");
	return r;
}

/* The chain must be rejected with -EINVAL and a reason containing `reason`. */
static void pop_fails(struct fixture *f, const char *reason)
{
	const char *why = NULL;
	int r = vq_pop(&f->vq, f->e, &why);
	if (r != -EINVAL)
		fail_msg("vq_pop = %d, expected -EINVAL (%s)", r, reason);
	assert_non_null(why);
	assert_true(why[0] != 0);
	assert_contains(why, reason);
}

/* --- vq_init --- */

static int init_at(struct fixture *f, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used)
{
	return vq_init(&f->vq, &f->m, size, desc, avail, used, false, false);
}

static void test_init_size(void **state)
{
	struct fixture *f = *state;
	static const uint16_t bad[] = {0, 3, 5, 6, 100, 255, 1023, 1025, 2048, 4096, 32768, 65535};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		if (init_at(f, bad[i], DESC, AVAIL, USED) != -EINVAL)
			fail_msg("vq_init accepted size %u", bad[i]);
	static const uint16_t good[] = {1, 2, 4, 8, 16, 128, 256, 512, 1024};
	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		if (init_at(f, good[i], DESC, AVAIL, USED) != 0)
			fail_msg("vq_init rejected size %u", good[i]);
		assert_int_equal(f->vq.size, good[i]);
		assert_int_equal(f->vq.last_avail, 0);
		assert_int_equal(f->vq.used_idx, 0);
		assert_ptr_equal(f->vq.desc, hva(f, DESC, 16));
		assert_ptr_equal(f->vq.avail, hva(f, AVAIL, 2));
		assert_ptr_equal(f->vq.used, hva(f, USED, 4));
	}
	assert_int_equal(vq_init(&f->vq, &f->m, 64, DESC, AVAIL, USED, true, true), 0);
	assert_true(f->vq.indirect);
	assert_true(f->vq.event_idx);
	assert_ptr_equal(f->vq.mem, &f->m);
}

static void test_init_alignment(void **state)
{
	struct fixture *f = *state;
	/* Descriptors 16, available ring 2, used ring 4. */
	for (unsigned a = 1; a < 16; a++)
		assert_int_equal(init_at(f, 8, DESC + a, AVAIL, USED), -EINVAL);
	assert_int_equal(init_at(f, 8, DESC + 16, AVAIL, USED), 0);
	assert_int_equal(init_at(f, 8, DESC, AVAIL + 1, USED), -EINVAL);
	assert_int_equal(init_at(f, 8, DESC, AVAIL + 2, USED), 0);
	for (unsigned a = 1; a < 4; a++)
		assert_int_equal(init_at(f, 8, DESC, AVAIL, USED + a), -EINVAL);
	assert_int_equal(init_at(f, 8, DESC, AVAIL, USED + 4), 0);
}

static void test_init_bounds(void **state)
{
	struct fixture *f = *state;
	const uint16_t n = 16;
	const uint64_t dlen = 16 * n, alen = 6 + 2 * n, ulen = 6 + 8 * n;
	/* Entirely outside RAM: the hole after region 0, the PCI hole, past region 1, the top. */
	static const uint64_t out[] = {LO_SIZE, 0xC0000000, HI_BASE - 0x1000, HI_BASE + HI_SIZE,
				       0xfffffffffffff000ULL};
	for (size_t i = 0; i < ARRAY_SIZE(out); i++) {
		assert_int_equal(init_at(f, n, out[i], AVAIL, USED), -EINVAL);
		assert_int_equal(init_at(f, n, DESC, out[i], USED), -EINVAL);
		assert_int_equal(init_at(f, n, DESC, AVAIL, out[i]), -EINVAL);
	}
	/* Right at the end of region 0 (every ring including used_event/avail_event), then one
	 * aligned step further so the ring crosses the end. */
	assert_int_equal(init_at(f, n, LO_SIZE - dlen, AVAIL, USED), 0);
	assert_int_equal(init_at(f, n, LO_SIZE - dlen + 16, AVAIL, USED), -EINVAL);
	assert_int_equal(init_at(f, n, DESC, LO_SIZE - alen, USED), 0);
	assert_int_equal(init_at(f, n, DESC, LO_SIZE - alen + 2, USED), -EINVAL);
	assert_int_equal(init_at(f, n, DESC, AVAIL, LO_SIZE - ulen - 2), 0);
	assert_int_equal(init_at(f, n, DESC, AVAIL, LO_SIZE - ulen + 2), -EINVAL);
	/* The same at the end of region 1. */
	const uint64_t hi_end = HI_BASE + HI_SIZE;
	assert_int_equal(init_at(f, n, hi_end - dlen, hi_end - dlen - alen, hi_end - dlen - 0x400),
			 0);
	assert_int_equal(init_at(f, n, hi_end - dlen + 16, AVAIL, USED), -EINVAL);
	/* Starting just before region 1 (in the hole) and running into it. */
	assert_int_equal(init_at(f, n, HI_BASE - 16, AVAIL, USED), -EINVAL);
	/* The largest queue just fits region 1 (16 KiB of descriptors). */
	assert_int_equal(
	    init_at(f, VQ_MAX_SIZE, hi_end - 16 * VQ_MAX_SIZE, HI_BASE, HI_BASE + 0x1000), 0);
	assert_int_equal(
	    init_at(f, VQ_MAX_SIZE, hi_end - 16 * VQ_MAX_SIZE + 16, HI_BASE, HI_BASE + 0x1000),
	    -EINVAL);
}

/* --- vq_pop: valid chains --- */

static void test_pop_empty(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, false);
	const char *why = NULL;
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 0);
	assert_null(why);
	/* A descriptor written but not made available is not seen. */
	put_desc(f, 0, BUF, 16, 0, 0);
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 0);
	set_avail_ring(f, 0, 0);
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 0);
	set_avail_idx(f, 1);
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 1);
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 0);
	assert_null(why);
}

static void test_pop_single(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, false);
	put_desc(f, 5, BUF + 0x100, 1234, 0, 0);
	avail_add(f, 5);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->head, 5);
	assert_int_equal(f->e->out_num, 1);
	assert_int_equal(f->e->in_num, 0);
	assert_int_equal(f->e->out_len, 1234);
	assert_int_equal(f->e->in_len, 0);
	assert_ptr_equal(f->e->out[0].iov_base, hva(f, BUF + 0x100, 1234));
	assert_int_equal(f->e->out[0].iov_len, 1234);
	assert_int_equal(f->vq.last_avail, 1);
	assert_int_equal(pop(f), 0);

	/* A single writable buffer, in high RAM. */
	put_desc(f, 2, HI_BASE + 0x2000, 512, VQ_DESC_F_WRITE, 7);
	avail_add(f, 2);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->head, 2);
	assert_int_equal(f->e->out_num, 0);
	assert_int_equal(f->e->in_num, 1);
	assert_int_equal(f->e->out_len, 0);
	assert_int_equal(f->e->in_len, 512);
	assert_ptr_equal(f->e->in[0].iov_base, hva(f, HI_BASE + 0x2000, 512));
}

static void test_pop_chain_rw(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 16, false, false);
	/* 3 -> 9 -> 0 -> 15 -> 4: two readable, three writable, out of table order. */
	put_desc(f, 3, BUF + 0x0000, 16, VQ_DESC_F_NEXT, 9);
	put_desc(f, 9, BUF + 0x1000, 100, VQ_DESC_F_NEXT, 0);
	put_desc(f, 0, BUF + 0x2000, 1, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 15);
	put_desc(f, 15, HI_BASE + 0x10, 4096, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 4);
	put_desc(f, 4, LO_SIZE - 7, 7, VQ_DESC_F_WRITE, 0); /* last 7 bytes of region 0 */
	avail_add(f, 3);
	assert_int_equal(pop(f), 1);
	struct vq_elem *e = f->e;
	assert_int_equal(e->head, 3);
	assert_int_equal(e->out_num, 2);
	assert_int_equal(e->in_num, 3);
	assert_int_equal(e->out_len, 116);
	assert_int_equal(e->in_len, 1 + 4096 + 7);
	assert_ptr_equal(e->out[0].iov_base, hva(f, BUF, 1));
	assert_int_equal(e->out[0].iov_len, 16);
	assert_ptr_equal(e->out[1].iov_base, hva(f, BUF + 0x1000, 1));
	assert_int_equal(e->out[1].iov_len, 100);
	assert_ptr_equal(e->in[0].iov_base, hva(f, BUF + 0x2000, 1));
	assert_int_equal(e->in[0].iov_len, 1);
	assert_ptr_equal(e->in[1].iov_base, hva(f, HI_BASE + 0x10, 1));
	assert_int_equal(e->in[1].iov_len, 4096);
	assert_ptr_equal(e->in[2].iov_base, hva(f, LO_SIZE - 7, 1));
	assert_int_equal(e->in[2].iov_len, 7);

	/* A second request reuses the element: counts start again from zero. */
	put_desc(f, 1, BUF + 0x3000, 8, 0, 0);
	avail_add(f, 1);
	assert_int_equal(pop(f), 1);
	assert_int_equal(e->head, 1);
	assert_int_equal(e->out_num, 1);
	assert_int_equal(e->in_num, 0);
	assert_int_equal(e->out_len, 8);
	assert_int_equal(e->in_len, 0);
}

static void test_pop_full_length(void **state)
{
	struct fixture *f = *state;
	/* A chain using every descriptor of the queue, in reverse order. */
	ring_init(f, 8, false, false);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF + 0x100 * i, 0x10 + i, i ? VQ_DESC_F_NEXT : 0,
			 (uint16_t)(i - 1));
	avail_add(f, 7);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, 8);
	assert_int_equal(f->e->out[7].iov_len, 0x10);
	assert_ptr_equal(f->e->out[0].iov_base, hva(f, BUF + 0x700, 1));

	/* The largest queue: VQ_MAX_SIZE descriptors, half readable, half writable. */
	ring_init(f, VQ_MAX_SIZE, false, false);
	for (unsigned i = 0; i < VQ_MAX_SIZE; i++) {
		uint16_t flags = (i + 1 < VQ_MAX_SIZE ? VQ_DESC_F_NEXT : 0) |
				 (i >= VQ_MAX_SIZE / 2 ? VQ_DESC_F_WRITE : 0);
		put_desc(f, i, BUF + 64ULL * i, 64, flags, (uint16_t)(i + 1));
	}
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, VQ_MAX_SIZE / 2);
	assert_int_equal(f->e->in_num, VQ_MAX_SIZE / 2);
	assert_int_equal(f->e->out_len, 64 * VQ_MAX_SIZE / 2);
	assert_int_equal(f->e->in_len, 64 * VQ_MAX_SIZE / 2);
	assert_ptr_equal(f->e->in[VQ_MAX_SIZE / 2 - 1].iov_base,
			 hva(f, BUF + 64ULL * (VQ_MAX_SIZE - 1), 64));

	/* Size 1: a one-descriptor queue. */
	ring_init(f, 1, false, false);
	put_desc(f, 0, BUF, 1, VQ_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->in_num, 1);
}

static void test_pop_zero_length(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, false);
	/* Zero-length buffers are skipped wherever they are, whatever their address. */
	put_desc(f, 0, 0xdead0000000ULL, 0, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF, 10, VQ_DESC_F_NEXT, 2);
	put_desc(f, 2, UINT64_MAX, 0, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 3);
	put_desc(f, 3, BUF + 0x100, 20, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 4);
	put_desc(f, 4, 0, 0, VQ_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, 1);
	assert_int_equal(f->e->in_num, 1);
	assert_int_equal(f->e->out_len, 10);
	assert_int_equal(f->e->in_len, 20);
	assert_ptr_equal(f->e->out[0].iov_base, hva(f, BUF, 1));
	assert_ptr_equal(f->e->in[0].iov_base, hva(f, BUF + 0x100, 1));

	/* A chain of nothing but an empty descriptor is a valid (empty) request. */
	put_desc(f, 5, BUF, 0, 0, 0);
	avail_add(f, 5);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->head, 5);
	assert_int_equal(f->e->out_num + f->e->in_num, 0);
}

static void test_pop_several(void **state)
{
	struct fixture *f = *state;
	/* The whole ring made available at once (idx moves by exactly size): all popped in order.
	 */
	ring_init(f, 4, false, false);
	for (unsigned i = 0; i < 4; i++) {
		put_desc(f, i, BUF + 0x1000 * i, 100 + i, 0, 0);
		avail_add(f, (uint16_t)(3 - i));
	}
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->e->head, 3 - i);
		assert_int_equal(f->e->out_len, 100 + 3 - i);
	}
	assert_int_equal(pop(f), 0);
	assert_int_equal(f->vq.last_avail, 4);
}

/* --- vq_pop: malformed chains --- */

static void test_pop_loops(void **state)
{
	struct fixture *f = *state;
	/* A -> B -> A. */
	ring_init(f, 8, false, false);
	put_desc(f, 2, BUF, 8, VQ_DESC_F_NEXT, 6);
	put_desc(f, 6, BUF, 8, VQ_DESC_F_NEXT, 2);
	avail_add(f, 2);
	pop_fails(f, "loop");

	/* A self-loop. */
	ring_init(f, 8, false, false);
	put_desc(f, 0, BUF, 8, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 0);
	avail_add(f, 0);
	pop_fails(f, "loop");

	/* Longer than the queue: 0 -> 1 -> 2 -> 3 -> 1 (every descriptor, then one more). */
	ring_init(f, 4, false, false);
	for (unsigned i = 0; i < 4; i++)
		put_desc(f, i, BUF + 16 * i, 16, VQ_DESC_F_NEXT, (uint16_t)(i == 3 ? 1 : i + 1));
	avail_add(f, 0);
	pop_fails(f, "loop");

	/* Zero-length descriptors still count towards the length limit. */
	ring_init(f, 4, false, false);
	put_desc(f, 0, 0, 0, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, 0, 0, VQ_DESC_F_NEXT, 0);
	avail_add(f, 0);
	pop_fails(f, "loop");
}

static void test_pop_bad_indices(void **state)
{
	struct fixture *f = *state;
	/* next >= size. */
	static const uint16_t bad_next[] = {8, 9, 255, 0xffff};
	for (size_t i = 0; i < ARRAY_SIZE(bad_next); i++) {
		ring_init(f, 8, false, false);
		put_desc(f, 0, BUF, 8, VQ_DESC_F_NEXT, 1);
		put_desc(f, 1, BUF, 8, VQ_DESC_F_NEXT, bad_next[i]);
		avail_add(f, 0);
		pop_fails(f, "next index out of range");
	}
	/* A next field without the NEXT flag is ignored. */
	ring_init(f, 8, false, false);
	put_desc(f, 0, BUF, 8, 0, 0xffff);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);

	/* head >= size. */
	static const uint16_t bad_head[] = {8, 1024, 0xffff};
	for (size_t i = 0; i < ARRAY_SIZE(bad_head); i++) {
		ring_init(f, 8, false, false);
		avail_add(f, bad_head[i]);
		pop_fails(f, "head index out of range");
	}

	/* The available index running ahead by more than the queue size. */
	static const uint16_t jumps[] = {9, 100, 0x8000, 0xffff};
	for (size_t i = 0; i < ARRAY_SIZE(jumps); i++) {
		ring_init(f, 8, false, false);
		put_desc(f, 0, BUF, 8, 0, 0);
		set_avail_idx(f, jumps[i]);
		pop_fails(f, "available index");
	}
	/* Exactly size is fine. */
	ring_init(f, 8, false, false);
	put_desc(f, 0, BUF, 8, 0, 0);
	set_avail_idx(f, 8);
	for (unsigned i = 0; i < 8; i++)
		assert_int_equal(pop(f), 1);
	assert_int_equal(pop(f), 0);
	/* After consuming, a jump is measured from last_avail. */
	set_avail_idx(f, 8 + 9);
	pop_fails(f, "available index");
}

static void test_pop_bad_buffers(void **state)
{
	struct fixture *f = *state;
	static const struct {
		uint64_t addr;
		uint32_t len;
	} bad[] = {
	    {LO_SIZE, 1},		     /* just past region 0 */
	    {LO_SIZE - 10, 11},		     /* crossing the end of region 0 */
	    {LO_SIZE - 1, 0xffffffff},	     /* far past */
	    {0x80000000, 4096},		     /* the gap */
	    {HI_BASE - 1, 2},		     /* running into region 1 from the gap */
	    {HI_BASE + HI_SIZE - 4, 5},	     /* crossing the end of region 1 */
	    {HI_BASE + HI_SIZE, 1},	     /* past region 1 */
	    {UINT64_MAX - 10, 100},	     /* wrapping the 64-bit space */
	    {UINT64_MAX, 1},		     /* the last byte of the space */
	    {0xfffffffffffff000ULL, 0x1000}, /* ending exactly at 2^64 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		/* Readable and writable; alone and as the second buffer of a chain. */
		for (unsigned k = 0; k < 4; k++) {
			ring_init(f, 8, false, false);
			uint16_t flags = k & 1 ? VQ_DESC_F_WRITE : 0;
			put_desc(f, 0, bad[i].addr, bad[i].len, flags, 0);
			put_desc(f, 1, BUF, 64, VQ_DESC_F_NEXT, 0);
			avail_add(f, k & 2 ? 1 : 0);
			pop_fails(f, "outside guest RAM");
		}
	}
	/* The last byte of each region is fine. */
	ring_init(f, 8, false, false);
	put_desc(f, 0, LO_SIZE - 10, 10, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, HI_BASE + HI_SIZE - 4, 4, VQ_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_len + f->e->in_len, 14);
}

static void test_pop_direction_order(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, false);
	put_desc(f, 0, BUF, 8, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF + 8, 8, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 2);
	put_desc(f, 2, BUF + 16, 8, 0, 0); /* readable after writable */
	avail_add(f, 0);
	pop_fails(f, "readable buffer after a writable");

	/* A zero-length readable one after a writable one carries nothing and is skipped. */
	ring_init(f, 8, false, false);
	put_desc(f, 0, BUF, 8, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF + 8, 8, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 2);
	put_desc(f, 2, BUF + 16, 0, 0, 0);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, 1);
	assert_int_equal(f->e->in_num, 1);
}

/* --- Indirect descriptors --- */

/* Head 0: an indirect descriptor for the table at TABLE (len bytes), made available. */
static void indirect_head(struct fixture *f, uint32_t len, uint16_t extra_flags)
{
	put_desc(f, 0, TABLE, len, VQ_DESC_F_INDIRECT | extra_flags, 0);
	avail_add(f, 0);
}

static void test_indirect_ok(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 4, true, false);
	/* The chain starts at entry 0 and need not follow table order: t0 -> t2 -> t3 -> t1, with
	 * a zero-length t3 and a writable t1. */
	put_desc_at(f, TABLE, 0, BUF + 0x100, 20, VQ_DESC_F_NEXT, 2);
	put_desc_at(f, TABLE, 2, BUF, 10, VQ_DESC_F_NEXT, 3);
	put_desc_at(f, TABLE, 3, BUF + 0x200, 0, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, HI_BASE, 30, VQ_DESC_F_WRITE, 0);
	indirect_head(f, 4 * 16, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->head, 0);
	assert_int_equal(f->e->out_num, 2);
	assert_int_equal(f->e->in_num, 1);
	assert_int_equal(f->e->out_len, 30);
	assert_int_equal(f->e->in_len, 30);
	assert_ptr_equal(f->e->out[0].iov_base, hva(f, BUF + 0x100, 1));
	assert_ptr_equal(f->e->out[1].iov_base, hva(f, BUF, 1));
	assert_ptr_equal(f->e->in[0].iov_base, hva(f, HI_BASE, 1));

	/* A table longer than the chain it holds; the unused entries are never looked at. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
	put_desc_at(f, TABLE, 1, UINT64_MAX, 10, VQ_DESC_F_INDIRECT, 0);
	indirect_head(f, 2 * 16, 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, 1);

	/* The device ignores the WRITE flag of the indirect descriptor itself. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
	indirect_head(f, 16, VQ_DESC_F_WRITE);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->out_num, 1);
	assert_int_equal(f->e->in_num, 0);

	/* A table of VQ_MAX_SIZE entries, all used, in a queue of size 2, in high RAM. */
	ring_init(f, 2, true, false);
	const uint64_t big = HI_BASE + HI_SIZE - 16 * VQ_MAX_SIZE;
	for (unsigned i = 0; i < VQ_MAX_SIZE; i++)
		put_desc_at(f, big, i, BUF + 4ULL * i, 4,
			    (i + 1 < VQ_MAX_SIZE ? VQ_DESC_F_NEXT : 0) |
				(i >= 1000 ? VQ_DESC_F_WRITE : 0),
			    (uint16_t)(i + 1));
	put_desc(f, 1, big, 16 * VQ_MAX_SIZE, VQ_DESC_F_INDIRECT, 0);
	avail_add(f, 1);
	assert_int_equal(pop(f), 1);
	assert_int_equal(f->e->head, 1);
	assert_int_equal(f->e->out_num, 1000);
	assert_int_equal(f->e->in_num, VQ_MAX_SIZE - 1000);
	assert_int_equal(f->e->out_len + f->e->in_len, 4 * VQ_MAX_SIZE);
}

static void test_indirect_errors(void **state)
{
	struct fixture *f = *state;

	/* Not negotiated. */
	ring_init(f, 4, false, false);
	put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
	indirect_head(f, 16, 0);
	pop_fails(f, "INDIRECT");

	/* Bad lengths: not a multiple of 16, zero, more than VQ_MAX_SIZE entries. */
	static const uint32_t bad_len[] = {1, 8, 15, 17, 40, 0, 16 * (VQ_MAX_SIZE + 1), 0xfffffff0};
	for (size_t i = 0; i < ARRAY_SIZE(bad_len); i++) {
		ring_init(f, 4, true, false);
		put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
		indirect_head(f, bad_len[i], 0);
		pop_fails(f, "indirect table length");
	}

	/* The table outside RAM, crossing the end of region 0, wrapping. */
	static const uint64_t bad_addr[] = {LO_SIZE, LO_SIZE - 16, 0x80000000, UINT64_MAX - 15};
	for (size_t i = 0; i < ARRAY_SIZE(bad_addr); i++) {
		ring_init(f, 4, true, false);
		put_desc(f, 0, bad_addr[i], 32, VQ_DESC_F_INDIRECT, 0);
		avail_add(f, 0);
		pop_fails(f, "outside guest RAM");
	}

	/* Nested: an indirect descriptor in the table (first or later). */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, TABLE + 0x100, 16, VQ_DESC_F_INDIRECT, 0);
	indirect_head(f, 16, 0);
	pop_fails(f, "nested");
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 16, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, TABLE + 0x100, 16, VQ_DESC_F_INDIRECT, 0);
	indirect_head(f, 32, 0);
	pop_fails(f, "nested");

	/* INDIRECT together with NEXT. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
	put_desc(f, 1, BUF, 10, 0, 0);
	indirect_head(f, 16, VQ_DESC_F_NEXT);
	pop_fails(f, "both INDIRECT and NEXT");

	/* A loop inside the table, and a self-loop. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF, 10, VQ_DESC_F_NEXT, 2);
	put_desc_at(f, TABLE, 2, BUF, 10, VQ_DESC_F_NEXT, 0);
	indirect_head(f, 3 * 16, 0);
	pop_fails(f, "loop in indirect");
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, VQ_DESC_F_NEXT, 0);
	indirect_head(f, 16, 0);
	pop_fails(f, "loop in indirect");

	/* next out of range for the table (though inside the queue size). */
	ring_init(f, 16, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF, 10, VQ_DESC_F_NEXT, 3);
	put_desc_at(f, TABLE, 3, BUF, 10, 0, 0);
	indirect_head(f, 3 * 16, 0);
	pop_fails(f, "indirect next index out of range");

	/* An indirect descriptor in the middle (or at the end) of a chain. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, 0, 0);
	put_desc(f, 2, BUF, 10, VQ_DESC_F_NEXT, 3);
	put_desc(f, 3, TABLE, 16, VQ_DESC_F_INDIRECT, 0);
	avail_add(f, 2);
	pop_fails(f, "indirect descriptor inside a chain");

	/* Buffers inside the table are checked like direct ones. */
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 1);
	put_desc_at(f, TABLE, 1, BUF, 10, 0, 0);
	indirect_head(f, 32, 0);
	pop_fails(f, "readable buffer after a writable");
	ring_init(f, 4, true, false);
	put_desc_at(f, TABLE, 0, BUF, 10, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, LO_SIZE - 4, 10, VQ_DESC_F_WRITE, 0);
	indirect_head(f, 32, 0);
	pop_fails(f, "outside guest RAM");
}

/* --- Used ring --- */

static void test_push(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 4, false, false);
	for (unsigned i = 0; i < 4; i++) {
		put_desc(f, i, BUF, 8, VQ_DESC_F_WRITE, 0);
		avail_add(f, (uint16_t)i);
	}
	/* Complete out of order; the used ring records the order of completion. */
	static const uint16_t order[] = {2, 0, 3, 1};
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(pop(f), 1);
	for (unsigned i = 0; i < 4; i++) {
		vq_push(&f->vq, order[i], 100 * i);
		assert_int_equal(get_used_idx(f), i + 1);
		assert_int_equal(f->vq.used_idx, i + 1);
	}
	for (unsigned i = 0; i < 4; i++) {
		uint32_t id, len;
		get_used_elem(f, i, &id, &len);
		assert_int_equal(id, order[i]);
		assert_int_equal(len, 100 * i);
	}
	/* The next round wraps around the ring slots. */
	vq_push(&f->vq, 3, 0xffffffff);
	uint32_t id, len;
	get_used_elem(f, 0, &id, &len);
	assert_int_equal(id, 3);
	assert_int_equal(len, 0xffffffff);
	assert_int_equal(get_used_idx(f), 5);
	/* The driver's fields around the ring are not touched. */
	assert_int_equal(get_used_flags(f), 0);
	assert_int_equal(get_avail_event(f), 0);
}

static void test_index_wrap(void **state)
{
	struct fixture *f = *state;
	/* Start near the 16-bit wrap: the device resumed a queue whose indices are at 65533. */
	ring_init(f, 8, false, false);
	f->vq.last_avail = f->vq.used_idx = 65533;
	set_avail_idx(f, 65533);
	for (unsigned i = 0; i < 8; i++)
		put_desc(f, i, BUF + 0x100 * i, 0x10 + i, VQ_DESC_F_WRITE, 0);
	const char *why = NULL;
	assert_int_equal(vq_pop(&f->vq, f->e, &why), 0);
	for (unsigned k = 0; k < 6; k++)
		avail_add(f, (uint16_t)k); /* idx 65533 .. 65535, 0 .. 2: idx is now 3 */
	assert_int_equal(get_avail_idx(f), 3);
	for (unsigned k = 0; k < 6; k++) {
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->e->head, k);
		assert_int_equal(f->e->in_len, 0x10 + k);
		vq_push(&f->vq, f->e->head, (uint32_t)k);
		uint16_t want = (uint16_t)(65533 + k + 1);
		assert_int_equal(get_used_idx(f), want);
		uint32_t id, len;
		get_used_elem(f, (uint16_t)(65533 + k) % 8, &id, &len);
		assert_int_equal(id, k);
		assert_int_equal(len, k);
	}
	assert_int_equal(f->vq.last_avail, 3);
	assert_int_equal(f->vq.used_idx, 3);
	assert_int_equal(pop(f), 0);
	/* The jump check is modular too: 3 -> 11 is exactly the size; then 4 -> 13 is too far. */
	set_avail_idx(f, 11);
	assert_int_equal(pop(f), 1);
	set_avail_idx(f, 13);
	pop_fails(f, "available index");

	/* All the way round through the API: 65536 requests. */
	ring_init(f, 2, false, false);
	put_desc(f, 0, BUF, 1, VQ_DESC_F_WRITE, 0);
	put_desc(f, 1, BUF, 1, VQ_DESC_F_WRITE, 0);
	for (unsigned n = 0; n < 65536 + 3; n++) {
		avail_add(f, (uint16_t)(n & 1));
		assert_int_equal(pop(f), 1);
		assert_int_equal(f->e->head, n & 1);
		vq_push(&f->vq, f->e->head, n);
	}
	assert_int_equal(get_used_idx(f), 3);
	uint32_t id, len;
	get_used_elem(f, 0, &id, &len);
	assert_int_equal(len, 65536 + 2);
}

/* --- Notification suppression --- */

static void push_n(struct fixture *f, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		vq_push(&f->vq, 0, 0);
}

static void test_need_interrupt_flags(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, false);
	push_n(f, 1);
	assert_true(vq_need_interrupt(&f->vq));
	assert_true(vq_need_interrupt(&f->vq));
	set_avail_flags(f, VQ_AVAIL_F_NO_INTERRUPT);
	push_n(f, 1);
	assert_false(vq_need_interrupt(&f->vq));
	/* used_event means nothing without EVENT_IDX. */
	set_used_event(f, 2);
	push_n(f, 1);
	assert_false(vq_need_interrupt(&f->vq));
	set_avail_flags(f, 0);
	assert_true(vq_need_interrupt(&f->vq));
	/* Other flag bits are not NO_INTERRUPT. */
	set_avail_flags(f, 0xfffe);
	assert_true(vq_need_interrupt(&f->vq));
}

static void test_need_interrupt_event_idx(void **state)
{
	struct fixture *f = *state;
	ring_init(f, 8, false, true);
	/* used_event far away, but the first call after enabling always interrupts. */
	set_used_event(f, 1000);
	push_n(f, 1);
	assert_true(vq_need_interrupt(&f->vq)); /* signalled at 1 */

	/* vring_need_event(used_event, new, old): interrupt iff used_event is in [old, new). */
	static const struct {
		unsigned push;
		uint16_t used_event;
		bool want;
	} steps[] = {
	    {1, 1, true},   /* old 1, new 2: 1 in [1,2) */
	    {1, 1, false},  /* old 2, new 3: already passed */
	    {1, 2, false},  /* old 3, new 4 */
	    {1, 4, true},   /* old 4, new 5 */
	    {3, 5, true},   /* old 5, new 8: first of the batch */
	    {3, 10, true},  /* old 8, new 11: last of the batch */
	    {3, 14, false}, /* old 11, new 14: not reached yet */
	    {3, 10, false}, /* old 14, new 17: long passed */
	    {0, 17, false}, /* nothing new */
	    {0, 16, false}, /* nothing new: (new - old) is 0 */
	};
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		set_used_event(f, steps[i].used_event);
		push_n(f, steps[i].push);
		if (vq_need_interrupt(&f->vq) != steps[i].want)
			fail_msg("step %zu: used_idx %u used_event %u: expected %s", i,
				 f->vq.used_idx, steps[i].used_event,
				 steps[i].want ? "an interrupt" : "none");
	}
	/* NO_INTERRUPT is ignored when EVENT_IDX is negotiated. */
	set_avail_flags(f, VQ_AVAIL_F_NO_INTERRUPT);
	set_used_event(f, f->vq.used_idx);
	push_n(f, 1);
	assert_true(vq_need_interrupt(&f->vq));

	/* Across the 16-bit wrap. */
	ring_init(f, 8, false, true);
	f->vq.used_idx = 65533;
	set_used_event(f, 0);
	assert_true(vq_need_interrupt(&f->vq)); /* first: signalled at 65533 */
	set_used_event(f, 65535);
	push_n(f, 4); /* new = 1 */
	assert_true(vq_need_interrupt(&f->vq));
	set_used_event(f, 0);
	push_n(f, 2); /* old 1, new 3: 0 was before old */
	assert_false(vq_need_interrupt(&f->vq));
	set_used_event(f, 3);
	push_n(f, 65535); /* old 3, new 2 (65535 later): 3 is in [3, 2 + 65536) */
	assert_true(vq_need_interrupt(&f->vq));
}

static void test_enable_notify(void **state)
{
	struct fixture *f = *state;
	/* Without EVENT_IDX: the NO_NOTIFY flag in the used ring. */
	ring_init(f, 8, false, false);
	assert_false(vq_enable_notify(&f->vq, false));
	assert_int_equal(get_used_flags(f), VQ_USED_F_NO_NOTIFY);
	assert_false(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_used_flags(f), 0);
	/* A buffer that arrived while notifications were off is reported on enable. */
	assert_false(vq_enable_notify(&f->vq, false));
	put_desc(f, 0, BUF, 8, 0, 0);
	avail_add(f, 0);
	assert_false(vq_enable_notify(&f->vq, false)); /* disabling never asks to re-poll */
	assert_true(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_used_flags(f), 0);
	assert_int_equal(pop(f), 1);
	assert_false(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_avail_event(f), 0); /* not used without EVENT_IDX */

	/* With EVENT_IDX: avail_event = last_avail, flags untouched. */
	ring_init(f, 8, false, true);
	for (unsigned i = 0; i < 3; i++)
		put_desc(f, i, BUF, 8, 0, 0);
	assert_false(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_avail_event(f), 0);
	for (unsigned i = 0; i < 3; i++)
		avail_add(f, (uint16_t)i);
	assert_true(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_avail_event(f), 0);
	assert_int_equal(pop(f), 1);
	assert_int_equal(pop(f), 1);
	assert_true(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_avail_event(f), 2);
	/* Disabling with EVENT_IDX leaves avail_event alone. */
	assert_int_equal(pop(f), 1);
	assert_false(vq_enable_notify(&f->vq, false));
	assert_int_equal(get_avail_event(f), 2);
	assert_false(vq_enable_notify(&f->vq, true));
	assert_int_equal(get_avail_event(f), 3);
	assert_int_equal(get_used_flags(f), 0);
}

/* --- iovec copies --- */

static void test_iov_copy(void **state)
{
	(void)state;
	uint8_t a[3], b[1], c[5], d[4];
	struct iovec iov[] = {{a, 3}, {b, 0}, {c, 5}, {d, 4}};
	uint8_t src[12], dst[16];
	for (unsigned i = 0; i < 12; i++)
		src[i] = (uint8_t)(0x10 + i);

	/* Scatter all 12 bytes, then gather them back. */
	memset(b, 0xee, sizeof(b));
	assert_int_equal(iov_from_buf(iov, 4, 0, src, 12), 12);
	assert_memory_equal(a, src, 3);
	assert_memory_equal(c, src + 3, 5);
	assert_memory_equal(d, src + 8, 4);
	assert_int_equal(b[0], 0xee); /* the empty iovec is skipped */
	memset(dst, 0, sizeof(dst));
	assert_int_equal(iov_to_buf(iov, 4, 0, dst, sizeof(dst)), 12);
	assert_memory_equal(dst, src, 12);

	/* Every skip offset with every length. */
	for (size_t skip = 0; skip <= 14; skip++) {
		for (size_t len = 0; len <= 14; len++) {
			size_t want = skip >= 12 ? 0 : (len < 12 - skip ? len : 12 - skip);
			memset(dst, 0xaa, sizeof(dst));
			if (iov_to_buf(iov, 4, skip, dst, len) != want)
				fail_msg("iov_to_buf(skip %zu, len %zu)", skip, len);
			if (want)
				assert_memory_equal(dst, src + skip, want);
			assert_int_equal(dst[want], 0xaa);
		}
	}
	for (size_t skip = 0; skip <= 14; skip++) {
		for (size_t len = 0; len <= 14; len++) {
			size_t want = skip >= 12 ? 0 : (len < 12 - skip ? len : 12 - skip);
			uint8_t pattern[16], back[12];
			memset(pattern, 0x55, sizeof(pattern));
			assert_int_equal(iov_from_buf(iov, 4, 0, src, 12), 12);
			if (iov_from_buf(iov, 4, skip, pattern, len) != want)
				fail_msg("iov_from_buf(skip %zu, len %zu)", skip, len);
			assert_int_equal(iov_to_buf(iov, 4, 0, back, 12), 12);
			for (size_t i = 0; i < 12; i++) {
				uint8_t w = i >= skip && i < skip + want ? 0x55 : src[i];
				if (back[i] != w)
					fail_msg("iov_from_buf(skip %zu, len %zu): byte %zu", skip,
						 len, i);
			}
		}
	}
	/* No iovecs at all. */
	assert_int_equal(iov_to_buf(iov, 0, 0, dst, 4), 0);
	assert_int_equal(iov_from_buf(iov, 0, 0, src, 4), 0);
	/* Only part of the array. */
	assert_int_equal(iov_to_buf(iov, 2, 1, dst, 16), 2);
	assert_memory_equal(dst, src + 1, 2);
}

static void test_iov_on_popped_chain(void **state)
{
	struct fixture *f = *state;
	/* A request read out of the readable buffers and a reply written into the writable ones. */
	ring_init(f, 8, false, false);
	memcpy(hva(f, BUF, 5), "hello", 5);
	memcpy(hva(f, BUF + 0x100, 6), " world", 6);
	put_desc(f, 0, BUF, 5, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF + 0x100, 6, VQ_DESC_F_NEXT, 2);
	put_desc(f, 2, BUF + 0x200, 4, VQ_DESC_F_NEXT | VQ_DESC_F_WRITE, 3);
	put_desc(f, 3, HI_BASE + 0x300, 8, VQ_DESC_F_WRITE, 0);
	avail_add(f, 0);
	assert_int_equal(pop(f), 1);
	char msg[16] = {0};
	assert_int_equal(iov_to_buf(f->e->out, f->e->out_num, 0, msg, sizeof(msg)), 11);
	assert_string_equal(msg, "hello world");
	assert_int_equal(iov_from_buf(f->e->in, f->e->in_num, 2, "ABCDEFGHIJKLMN", 14), 10);
	assert_memory_equal(hva(f, BUF + 0x202, 2), "AB", 2);
	assert_memory_equal(hva(f, HI_BASE + 0x300, 8), "CDEFGHIJ", 8);
	vq_push(&f->vq, f->e->head, 12);
	uint32_t id, len;
	get_used_elem(f, 0, &id, &len);
	assert_int_equal(id, 0);
	assert_int_equal(len, 12);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_init_size),
	    T(test_init_alignment),
	    T(test_init_bounds),
	    T(test_pop_empty),
	    T(test_pop_single),
	    T(test_pop_chain_rw),
	    T(test_pop_full_length),
	    T(test_pop_zero_length),
	    T(test_pop_several),
	    T(test_pop_loops),
	    T(test_pop_bad_indices),
	    T(test_pop_bad_buffers),
	    T(test_pop_direction_order),
	    T(test_indirect_ok),
	    T(test_indirect_errors),
	    T(test_push),
	    T(test_index_wrap),
	    T(test_need_interrupt_flags),
	    T(test_need_interrupt_event_idx),
	    T(test_enable_notify),
	    T(test_iov_copy),
	    T(test_iov_on_popped_chain),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
