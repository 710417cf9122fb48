/* Unit tests for vmm/virtqueue: split-ring setup checks and chain walking (direct and indirect)
 * with every malformed-chain rejection. */
#include "vq_fixture.h"

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

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_init_size),		 T(test_init_alignment),  T(test_init_bounds),
	    T(test_pop_empty),		 T(test_pop_single),	  T(test_pop_chain_rw),
	    T(test_pop_full_length),	 T(test_pop_zero_length), T(test_pop_several),
	    T(test_pop_loops),		 T(test_pop_bad_indices), T(test_pop_bad_buffers),
	    T(test_pop_direction_order), T(test_indirect_ok),	  T(test_indirect_errors),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
