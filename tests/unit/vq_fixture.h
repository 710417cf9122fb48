/* Shared fixture for the virtqueue unit tests: hand-built guest RAM and split-ring helpers. */
#ifndef BERTH_TEST_VQ_FIXTURE_H
#define BERTH_TEST_VQ_FIXTURE_H

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

static inline int setup(void **state)
{
	static struct fixture f;
	memset(&f, 0, sizeof(f));
	/* One allocation, low part first, as guest_mem_init maps it (dirty tracking uses offsets).
	 */
	f.m.base = calloc(1, LO_SIZE + HI_SIZE);
	f.m.regions[0] = (struct mem_region){0, LO_SIZE, 0, f.m.base};
	f.m.regions[1] = (struct mem_region){HI_BASE, HI_SIZE, LO_SIZE, f.m.base + LO_SIZE};
	f.m.nregions = 2;
	f.m.fd = -1;
	f.m.layout.ram_bytes = LO_SIZE + HI_SIZE;
	f.e = calloc(1, sizeof(*f.e));
	assert_non_null(f.m.regions[0].host);
	assert_non_null(f.m.regions[1].host);
	assert_non_null(f.e);
	*state = &f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->m.base);
	free(f->m.dirty);
	free(f->e);
	return 0;
}

static inline uint8_t *hva(struct fixture *f, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gpa_to_hva(&f->m, gpa, len);
	if (!p)
		fail_msg("test bug: 0x%llx+%llu is not RAM", (unsigned long long)gpa,
			 (unsigned long long)len);
	return p;
}

/* --- Ring layout (virtio 1.2, 2.7): what a driver would write. --- */

static inline void put_desc_at(struct fixture *f, uint64_t table, unsigned i, uint64_t addr,
			       uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *p = hva(f, table + 16ULL * i, 16);
	le_wr(p, addr, 8);
	le_wr(p + 8, len, 4);
	le_wr(p + 12, flags, 2);
	le_wr(p + 14, next, 2);
}

static inline void put_desc(struct fixture *f, unsigned i, uint64_t addr, uint32_t len,
			    uint16_t flags, uint16_t next)
{
	put_desc_at(f, f->desc, i, addr, len, flags, next);
}

static inline void set_avail_flags(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail, 2), v, 2);
}

static inline uint16_t get_avail_idx(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->avail + 2, 2), 2);
}

static inline void set_avail_idx(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail + 2, 2), v, 2);
}

static inline void set_avail_ring(struct fixture *f, unsigned slot, uint16_t head)
{
	le_wr(hva(f, f->avail + 4 + 2ULL * slot, 2), head, 2);
}

static inline void set_used_event(struct fixture *f, uint16_t v)
{
	le_wr(hva(f, f->avail + 4 + 2ULL * f->size, 2), v, 2);
}

/* Make head available: ring[idx % size] = head, then idx++. */
static inline void avail_add(struct fixture *f, uint16_t head)
{
	uint16_t idx = get_avail_idx(f);
	set_avail_ring(f, idx % f->size, head);
	set_avail_idx(f, (uint16_t)(idx + 1));
}

static inline uint16_t get_used_flags(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used, 2), 2);
}

static inline uint16_t get_used_idx(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used + 2, 2), 2);
}

static inline void get_used_elem(struct fixture *f, unsigned slot, uint32_t *id, uint32_t *len)
{
	const uint8_t *p = hva(f, f->used + 4 + 8ULL * slot, 8);
	*id = (uint32_t)le_rd(p, 4);
	*len = (uint32_t)le_rd(p + 4, 4);
}

static inline uint16_t get_avail_event(struct fixture *f)
{
	return (uint16_t)le_rd(hva(f, f->used + 4 + 8ULL * f->size, 2), 2);
}

/* Clear the ring areas and enable a queue of this size at DESC/AVAIL/USED. */
static inline void ring_init(struct fixture *f, uint16_t size, bool indirect, bool event_idx)
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

static inline int pop(struct fixture *f)
{
	const char *why = NULL;
	int r = vq_pop(&f->vq, f->e, &why);
	if (r < 0)
		fail_msg("vq_pop rejected a valid chain: %s", why ? why : "(no reason)");
	return r;
}

/* The chain must be rejected with -EINVAL and a reason containing `reason`. */
static inline void pop_fails(struct fixture *f, const char *reason)
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

static inline int init_at(struct fixture *f, uint16_t size, uint64_t desc, uint64_t avail,
			  uint64_t used)
{
	return vq_init(&f->vq, &f->m, size, desc, avail, used, false, false);
}

#endif
