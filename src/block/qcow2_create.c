/* qcow2 image creation (version 3, 16-bit refcounts): header with optional backing file and its
 * format, refcount table and blocks, an empty L1 table. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

int qcow2_create(const char *path, const struct qcow2_create_opts *o, char *msg, size_t msglen)
{
	unsigned cb = o->cluster_bits ? o->cluster_bits : 16;
	if (cb < QCOW2_MIN_CLUSTER_BITS || cb > QCOW2_MAX_CLUSTER_BITS) {
		snprintf(msg, msglen,
			 "cluster size must be a power of two from 512 bytes to 2 MiB");
		return -EINVAL;
	}
	uint64_t cs = 1ULL << cb, per_l1 = cs << (cb - 3);
	if (o->size > (1ULL << 62)) {
		snprintf(msg, msglen, "size %llu is too large", (unsigned long long)o->size);
		return -EINVAL;
	}
	uint64_t l1_size = (o->size + per_l1 - 1) / per_l1;
	if (l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		snprintf(msg, msglen,
			 "size %llu needs an L1 table above %u MiB; use larger clusters",
			 (unsigned long long)o->size, QCOW2_MAX_L1_BYTES >> 20);
		return -EINVAL;
	}
	size_t blen = o->backing ? strlen(o->backing) : 0,
	       flen = o->backing_fmt ? strlen(o->backing_fmt) : 0;
	if (blen > QCOW2_MAX_BACKING_NAME || flen > 16 ||
	    QCOW2_V3_HEADER_LEN + 8 + ((flen + 7) & ~7u) + 8 + blen > cs) {
		snprintf(msg, msglen,
			 "backing file name or format too long for the header cluster");
		return -EINVAL;
	}
	/* Metadata clusters: header, refcount table, refcount blocks, L1; the blocks must cover all
	 * of them (16-bit refcounts: cs / 2 clusters per block). */
	uint64_t l1c = (l1_size * 8 + cs - 1) / cs, E = cs / 2, rtc = 1, rbc = 1;
	for (;;) {
		uint64_t total = 1 + rtc + rbc + l1c;
		uint64_t nrb = (total + E - 1) / E, nrt = (nrb * 8 + cs - 1) / cs;
		if (nrb == rbc && nrt == rtc)
			break;
		rbc = nrb, rtc = nrt;
	}
	uint64_t total = 1 + rtc + rbc + l1c;
	uint8_t *img = calloc(total, cs);
	if (!img) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	uint8_t *h = img;
	be32_put(h, QCOW2_MAGIC);
	be32_put(h + 4, 3);
	be32_put(h + 20, cb);
	be64_put(h + 24, o->size);
	be32_put(h + 36, (uint32_t)l1_size);
	be64_put(h + 40, (1 + rtc + rbc) * cs);
	be64_put(h + 48, 1 * cs);
	be32_put(h + 56, (uint32_t)rtc);
	be32_put(h + 96, 4);
	be32_put(h + 100, QCOW2_V3_HEADER_LEN);
	uint64_t p = QCOW2_V3_HEADER_LEN;
	if (flen) {
		be32_put(h + p, QCOW2_EXT_BACKING_FORMAT);
		be32_put(h + p + 4, (uint32_t)flen);
		memcpy(h + p + 8, o->backing_fmt, flen);
		p += 8 + ((flen + 7) & ~7u);
	}
	p += 8; /* end of extensions */
	if (blen) {
		be64_put(h + 8, p);
		be32_put(h + 16, (uint32_t)blen);
		memcpy(h + p, o->backing, blen);
	}
	for (uint64_t i = 0; i < rbc; i++) /* refcount table */
		be64_put(img + cs + 8 * i, (1 + rtc + i) * cs);
	for (uint64_t c = 0; c < total; c++) /* refcount 1 for every metadata cluster */
		be16_put(img + (1 + rtc + c / E) * cs + 2 * (c % E), 1);
	int r = 0, fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = -errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
		free(img);
		return r;
	}
	if ((r = blk_pwrite_full(fd, img, total * cs, 0)) || (fsync(fd) < 0 && (r = -errno))) {
		snprintf(msg, msglen, "'%s': %s", path, strerror(-r));
		unlink(path);
	}
	close(fd);
	free(img);
	return r;
}

int qcow2_set_backing(const char *path, const char *backing, const char *fmt, char *msg,
		      size_t msglen)
{
	uint8_t head[QCOW2_V3_HEADER_LEN];
	uint8_t *h = NULL, *nh = NULL;
	int r = 0, fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
		return r;
	}
	if ((r = blk_pread_full(fd, head, sizeof(head), 0)) || be32_get(head) != QCOW2_MAGIC) {
		snprintf(msg, msglen, "'%s': not a qcow2 image", path);
		r = r ? r : -EINVAL;
		goto out;
	}
	uint32_t version = be32_get(head + 4), cb = be32_get(head + 20);
	uint32_t hlen = version >= 3 ? be32_get(head + 100) : 72;
	if (version < 2 || version > 3 || cb < QCOW2_MIN_CLUSTER_BITS ||
	    cb > QCOW2_MAX_CLUSTER_BITS || hlen < 72 || hlen > (1u << cb) || (hlen & 7)) {
		snprintf(msg, msglen, "'%s': header not understood", path);
		r = -EINVAL;
		goto out;
	}
	uint64_t cs = 1ULL << cb;
	size_t blen = strlen(backing), flen = strlen(fmt);
	h = calloc(1, cs);
	nh = calloc(1, cs);
	if (!h || !nh) {
		r = -ENOMEM;
		snprintf(msg, msglen, "out of memory");
		goto out;
	}
	if ((r = blk_pread_full(fd, h, cs, 0))) {
		snprintf(msg, msglen, "'%s': %s", path, strerror(-r));
		goto out;
	}
	/* New header cluster: the header, every extension but the backing format, the new backing
	 * format, the end marker, the backing file name. */
	memcpy(nh, h, hlen);
	uint64_t p = hlen, np = hlen;
	for (;;) {
		if (p + 8 > cs) {
			snprintf(msg, msglen, "'%s': header extensions run past the first cluster",
				 path);
			r = -EINVAL;
			goto out;
		}
		uint32_t type = be32_get(h + p), len = be32_get(h + p + 4);
		uint64_t padded = ((uint64_t)len + 7) & ~7ULL;
		if (type == QCOW2_EXT_END)
			break;
		if (p + 8 + padded > cs) {
			snprintf(msg, msglen, "'%s': header extension 0x%x runs past the cluster",
				 path, type);
			r = -EINVAL;
			goto out;
		}
		if (type != QCOW2_EXT_BACKING_FORMAT) {
			memcpy(nh + np, h + p, 8 + padded);
			np += 8 + padded;
		}
		p += 8 + padded;
	}
	if (blen > QCOW2_MAX_BACKING_NAME || flen > 16 ||
	    np + 8 + ((flen + 7) & ~7u) + 8 + blen > cs) {
		snprintf(msg, msglen, "'%s': the backing file name does not fit in the header",
			 path);
		r = -ENOSPC;
		goto out;
	}
	be32_put(nh + np, QCOW2_EXT_BACKING_FORMAT);
	be32_put(nh + np + 4, (uint32_t)flen);
	memcpy(nh + np + 8, fmt, flen);
	np += 8 + ((flen + 7) & ~7u);
	np += 8; /* end marker: zeroes */
	be64_put(nh + 8, np);
	be32_put(nh + 16, (uint32_t)blen);
	memcpy(nh + np, backing, blen);
	/* Everything else in the cluster stays as it was (nothing else lives there). */
	uint64_t old_end = p + 8, ob = be64_get(h + 8), obl = be32_get(h + 16);
	if (ob && ob + obl <= cs && ob + obl > old_end)
		old_end = ob + obl;
	uint64_t len = np + blen > old_end ? np + blen : old_end;
	if ((r = blk_pwrite_full(fd, nh, len, 0)) || (fdatasync(fd) < 0 && (r = -errno)))
		snprintf(msg, msglen, "'%s': writing the header: %s", path, strerror(-r));
out:
	close(fd);
	free(h);
	free(nh);
	return r;
}
