/* Unit tests for vmm/virtqueue: the used ring, index wrap-around, notification suppression,
 * iovec copies, recording what the device wrote during a pre-copy. */
#include "vq_fixture.h"

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

static bool page_set(const uint64_t *bm, uint64_t gpa_page)
{
	return bm[gpa_page / 64] >> (gpa_page % 64) & 1;
}

/* While tracking, vq_push records the chain's device-writable buffers (direct and indirect, low
 * and high RAM) and the used ring; never the device-readable ones; nothing when not tracking. */
static void test_push_marks_written_pages(void **state)
{
	struct fixture *f = *state;
	uint64_t npages = (LO_SIZE + HI_SIZE) / 4096, hi0 = LO_SIZE / 4096;
	uint64_t *bm = calloc((npages + 63) / 64, 8);
	assert_non_null(bm);
	ring_init(f, 4, true, false);
	/* Chain 0: readable header page, a writable buffer over two pages, a writable byte. */
	put_desc(f, 0, BUF, 16, VQ_DESC_F_NEXT, 1);
	put_desc(f, 1, BUF + 0x3800, 0x1000, VQ_DESC_F_WRITE | VQ_DESC_F_NEXT, 2);
	put_desc(f, 2, HI_BASE + 0x2000, 1, VQ_DESC_F_WRITE, 0);
	/* Chain 1: indirect, one readable and one writable entry. */
	put_desc_at(f, TABLE, 0, BUF + 0x8000, 64, VQ_DESC_F_NEXT, 1);
	put_desc_at(f, TABLE, 1, BUF + 0x9000, 64, VQ_DESC_F_WRITE, 0);
	put_desc(f, 3, TABLE, 32, VQ_DESC_F_INDIRECT, 0);
	avail_add(f, 0);
	avail_add(f, 3);

	assert_int_equal(pop(f), 1);
	vq_push(&f->vq, f->e->head, 0x1001); /* not tracking: nothing recorded */
	assert_int_equal(guest_mem_track(&f->m, true), 0);
	guest_mem_take_dirty(&f->m, bm);
	for (uint64_t i = 0; i < (npages + 63) / 64; i++)
		assert_int_equal(bm[i], 0);

	vq_push(&f->vq, 0, 0x1001); /* the same chain again, now tracked */
	assert_int_equal(pop(f), 1);
	vq_push(&f->vq, f->e->head, 64);
	guest_mem_take_dirty(&f->m, bm);
	assert_true(page_set(bm, (BUF + 0x3000) / 4096));
	assert_true(page_set(bm, (BUF + 0x4000) / 4096));
	assert_true(page_set(bm, hi0 + 2));
	assert_true(page_set(bm, (BUF + 0x9000) / 4096));
	assert_true(page_set(bm, USED / 4096));
	assert_false(page_set(bm, BUF / 4096));
	assert_false(page_set(bm, (BUF + 0x5000) / 4096));
	assert_false(page_set(bm, (BUF + 0x8000) / 4096));
	assert_false(page_set(bm, TABLE / 4096));
	assert_false(page_set(bm, DESC / 4096));
	unsigned n = 0;
	for (uint64_t i = 0; i < (npages + 63) / 64; i++)
		n += (unsigned)__builtin_popcountll(bm[i]);
	assert_int_equal(n, 5);

	/* Taking clears the record; after tracking stops nothing is recorded. */
	memset(bm, 0, (npages + 63) / 64 * 8);
	guest_mem_take_dirty(&f->m, bm);
	assert_int_equal(bm[(BUF + 0x3000) / 4096 / 64], 0);
	assert_int_equal(guest_mem_track(&f->m, false), 0);
	vq_push(&f->vq, 0, 1);
	guest_mem_take_dirty(&f->m, bm);
	for (uint64_t i = 0; i < (npages + 63) / 64; i++)
		assert_int_equal(bm[i], 0);
	free(bm);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_push),
	    T(test_index_wrap),
	    T(test_need_interrupt_flags),
	    T(test_need_interrupt_event_idx),
	    T(test_enable_notify),
	    T(test_iov_copy),
	    T(test_iov_on_popped_chain),
	    T(test_push_marks_written_pages),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
