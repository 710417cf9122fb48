/* qcow2 persistent dirty bitmaps (the bitmaps extension QEMU uses for incremental backup): load and
 * validate the directory, record guest writes in the "auto" bitmaps while the image is open, and
 * store them crash-safely at close. A bitmap berth records is marked in use on disk while the VM
 * runs, so after a crash every tool sees it as inconsistent instead of trusting stale bits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

#define BME_HEADER 24
#define BME_TYPE_DIRTY 1
#define BME_MIN_GRANULARITY 9
#define BME_MAX_GRANULARITY 31
#define BME_KNOWN_FLAGS (QCOW2_BME_IN_USE | QCOW2_BME_AUTO | QCOW2_BME_EXTRA_DATA_COMPATIBLE)

static uint64_t div_up(uint64_t a, uint64_t b)
{
	return (a + b - 1) / b;
}

/* Bitmap table entries one bitmap of this granularity needs: one per cluster of bits. */
static uint64_t table_entries(const struct qcow2 *q, unsigned gbits)
{
	uint64_t bits = div_up(q->b->size ? q->b->size : 1, 1ULL << gbits);
	return div_up(div_up(bits, 8), q->cluster_size);
}

static int bad(char *msg, size_t msglen, const struct qcow2 *q, const char *what)
{
	snprintf(msg, msglen, "'%s': qcow2: dirty bitmaps: %s", q->b->path, what);
	return -EINVAL;
}

/* Read len bytes at off into a cluster-rounded aligned buffer (the tail may end the file). */
static int read_meta(struct qcow2 *q, uint64_t off, uint64_t len, uint8_t **out)
{
	uint64_t bytes = div_up(len ? len : 1, q->cluster_size) * q->cluster_size;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, bytes))
		return -ENOMEM;
	memset(buf, 0, bytes);
	uint64_t got = 0;
	while (got < bytes) {
		ssize_t n = pread(q->fd, buf + got, bytes - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (uint64_t)n;
	}
	if (got < len) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

static int load_bits(struct qcow2 *q, struct qcow2_bitmap *bm)
{
	uint64_t bytes = (uint64_t)bm->table_size * q->cluster_size;
	if (posix_memalign((void **)&bm->bits, 4096, bytes))
		return -ENOMEM;
	memset(bm->bits, 0, bytes);
	bm->nbits = div_up(q->b->size, 1ULL << bm->granularity_bits);
	for (uint32_t i = 0; i < bm->table_size; i++) {
		uint64_t off = bm->table[i] & QCOW2_OFFSET_MASK;
		uint8_t *chunk = bm->bits + (uint64_t)i * q->cluster_size;
		if (off) {
			int r = blk_pread_full(q->fd, chunk, q->cluster_size, off);
			if (r)
				return r;
		} else if (bm->table[i] & 1) {
			memset(chunk, 0xff, q->cluster_size);
		}
	}
	return 0;
}

/* The directory as it is in memory: every entry, 8-byte aligned, in cluster-rounded memory. */
static int build_dir(struct qcow2 *q, uint8_t **out, uint64_t *len)
{
	uint64_t size = 0;
	for (uint32_t i = 0; i < q->nbitmaps; i++)
		size += (q->bitmaps[i].entry_len + 7) & ~7u;
	uint64_t bytes = div_up(size, q->cluster_size) * q->cluster_size;
	uint8_t *d;
	if (posix_memalign((void **)&d, 4096, bytes))
		return -ENOMEM;
	memset(d, 0, bytes);
	uint64_t p = 0;
	for (uint32_t i = 0; i < q->nbitmaps; i++) {
		memcpy(d + p, q->bitmaps[i].entry, q->bitmaps[i].entry_len);
		p += (q->bitmaps[i].entry_len + 7) & ~7u;
	}
	*out = d;
	*len = size;
	return 0;
}

static int parse_entry(struct qcow2 *q, const uint8_t *e, uint64_t room, struct qcow2_bitmap *bm,
		       char *msg, size_t msglen)
{
	if (room < BME_HEADER)
		return bad(msg, msglen, q, "directory entry runs past the directory");
	bm->table_offset = be64_get(e);
	bm->table_size = be32_get(e + 8);
	bm->flags = be32_get(e + 12);
	unsigned type = e[16];
	bm->granularity_bits = e[17];
	uint32_t name_size = be16_get(e + 18), extra = be32_get(e + 20);
	uint64_t len = BME_HEADER + (uint64_t)extra + name_size;
	/* Entries are padded to 8 bytes and the directory size counts the padding: the padded
	 * entry must fit, or the next entry would start past the end of the directory. */
	if (!name_size || name_size > QCOW2_MAX_BACKING_NAME || ((len + 7) & ~7ULL) > room)
		return bad(msg, msglen, q, "directory entry name or extra data is invalid");
	if (type != BME_TYPE_DIRTY)
		return bad(msg, msglen, q, "unknown bitmap type");
	if (bm->granularity_bits < BME_MIN_GRANULARITY ||
	    bm->granularity_bits > BME_MAX_GRANULARITY)
		return bad(msg, msglen, q, "granularity outside 512 B..2 GiB");
	if (!bm->table_offset || (bm->table_offset & (q->cluster_size - 1)) ||
	    bm->table_offset >= QCOW2_MAX_OFFSET ||
	    bm->table_size != table_entries(q, bm->granularity_bits))
		return bad(msg, msglen, q, "bitmap table offset or size is invalid");
	memcpy(bm->name, e + BME_HEADER + extra, name_size);
	bm->name[name_size] = 0;
	bm->entry_len = (uint32_t)len;
	if (!(bm->entry = malloc(len)))
		return -ENOMEM;
	memcpy(bm->entry, e, len);
	return 0;
}

int qcow2_bitmaps_open(struct qcow2 *q, char *msg, size_t msglen)
{
	if (!q->bm_ext_pos || q->version < 3 || !(q->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0; /* none, or declared stale by an earlier writer: left alone */
	const uint8_t *x = q->header + q->bm_ext_pos;
	uint32_t n = be32_get(x); /* q->nbitmaps only once q->bitmaps holds that many */
	q->bmdir_size = be64_get(x + 8);
	q->bmdir_offset = be64_get(x + 16);
	if (!n || n > QCOW2_MAX_BITMAPS || be32_get(x + 4) ||
	    q->bmdir_size < (uint64_t)n * BME_HEADER ||
	    q->bmdir_size > QCOW2_MAX_BITMAP_DIR_BYTES || !q->bmdir_offset ||
	    (q->bmdir_offset & (q->cluster_size - 1)) || q->bmdir_offset >= QCOW2_MAX_OFFSET)
		return bad(msg, msglen, q, "the bitmaps extension is invalid");
	uint8_t *dir;
	int r = read_meta(q, q->bmdir_offset, q->bmdir_size, &dir);
	if (r)
		return r == -EIO
			   ? bad(msg, msglen, q, "the directory lies past the end of the file")
			   : r;
	if (!(q->bitmaps = calloc(n, sizeof(*q->bitmaps)))) {
		free(dir);
		return -ENOMEM;
	}
	q->nbitmaps = n;
	/* The directory, tables and data clusters join the overlap set unordered; it is sorted
	 * (and checked) once after the loop: inserting a large table's clusters one by one in
	 * order took quadratic time. */
	if ((r = qcow2_meta_append(q, q->bmdir_offset >> q->cluster_bits,
				   div_up(q->bmdir_size, q->cluster_size)))) {
		free(dir);
		return r;
	}
	uint64_t p = 0, mem = 0;
	bool any = false;
	for (uint32_t i = 0; i < q->nbitmaps && !r; i++) {
		struct qcow2_bitmap *bm = &q->bitmaps[i];
		if ((r = parse_entry(q, dir + p, q->bmdir_size - p, bm, msg, msglen)))
			break;
		p += (bm->entry_len + 7) & ~7u;
		if ((r = read_meta(q, bm->table_offset, (uint64_t)bm->table_size * 8,
				   (uint8_t **)&bm->table))) {
			if (r == -EIO)
				r = bad(msg, msglen, q,
					"a bitmap table lies past the end of the file");
			break;
		}
		uint8_t *raw = (uint8_t *)bm->table;
		for (uint32_t k = 0; k < bm->table_size; k++) /* to host order, in place */
			bm->table[k] = be64_get(raw + 8 * k);
		if ((r = qcow2_meta_append(q, bm->table_offset >> q->cluster_bits,
					   div_up((uint64_t)bm->table_size * 8, q->cluster_size))))
			break;
		for (uint32_t k = 0; k < bm->table_size && !r; k++) {
			uint64_t off = bm->table[k] & QCOW2_OFFSET_MASK;
			if ((bm->table[k] & ~(QCOW2_OFFSET_MASK | 1)) ||
			    (off & (q->cluster_size - 1)))
				r = bad(msg, msglen, q, "a bitmap data cluster offset is invalid");
			else if (off)
				r = qcow2_meta_append(q, off >> q->cluster_bits, 1);
		}
		uint32_t extra = be32_get(bm->entry + 20);
		/* As the open was asked (blk_check too: it loads what a writable open would, and
		 * only skips the writes). */
		bm->tracking = !r && !q->b->readonly && (bm->flags & QCOW2_BME_AUTO) &&
			       !(bm->flags & QCOW2_BME_IN_USE) && !(bm->flags & ~BME_KNOWN_FLAGS) &&
			       (!extra || (bm->flags & QCOW2_BME_EXTRA_DATA_COMPATIBLE));
		if (bm->tracking) {
			/* Recorded bitmaps live in memory while the image is open: a few bytes in
			 * the header must not make berth allocate (and zero) gigabytes. */
			mem += (uint64_t)bm->table_size * q->cluster_size;
			if (mem > QCOW2_MAX_BITMAP_MEM) {
				r = bad(msg, msglen, q, "recording needs more than 1 GiB");
				break;
			}
			r = load_bits(q, bm);
			if (r == -EIO)
				r = bad(msg, msglen, q, "bitmap data past the end of the file");
			if (r)
				break;
			any = true;
		}
	}
	free(dir);
	if (r)
		return r;
	uint64_t dup;
	if (qcow2_meta_sort(q, &dup)) {
		snprintf(msg, msglen,
			 "'%s': qcow2: dirty bitmaps: a directory, table or data cluster overlaps "
			 "other metadata (the cluster at offset 0x%llx)",
			 q->b->path, (unsigned long long)(dup << q->cluster_bits));
		return -EINVAL;
	}
	if (p != q->bmdir_size)
		return bad(msg, msglen, q, "the directory size does not match its entries");
	if (!any || q->readonly)
		return 0;
	/* Mark what we record as in use, in place, before the guest can write anything. */
	for (uint32_t i = 0; i < q->nbitmaps; i++)
		if (q->bitmaps[i].tracking)
			be32_put(q->bitmaps[i].entry + 12, q->bitmaps[i].flags | QCOW2_BME_IN_USE);
	uint64_t len;
	if ((r = build_dir(q, &dir, &len)))
		return r;
	r = blk_pwrite_full(q->fd, dir, div_up(len, q->cluster_size) * q->cluster_size,
			    q->bmdir_offset);
	free(dir);
	if (!r && fdatasync(q->fd) < 0)
		r = -errno;
	if (r)
		snprintf(msg, msglen, "'%s': qcow2: cannot mark dirty bitmaps in use: %s",
			 q->b->path, strerror(-r));
	return r;
}

void qcow2_bitmaps_mark(struct qcow2 *q, uint64_t off, uint64_t len)
{
	for (uint32_t i = 0; i < q->nbitmaps; i++) {
		struct qcow2_bitmap *bm = &q->bitmaps[i];
		if (!bm->tracking || !len)
			continue;
		uint64_t a = off >> bm->granularity_bits,
			 z = (off + len - 1) >> bm->granularity_bits;
		if (z >= bm->nbits)
			z = bm->nbits - 1;
		for (; a <= z && (a & 7); a++)
			bm->bits[a / 8] |= (uint8_t)(1u << (a & 7));
		if (a + 8 <= z + 1) {
			uint64_t n = (z + 1 - a) / 8;
			memset(bm->bits + a / 8, 0xff, n);
			a += n * 8;
		}
		for (; a <= z; a++)
			bm->bits[a / 8] |= (uint8_t)(1u << (a & 7));
	}
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Write one tracked bitmap to new clusters; its entry then points at the new table. */
static int store_one(struct qcow2 *q, struct qcow2_bitmap *bm)
{
	uint64_t tbytes = div_up((uint64_t)bm->table_size * 8, q->cluster_size) * q->cluster_size;
	uint8_t *t;
	int r = 0;
	if (posix_memalign((void **)&t, 4096, tbytes))
		return -ENOMEM;
	memset(t, 0, tbytes);
	for (uint32_t i = 0; i < bm->table_size && !r; i++) {
		const uint8_t *chunk = bm->bits + (uint64_t)i * q->cluster_size;
		uint64_t c;
		if (all_zero(chunk, q->cluster_size))
			continue;
		if (!(r = qcow2_alloc(q, 1, &c)) &&
		    !(r = blk_pwrite_full(q->fd, chunk, q->cluster_size, c << q->cluster_bits)))
			be64_put(t + 8 * i, c << q->cluster_bits);
	}
	uint64_t tc;
	if (!r && !(r = qcow2_alloc(q, tbytes >> q->cluster_bits, &tc)) &&
	    !(r = blk_pwrite_full(q->fd, t, tbytes, tc << q->cluster_bits))) {
		be64_put(bm->entry, tc << q->cluster_bits);
		be32_put(bm->entry + 12, bm->flags & ~QCOW2_BME_IN_USE);
	}
	free(t);
	return r;
}

/* Drop the references the old directory, tables and data clusters held. */
static int free_old(struct qcow2 *q, uint64_t old_dir, uint64_t old_dir_size)
{
	int r = 0;
	uint64_t n = div_up(old_dir_size, q->cluster_size);
	qcow2_meta_del(q, old_dir >> q->cluster_bits, n);
	for (uint64_t i = 0; i < n && !r; i++)
		r = qcow2_free_cluster(q, (old_dir >> q->cluster_bits) + i);
	for (uint32_t b = 0; b < q->nbitmaps && !r; b++) {
		struct qcow2_bitmap *bm = &q->bitmaps[b];
		if (!bm->tracking)
			continue;
		uint64_t tn = div_up((uint64_t)bm->table_size * 8, q->cluster_size);
		for (uint32_t i = 0; i < bm->table_size && !r; i++) {
			uint64_t off = bm->table[i] & QCOW2_OFFSET_MASK;
			if (off) {
				qcow2_meta_del(q, off >> q->cluster_bits, 1);
				r = qcow2_free_cluster(q, off >> q->cluster_bits);
			}
		}
		qcow2_meta_del(q, bm->table_offset >> q->cluster_bits, tn);
		for (uint64_t i = 0; i < tn && !r; i++)
			r = qcow2_free_cluster(q, (bm->table_offset >> q->cluster_bits) + i);
	}
	return r;
}

/*
 * New data, tables and directory go to new clusters; refcounts are made durable; then the header
 * switches to the new directory (one sector write, synced); only then are the old clusters freed.
 * A crash before the switch leaves the old directory with the bitmaps marked in use (inconsistent,
 * as they should be) and some leaked clusters.
 */
int qcow2_bitmaps_store(struct qcow2 *q)
{
	bool any = false;
	int r = 0;
	for (uint32_t i = 0; i < q->nbitmaps && !r; i++)
		if (q->bitmaps[i].tracking) {
			any = true;
			r = store_one(q, &q->bitmaps[i]);
		}
	if (r || !any)
		return r;
	uint8_t *dir;
	uint64_t len, dc;
	if ((r = build_dir(q, &dir, &len)))
		return r;
	uint64_t dbytes = div_up(len, q->cluster_size) * q->cluster_size;
	if (!(r = qcow2_alloc(q, dbytes >> q->cluster_bits, &dc)))
		r = blk_pwrite_full(q->fd, dir, dbytes, dc << q->cluster_bits);
	free(dir);
	if (r || (r = qcow2_flush_meta(q, true)))
		return r;
	uint64_t old_dir = q->bmdir_offset, old_size = q->bmdir_size;
	be64_put(q->header + q->bm_ext_pos + 8, len);
	be64_put(q->header + q->bm_ext_pos + 16, dc << q->cluster_bits);
	if ((r = qcow2_write_header(q)))
		return r;
	q->bmdir_offset = dc << q->cluster_bits;
	q->bmdir_size = len;
	r = free_old(q, old_dir, old_size);
	for (uint32_t i = 0; i < q->nbitmaps; i++)
		q->bitmaps[i].tracking = false; /* stored: nothing more to record */
	return r;
}

void qcow2_bitmaps_free(struct qcow2 *q)
{
	for (uint32_t i = 0; q->bitmaps && i < q->nbitmaps; i++) {
		free(q->bitmaps[i].entry);
		free(q->bitmaps[i].table);
		free(q->bitmaps[i].bits);
	}
	free(q->bitmaps);
	q->bitmaps = NULL;
	q->nbitmaps = 0;
}
