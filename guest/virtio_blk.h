/* virtio_blk.h — virtio-blk (virtio 1.2, 5.2): requests, device config, ring-3 job interface. */
#ifndef GUEST_VIRTIO_BLK_H
#define GUEST_VIRTIO_BLK_H

#include <stdint.h>

#include "virtio.h"

/* feature bits */
#define VIRTIO_BLK_F_SIZE_MAX (1ULL << 1)
#define VIRTIO_BLK_F_SEG_MAX (1ULL << 2)
#define VIRTIO_BLK_F_RO (1ULL << 5)
#define VIRTIO_BLK_F_BLK_SIZE (1ULL << 6)
#define VIRTIO_BLK_F_FLUSH (1ULL << 9)
#define VIRTIO_BLK_F_TOPOLOGY (1ULL << 10)
#define VIRTIO_BLK_F_MQ (1ULL << 12)
#define VIRTIO_BLK_F_DISCARD (1ULL << 13)
#define VIRTIO_BLK_F_WRITE_ZEROES (1ULL << 14)

/* request types and status values */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define BLK_STATUS_NONE 0xff /* what we put in the status byte before posting */

#define BLK_SECTOR 512
#define BLK_ID_BYTES 20

/* The disk pattern of `blk` / `blk-verify` (also in tests/system/test_guest_blk.py): the 8-byte
 * word at byte offset o of the disk holds o ^ BLK_PATTERN_KEY ^ (N << 56). */
#define BLK_PATTERN_KEY 0x6265727468ULL
#define blk_pattern_key(n) (BLK_PATTERN_KEY ^ ((uint64_t)(n) << 56))

struct virtio_blk_hdr {
	uint32_t type, reserved;
	uint64_t sector;
};

struct virtio_blk_dwz { /* discard / write-zeroes segment */
	uint64_t sector;
	uint32_t num_sectors, flags;
};

/* Device configuration (the fields we use), read under config_generation. */
struct blk_config {
	uint64_t capacity; /* 512-byte sectors */
	uint32_t size_max, seg_max, blk_size;
	uint8_t physical_block_exp, alignment_offset, writeback;
	uint16_t min_io_size, num_queues;
	uint32_t opt_io_size;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap;
	uint32_t generation_retries;
};

/* One request's device-visible parts and its bookkeeping; lives in DMA memory. */
struct blk_slot {
	struct virtio_blk_hdr hdr;
	struct virtio_blk_dwz dwz;
	uint8_t status, q;
	uint16_t pad;
	uint32_t bytes;
	uint64_t t_submit;
	uint8_t *buf;
} __attribute__((aligned(64)));

/* How a data buffer is cut into descriptors (SEG_MAX / SIZE_MAX). */
struct blk_limits {
	uint32_t max_segs;  /* data descriptors per request */
	uint32_t seg_bytes; /* bytes per data descriptor */
	uint32_t indirect;  /* post requests through indirect tables */
};

#define BLK_MAX_WQ 4 /* request queues used at most */

#define BLK_OP_WRITE_PATTERN 1
#define BLK_OP_VERIFY_PATTERN 2
#define BLK_OP_RANDREAD 3
#define BLK_OP_RANDWRITE 4
#define BLK_OP_SEQREAD 5
#define BLK_OP_SEQWRITE 6

#define BLK_FAIL_TIMEOUT 1
#define BLK_FAIL_STATUS 2
#define BLK_FAIL_DATA 3
#define BLK_FAIL_RING 4
#define BLK_FAIL_ADD 5
#define BLK_FAIL_TOKEN 6

/* One CPU's share of a disk-wide job: its queues, request slots and byte range. */
struct blk_worker {
	struct virtq *vq[BLK_MAX_WQ];
	uint32_t nvq, op;
	struct blk_limits lim;
	struct blk_slot *slots; /* depth of them */
	uint8_t *data;		/* depth * slot_bytes */
	uint32_t depth, slot_bytes, bs;
	uint64_t first, end; /* byte range [first, end) of the disk this worker covers */
	uint64_t disk_bytes; /* random offsets: anywhere in [0, disk_bytes - bs] */
	uint64_t key;	     /* pattern key */
	uint64_t seed;
	uint64_t t_measure, t_end, deadline; /* TSC: bench window; give-up time */
	/* results */
	uint64_t reqs, bytes, lat_sum, all_reqs, kicks;
	uint32_t fail;
	uint8_t fail_status;
	uint64_t fail_off, fail_got, fail_want;
};
uint64_t u_blk_worker(uint64_t worker);

/* One request from ring 3, polled to completion. */
struct blk_one {
	struct virtq *vq;
	struct blk_slot *slot;
	struct blk_limits lim;
	uint32_t type;
	uint64_t sector;
	uint8_t *buf;
	uint32_t bytes;
	uint32_t nodata; /* no data descriptor at all (flush, unknown types) */
	uint64_t deadline;
	/* results */
	uint32_t used_len, fail;
	uint8_t status;
};
uint64_t u_blk_one(uint64_t one);

/* Fill or check a buffer that holds disk bytes [off, off + len): pattern `key`, or zeroes. */
struct blk_fill {
	uint8_t *buf;
	uint64_t off, len, key;
	uint32_t zero, check;
	uint64_t bad_off, got, want; /* first mismatch (check) */
};
uint64_t u_blk_fill(uint64_t fill);

/* virtio_blk.c (ring 0): bring-up and configuration */
struct blk_dev {
	struct virtio_dev v;
	struct blk_config cfg;
	struct blk_limits lim;
	uint32_t nq;
};
int blk_open(struct blk_dev *b, unsigned int max_queues);
uint64_t blk_want_features(void);

#endif
