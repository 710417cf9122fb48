/* virtio_blk.c — virtio-blk bring-up: features, device config, queues, DMA memory (ring 0). */
#include "guest.h"
#include "virtio_blk.h"
#include "x86.h"

#define MIB (1ULL << 20)
#define DMA_FLOOR (16 * MIB)		/* keep clear of the kernel image and low memory */
#define DMA_CEIL (64ULL << 30)		/* what paging.c identity-maps */
#define OWN_SEG_BYTES (4 * 1024 * 1024) /* our cap on one data descriptor without SIZE_MAX */

extern char __kernel_end[];

/* ---- DMA memory: a bump allocator over RAM (identity-mapped, user-accessible) ---------------- */

static uint64_t dma_next;

void dma_reset(void)
{
	dma_next = 0;
}

/* First address >= a where [a, a+size) avoids every ACPI table; 0 if a table moved it past end. */
static uint64_t skip_tables(uint64_t a, uint64_t size, uint64_t end)
{
	int moved = 1;

	while (moved) {
		moved = 0;
		for (uint32_t i = 0; i < acpi.ntables; i++) {
			const struct mem_range *t = &acpi.tables[i];

			if (t->start < a + size && t->end > a) {
				a = (t->end + 4095) & ~4095ULL;
				moved = 1;
			}
		}
	}
	return a + size <= end ? a : 0;
}

/* `size` bytes, 4 KiB-aligned, in RAM above the kernel; NULL when RAM runs out. The memory is not
 * cleared (ring 0 would do that at ~1 us per store). */
void *dma_alloc(uint64_t size)
{
	uint64_t floor = ((uint64_t)__kernel_end + MIB - 1) & ~(MIB - 1);

	if (floor < DMA_FLOOR)
		floor = DMA_FLOOR;
	if (dma_next < floor)
		dma_next = floor;
	size = (size + 4095) & ~4095ULL;
	for (uint32_t i = 0; i < bootinfo.nmemmap; i++) {
		const struct memmap_entry *m = &bootinfo.memmap[i];
		uint64_t a = (m->addr + 4095) & ~4095ULL, end = m->addr + m->size;

		if (m->type != 1)
			continue;
		if (end > DMA_CEIL)
			end = DMA_CEIL;
		if (a < dma_next)
			a = dma_next;
		if (a >= end)
			continue;
		a = skip_tables(a, size, end);
		if (a) {
			dma_next = a + size;
			return (void *)a;
		}
	}
	return NULL;
}

/* ---- device configuration ------------------------------------------------------------------- */

uint64_t blk_want_features(void)
{
	return VIRTIO_F_VERSION_1 | VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX |
	       VIRTIO_BLK_F_SIZE_MAX | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_RO |
	       VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_TOPOLOGY |
	       VIRTIO_BLK_F_MQ | VIRTIO_BLK_F_DISCARD | VIRTIO_BLK_F_WRITE_ZEROES;
}

static uint8_t cfg_gen(const struct blk_dev *b)
{
	return *(volatile uint8_t *)(b->v.common + VCOMMON_CFGGEN);
}

static uint32_t cfg32(const struct blk_dev *b, unsigned int off)
{
	return off + 4 <= b->v.devcfg_len ? *(volatile uint32_t *)(b->v.devcfg + off) : 0;
}

static uint16_t cfg16(const struct blk_dev *b, unsigned int off)
{
	return off + 2 <= b->v.devcfg_len ? *(volatile uint16_t *)(b->v.devcfg + off) : 0;
}

static uint8_t cfg8(const struct blk_dev *b, unsigned int off)
{
	return off + 1 <= b->v.devcfg_len ? *(volatile uint8_t *)(b->v.devcfg + off) : 0;
}

/* struct virtio_blk_config (virtio 1.2, 5.2.4); fields of features not negotiated stay 0. The
 * 64-bit capacity takes two reads, so the whole set is re-read until config_generation holds
 * still around it (4.1.4.3). */
static int read_config(struct blk_dev *b)
{
	struct blk_config *c = &b->cfg;
	uint64_t f = b->v.features;
	uint8_t before, after;
	uint32_t tries = 0;

	do {
		if (tries++ > 100)
			return virtio_fail(&b->v, "config-generation-unstable");
		before = cfg_gen(b);
		memset(c, 0, sizeof(*c));
		c->capacity = cfg32(b, 0) | (uint64_t)cfg32(b, 4) << 32;
		if (f & VIRTIO_BLK_F_SIZE_MAX)
			c->size_max = cfg32(b, 8);
		if (f & VIRTIO_BLK_F_SEG_MAX)
			c->seg_max = cfg32(b, 12);
		if (f & VIRTIO_BLK_F_BLK_SIZE)
			c->blk_size = cfg32(b, 20);
		if (f & VIRTIO_BLK_F_TOPOLOGY) {
			c->physical_block_exp = cfg8(b, 24);
			c->alignment_offset = cfg8(b, 25);
			c->min_io_size = cfg16(b, 26);
			c->opt_io_size = cfg32(b, 28);
		}
		c->writeback = cfg8(b, 32);
		if (f & VIRTIO_BLK_F_MQ)
			c->num_queues = cfg16(b, 34);
		if (f & VIRTIO_BLK_F_DISCARD) {
			c->max_discard_sectors = cfg32(b, 36);
			c->max_discard_seg = cfg32(b, 40);
			c->discard_sector_alignment = cfg32(b, 44);
		}
		if (f & VIRTIO_BLK_F_WRITE_ZEROES) {
			c->max_write_zeroes_sectors = cfg32(b, 48);
			c->max_write_zeroes_seg = cfg32(b, 52);
			c->write_zeroes_may_unmap = cfg8(b, 56);
		}
		after = cfg_gen(b);
	} while (before != after);
	c->generation_retries = tries - 1;
	if (b->v.devcfg_len < 8)
		return virtio_fail(&b->v, "device-config-too-small");
	return 0;
}

/* Descriptors per request: header, data segments, [discard/write-zeroes payload], status. Without
 * SEG_MAX the device promises one data segment (as Linux assumes); without SIZE_MAX a segment may
 * be as long as we like. */
static void set_limits(struct blk_dev *b)
{
	struct blk_limits *l = &b->lim;

	l->indirect = !!(b->v.features & VIRTIO_F_INDIRECT_DESC);
	l->max_segs = b->cfg.seg_max ? b->cfg.seg_max : 1;
	if (l->max_segs > VQ_INDIRECT_MAX - 3)
		l->max_segs = VQ_INDIRECT_MAX - 3;
	l->seg_bytes = OWN_SEG_BYTES;
	if (b->cfg.size_max && b->cfg.size_max < l->seg_bytes)
		l->seg_bytes = b->cfg.size_max & ~(BLK_SECTOR - 1);
	if (l->seg_bytes < 4096)
		l->seg_bytes = 4096; /* a device that cannot take one page per segment: ignore it */
}

/* Find the first virtio-blk function, negotiate, read its config, set up min(MQ queues, max_queues)
 * queues polled from ring 3 (no interrupt vectors) and set DRIVER_OK. */
int blk_open(struct blk_dev *b, unsigned int max_queues)
{
	uint32_t nq = 1;

	memset(b, 0, sizeof(*b));
	if (virtio_find(&b->v, VIRTIO_TYPE_BLK, 0) < 0)
		return -1;
	if (virtio_negotiate(&b->v, blk_want_features(), VIRTIO_F_VERSION_1) < 0)
		return -1;
	if (read_config(b) < 0)
		goto fail;
	set_limits(b);
	if ((b->v.features & VIRTIO_BLK_F_MQ) && b->cfg.num_queues > 1)
		nq = b->cfg.num_queues;
	if (nq > max_queues)
		nq = max_queues;
	if (nq > BLK_MAX_WQ)
		nq = BLK_MAX_WQ;
	if (nq > b->v.num_queues)
		nq = b->v.num_queues;
	if (!nq) {
		virtio_fail(&b->v, "no-queues");
		goto fail;
	}
	virtio_set_config_vector(&b->v, VIRTIO_NO_VECTOR, NULL);
	for (uint32_t i = 0; i < nq; i++) {
		if (virtio_setup_queue(&b->v, i, VQ_MAX_SIZE, VIRTIO_NO_VECTOR) < 0)
			goto fail;
		vq_irq_enable(b->v.vq[i], 0);
	}
	b->nq = nq;
	if (virtio_driver_ok(&b->v) < 0)
		goto fail;
	return 0;
fail:
	virtio_reset(&b->v);
	return -1;
}
