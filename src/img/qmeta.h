/* berth-img's own reader of qcow2 metadata (header, extensions, snapshot table, bitmap directory),
 * written from the format specification and independent of the block driver and its caches. */
#ifndef BERTH_IMG_QMETA_H
#define BERTH_IMG_QMETA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/qcow2.h"

#define QM_EXT_CRYPTO 0x0537be77u
#define QM_EXT_DATA_FILE 0x44415441u
#define QM_L1E_RESERVED 0x7f000000000001ffULL /* L1 entry bits 0-8, 56-62 */
#define QM_L2E_RESERVED 0x3f000000000001feULL /* standard L2 entry bits 1-8, 56-61 */
#define QM_REFT_OFFSET_MASK 0xfffffffffffffe00ULL
#define QM_MAX_SNAPSHOTS 65536
#define QM_MAX_SNAPSHOT_TABLE (64u << 20)
#define QM_MAX_BITMAPS 65535
#define QM_MAX_BITMAP_DIR (64u << 20)

enum qm_feature_type { QM_INCOMPAT = 0, QM_COMPAT = 1, QM_AUTOCLEAR = 2 };

/* One entry of the image's feature name table. */
struct qm_feature {
	uint8_t type, bit;
	char name[47];
};

struct qm_header {
	uint32_t version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	uint64_t size; /* virtual size in bytes */
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t reftable_offset;
	uint32_t reftable_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t incompat, compat, autoclear;
	unsigned refcount_order;
	uint32_t header_length;
	uint8_t compression_type; /* 0 zlib, 1 zstd */

	bool has_backing;
	char backing[QCOW2_MAX_BACKING_NAME + 1];
	char backing_fmt[QCOW2_MAX_BACKING_NAME + 1]; /* "" if the extension is absent */
	char data_file[QCOW2_MAX_BACKING_NAME + 1];   /* "" if absent */

	bool has_bitmaps; /* bitmaps extension present */
	uint32_t nb_bitmaps;
	uint64_t bitmap_dir_size, bitmap_dir_offset;

	bool has_crypto; /* full disk encryption header pointer present */
	uint64_t crypto_offset, crypto_length;

	unsigned nfeatures;
	struct qm_feature features[192];
};

/* Read and validate the header cluster. Anything that makes the image unusable (bad magic,
 * version, cluster size, table placement, malformed extensions) is -EINVAL with a message. */
int qm_read_header(int fd, struct qm_header *h, char *msg, size_t msglen);

/* The name of a feature bit: the image's feature name table, else the specification's name,
 * else NULL. */
const char *qm_feature_name(const struct qm_header *h, enum qm_feature_type type, unsigned bit);

/* "0.10" for version 2, "1.1" for version 3. */
const char *qm_compat_name(const struct qm_header *h);

struct qm_snapshot {
	uint64_t l1_offset;
	uint32_t l1_size;
	char *id, *name;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock_nsec;
	uint64_t vm_state_size;
	uint64_t disk_size; /* 0 if the entry does not record it */
	uint64_t icount;    /* UINT64_MAX if not recorded */
};

/* Parse the snapshot table; *bytes is its length in the file (padded entries). */
int qm_read_snapshots(int fd, const struct qm_header *h, struct qm_snapshot **out, uint64_t *bytes,
		      char *msg, size_t msglen);
void qm_free_snapshots(struct qm_snapshot *s, uint32_t n);

struct qm_bitmap {
	uint64_t table_offset;
	uint32_t table_size; /* entries */
	uint32_t flags;	     /* bit 0 in_use, 1 auto, 2 extra_data_compatible */
	uint8_t type, granularity_bits;
	char *name;
};

/* Parse the bitmap directory named by the bitmaps extension. */
int qm_read_bitmaps(int fd, const struct qm_header *h, struct qm_bitmap **out, char *msg,
		    size_t msglen);
void qm_free_bitmaps(struct qm_bitmap *b, uint32_t n);

/* pread that fills the rest of buf with zeroes past the end of the file; -errno on failure. */
int qm_pread_pad(int fd, void *buf, size_t len, uint64_t off);

#endif
