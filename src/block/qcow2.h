/* qcow2 internals shared by the driver (qcow2.c), its metadata layer (qcow2_meta.c) and image
 * creation (qcow2_create.c). On-disk format: QEMU's docs/interop/qcow2.txt, version 2 and 3. */
#ifndef BERTH_QCOW2_H
#define BERTH_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

#define QCOW2_MAGIC 0x514649fbu /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_MAX_L1_BYTES (32u << 20)	   /* QEMU's limit too */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20) /* likewise */
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_OFFSET (1ULL << 56) /* host offsets are bits 9..55 */

/* Incompatible / compatible / autoclear feature bits. */
#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ULL << 0)
#define QCOW2_AUTOCLEAR_BITMAPS (1ULL << 0)

/* Header extension types. */
#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857u
#define QCOW2_EXT_BITMAPS 0x23852875u

/* Table entries. */
#define QCOW2_OFLAG_COPIED (1ULL << 63)
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO (1ULL << 0)
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL

/* A cache of metadata clusters (L2 tables or refcount blocks), indexed by table position. */
struct qcow2_cached {
	uint64_t idx;	 /* L1 index (L2 tables) or reftable index (refcount blocks) */
	uint64_t off;	 /* where the cluster lives in the image file */
	uint8_t *data;	 /* one cluster, aligned for O_DIRECT */
	int32_t prev, next; /* LRU list (valid entries, most recent first) or free list (next) */
	bool dirty;
	bool valid;
};

struct qcow2_cache {
	struct qcow2_cached *e;
	unsigned n;	 /* capacity in clusters */
	int32_t *slot;	 /* table index -> entry, -1 if not cached */
	uint64_t nslot;
	int32_t head, tail; /* most and least recently used valid entry, -1 if none */
	int32_t free;	    /* first entry never filled or given back, -1 if none */
};

struct qcow2 {
	struct blk *b;
	int fd;
	uint8_t *header; /* the first cluster as read (extensions kept verbatim) */
	uint32_t version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits; /* log2 entries per L2 table */
	uint64_t incompat, compat, autoclear;
	uint32_t header_length;
	unsigned refcount_order; /* refcount width is 1 << order bits */
	unsigned rb_bits;	 /* log2 entries per refcount block */
	uint64_t refcount_max;

	uint64_t *l1; /* host-endian copy, l1_alloc entries (whole clusters) */
	uint32_t l1_size;
	uint64_t l1_alloc;
	uint64_t l1_offset;
	bool l1_dirty;

	uint64_t *reftable; /* host-endian copy, reftable_entries entries */
	uint64_t reftable_entries;
	uint64_t reftable_offset;
	bool reftable_dirty;

	struct qcow2_cache l2c, rbc;

	uint64_t next_free; /* allocation frontier (cluster index); freed clusters are not reused */
	uint64_t *meta;	    /* sorted cluster indices holding metadata, for overlap checks */
	uint64_t nmeta, meta_cap;
	bool corrupt; /* a metadata problem was found while running: writes refused */
	bool readonly;
	bool snapshots; /* internal snapshots present: refcounts may exceed 1 */

	char backing_name[QCOW2_MAX_BACKING_NAME + 1];
	char backing_fmt[32];
	uint8_t *buf; /* one aligned scratch cluster */

	/* Persistent dirty bitmaps (header extension QCOW2_EXT_BITMAPS). */
	uint32_t bm_ext_pos; /* offset of the extension's data in the header cluster, 0 if none */
	uint32_t nbitmaps;
	uint64_t bmdir_offset, bmdir_size;
	struct qcow2_bitmap *bitmaps;
};

#define QCOW2_BME_IN_USE (1u << 0)
#define QCOW2_BME_AUTO (1u << 1)
#define QCOW2_BME_EXTRA_DATA_COMPATIBLE (1u << 2)
#define QCOW2_MAX_BITMAPS 65535
#define QCOW2_MAX_BITMAP_DIR_BYTES (64u << 20)
#define QCOW2_MAX_BITMAP_MEM (1ULL << 30) /* all recorded bitmaps' bits together */

struct qcow2_bitmap {
	uint8_t *entry; /* the directory entry as read (header, extra data, name) */
	uint32_t entry_len;
	uint64_t table_offset;
	uint32_t table_size;
	uint32_t flags;
	unsigned granularity_bits;
	char name[QCOW2_MAX_BACKING_NAME + 1];
	uint64_t *table; /* the bitmap table as read (host order), table_size entries */
	uint8_t *bits;	 /* tracked bitmaps: one bit per granule, LSB first */
	uint64_t nbits;
	bool tracking; /* auto and consistent: berth records writes and stores it at close */
};

static inline uint64_t be64_get(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}
static inline uint32_t be32_get(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint16_t be16_get(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}
static inline void be64_put(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}
static inline void be32_put(uint8_t *p, uint32_t v)
{
	for (int i = 3; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}
static inline void be16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* qcow2_meta.c: caches, refcounts, allocation, ordered write-back. All return 0 or -errno;
 * -EUCLEAN marks metadata found corrupt (q->corrupt is set and logged by the caller). */
int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t nslot, uint64_t cluster_size);
void qcow2_cache_free(struct qcow2_cache *c);
/* The L2 table for L1 index i (NULL table with 0 returned if unallocated), or -errno. */
int qcow2_l2_get(struct qcow2 *q, uint64_t l1i, uint64_t **table);
/* Like qcow2_l2_get, allocating an empty table if there is none. */
int qcow2_l2_get_alloc(struct qcow2 *q, uint64_t l1i, uint64_t **table);
void qcow2_l2_mark_dirty(struct qcow2 *q, uint64_t l1i);
int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc);
/* Allocate n contiguous clusters (refcount 1); returns the first cluster index in *first. */
int qcow2_alloc(struct qcow2 *q, uint64_t n, uint64_t *first);
/* Drop one reference to a cluster; at zero its space goes back to the file system. -EUCLEAN if its
 * refcount is already 0 or it holds metadata (callers take metadata out of the set first). */
int qcow2_free_cluster(struct qcow2 *q, uint64_t cluster);
/* Write back dirty metadata in crash-safe order (refcounts, sync, L2 tables, sync, L1); with
 * sync the last step is followed by fdatasync too. */
int qcow2_flush_meta(struct qcow2 *q, bool sync);
bool qcow2_meta_dirty(const struct qcow2 *q);
/* Metadata cluster set for overlap checks. qcow2_meta_add keeps it sorted (-EUCLEAN if a cluster
 * is already in it); at open, qcow2_meta_append adds every table unordered and qcow2_meta_sort
 * sorts once (an image's L1 table alone may name millions of L2 tables) and reports a cluster
 * named twice in *dup. */
int qcow2_meta_add(struct qcow2 *q, uint64_t cluster, uint64_t n);
int qcow2_meta_append(struct qcow2 *q, uint64_t cluster, uint64_t n);
int qcow2_meta_sort(struct qcow2 *q, uint64_t *dup);
void qcow2_meta_del(struct qcow2 *q, uint64_t cluster, uint64_t n);
bool qcow2_meta_overlaps(const struct qcow2 *q, uint64_t cluster, uint64_t n);
/* Write the header cluster (fields patched in q->header) and sync. */
int qcow2_write_header(struct qcow2 *q);

extern const struct blk_driver qcow2_driver;

/* qcow2_bitmap.c: load at open (writable: mark the tracked ones in use), record writes, store at
 * close. */
int qcow2_bitmaps_open(struct qcow2 *q, char *msg, size_t msglen);
void qcow2_bitmaps_mark(struct qcow2 *q, uint64_t off, uint64_t len);
int qcow2_bitmaps_store(struct qcow2 *q);
void qcow2_bitmaps_free(struct qcow2 *q);

/* qcow2_create.c */
struct qcow2_create_opts {
	uint64_t size;
	unsigned cluster_bits; /* 0: 16 (64 KiB) */
	const char *backing;   /* NULL, or the backing file name as stored in the image */
	const char *backing_fmt;
};
int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *msg, size_t msglen);
/* Rewrite the backing file name and format in the header cluster (nothing else changes). */
int qcow2_set_backing(const char *path, const char *backing, const char *fmt, char *msg,
		      size_t msglen);

/* qcow2_resize.c: grow the virtual size of an image opened writable (b's driver is qcow2); the L1
 * table grows in place or moves to the end of the file. Shrinking is -EINVAL. */
int qcow2_resize(struct blk *b, uint64_t size, char *msg, size_t msglen);

#endif
