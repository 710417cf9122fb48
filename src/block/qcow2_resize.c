/* Growing images: raw by ftruncate, qcow2 by a larger virtual size and, when the L1 table no
 * longer fits its clusters, a new L1 table written before the header points at it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"

static int write_l1(struct qcow2 *q, const uint64_t *t, uint64_t entries, uint64_t off,
		    uint64_t clusters)
{
	uint64_t bytes = clusters << q->cluster_bits;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, bytes))
		return -ENOMEM;
	memset(buf, 0, bytes);
	for (uint64_t i = 0; i < entries; i++)
		be64_put(buf + 8 * i, t[i]);
	int r = blk_pwrite_full(q->fd, buf, bytes, off);
	if (!r && fdatasync(q->fd) < 0)
		r = -errno;
	free(buf);
	return r;
}

int qcow2_resize(struct blk *b, uint64_t size, char *msg, size_t msglen)
{
	struct qcow2 *q = b->priv;
	int r;

	if (q->readonly || q->corrupt) {
		snprintf(msg, msglen, "'%s': the image is open read-only or marked corrupt",
			 b->path);
		return -EROFS;
	}
	if (q->nbitmaps) {
		snprintf(msg, msglen,
			 "'%s': the image has %u persistent dirty bitmap(s), sized to the image; "
			 "remove them first",
			 b->path, q->nbitmaps);
		return -ENOTSUP;
	}
	uint64_t per_l1 = q->cluster_size << q->l2_bits;
	uint64_t need = (size + per_l1 - 1) / per_l1;
	if (need * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(msg, msglen, "size %llu needs an L1 table above %u MiB",
			 (unsigned long long)size, QCOW2_MAX_L1_BYTES >> 20);
		return -EFBIG;
	}
	uint64_t old_size = be64_get(q->header + 24);
	if (size < old_size) {
		snprintf(msg, msglen, "'%s': shrinking (from %llu to %llu bytes) is not supported",
			 b->path, (unsigned long long)old_size, (unsigned long long)size);
		return -EINVAL;
	}
	if ((r = qcow2_flush_meta(q, true))) {
		snprintf(msg, msglen, "'%s': writing metadata: %s", b->path, strerror(-r));
		return r;
	}
	uint64_t cmask = q->cluster_size - 1;
	uint64_t old_clusters = (q->l1_size * 8ULL + cmask) >> q->cluster_bits;
	uint64_t new_clusters = (need * 8 + cmask) >> q->cluster_bits;
	uint64_t old_off = q->l1_offset, new_off = q->l1_offset;
	if (need > q->l1_size) {
		uint64_t *t = calloc(new_clusters << (q->cluster_bits - 3), sizeof(*t));
		if (!t) {
			snprintf(msg, msglen, "out of memory");
			return -ENOMEM;
		}
		memcpy(t, q->l1, q->l1_size * sizeof(*t));
		if (new_clusters > old_clusters || !old_off) {
			/* a new table at the end of the image; its refcounts durable first */
			uint64_t first;
			if ((r = qcow2_alloc(q, new_clusters, &first)) ||
			    (r = qcow2_meta_add(q, first, new_clusters)) ||
			    (r = qcow2_flush_meta(q, true))) {
				free(t);
				snprintf(msg, msglen, "'%s': allocating the L1 table: %s", b->path,
					 strerror(-r));
				return r;
			}
			new_off = first << q->cluster_bits;
		}
		/* in place, the entries past the old end are written as zeroes first */
		if ((r = write_l1(q, t, need, new_off, new_clusters))) {
			free(t);
			snprintf(msg, msglen, "'%s': writing the L1 table: %s", b->path,
				 strerror(-r));
			return r;
		}
		free(q->l1);
		q->l1 = t;
		q->l1_alloc = new_clusters << (q->cluster_bits - 3);
		q->l1_size = (uint32_t)need;
		q->l1_offset = new_off;
	}
	be64_put(q->header + 24, size);
	be32_put(q->header + 36, q->l1_size);
	be64_put(q->header + 40, q->l1_offset);
	if ((r = qcow2_write_header(q))) {
		snprintf(msg, msglen, "'%s': writing the header: %s", b->path, strerror(-r));
		return r;
	}
	b->size = size & ~511ULL;
	if (new_off != old_off && old_clusters) {
		/* the old table is unreferenced now: at worst leaked if this fails */
		qcow2_meta_del(q, old_off >> q->cluster_bits, old_clusters);
		for (uint64_t i = 0; i < old_clusters; i++)
			if ((r = qcow2_free_cluster(q, (old_off >> q->cluster_bits) + i)))
				break;
		int r2 = qcow2_flush_meta(q, true);
		if (r || r2) {
			r = r ? r : r2;
			snprintf(msg, msglen, "'%s': freeing the old L1 table: %s", b->path,
				 strerror(-r));
			return r;
		}
	}
	return 0;
}

int blk_resize(const char *path, enum blk_format fmt, uint64_t size, char *msg, size_t msglen)
{
	struct blk b;
	int r;

	if (size % 512) {
		snprintf(msg, msglen, "size %llu is not a multiple of 512 bytes",
			 (unsigned long long)size);
		return -EINVAL;
	}
	if (fmt == BLK_FMT_AUTO && (r = blk_probe_file(path, &fmt, msg, msglen)))
		return r;
	if (fmt == BLK_FMT_RAW) {
		struct stat st;
		int fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			r = -errno;
			snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return r;
		}
		r = 0;
		if ((uint64_t)st.st_size > size) {
			snprintf(msg, msglen,
				 "'%s': shrinking (from %llu to %llu bytes) is not supported", path,
				 (unsigned long long)st.st_size, (unsigned long long)size);
			r = -EINVAL;
		} else if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
			r = -errno;
			snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
		}
		close(fd);
		return r;
	}
	memset(&b, 0, sizeof(b));
	if ((r = blk_open(&b, path, BLK_FMT_QCOW2, false, false, msg, msglen)))
		return r;
	r = qcow2_resize(&b, size, msg, msglen);
	int r2 = blk_close(&b);
	if (!r && r2) {
		snprintf(msg, msglen, "'%s': closing: %s", path, strerror(-r2));
		r = r2;
	}
	return r;
}
