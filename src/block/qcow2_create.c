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
