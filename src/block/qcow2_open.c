/* qcow2 open: read and validate the header, extensions, L1 and refcount tables; refuse what berth
 * cannot handle safely with a message that says why; open the backing chain. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"

/* Cache sizes; the fuzz target builds with tiny ones so evictions happen. */
#ifndef QCOW2_L2_CACHE_BYTES
#define QCOW2_L2_CACHE_BYTES (32u << 20)
#endif
#ifndef QCOW2_RB_CACHE_MAX
#define QCOW2_RB_CACHE_MAX 64
#endif

static int refuse(char *msg, size_t msglen, const char *path, int err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int refuse(char *msg, size_t msglen, const char *path, int err, const char *fmt, ...)
{
	int n = snprintf(msg, msglen, "'%s': qcow2: ", path);
	va_list ap;
	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < msglen)
		vsnprintf(msg + n, msglen - (size_t)n, fmt, ap);
	va_end(ap);
	return -err;
}

/* Read a table of entries big-endian on disk into host order (whole clusters allocated). */
static int read_table(struct qcow2 *q, uint64_t off, uint64_t entries, uint64_t **out,
		      uint64_t *alloc)
{
	uint64_t bytes = (entries * 8 + q->cluster_size - 1) & ~(q->cluster_size - 1);
	uint8_t *raw;
	*out = NULL;
	if (!bytes)
		bytes = q->cluster_size;
	if (posix_memalign((void **)&raw, 4096, bytes))
		return -ENOMEM;
	uint64_t *t = calloc(bytes / 8, sizeof(*t));
	int r = t ? 0 : -ENOMEM;
	if (!r && entries) { /* the table may end the file before its last cluster does */
		memset(raw, 0, bytes);
		uint64_t got = 0;
		while (got < bytes) {
			ssize_t n = pread(q->fd, raw + got, bytes - got, (off_t)(off + got));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				r = n < 0 ? -errno : 0;
				break;
			}
			got += (uint64_t)n;
		}
		if (!r && got < entries * 8)
			r = -EIO;
	}
	if (!r)
		for (uint64_t i = 0; i < entries; i++)
			t[i] = be64_get(raw + 8 * i);
	free(raw);
	if (r) {
		free(t);
		return r;
	}
	*out = t;
	if (alloc)
		*alloc = bytes / 8;
	return 0;
}

static const char *incompat_name(unsigned bit)
{
	switch (bit) {
	case 2:
		return "external data file";
	case 3:
		return "compression type other than zlib";
	case 4:
		return "extended L2 entries (subclusters)";
	default:
		return NULL;
	}
}

/* Header extensions: backing format, bitmaps; others are kept verbatim and ignored. */
static int parse_extensions(struct qcow2 *q, const char *path, char *msg, size_t msglen)
{
	uint64_t p = q->header_length, end = q->cluster_size;
	while (p + 8 <= end) {
		uint32_t type = be32_get(q->header + p), len = be32_get(q->header + p + 4);
		p += 8;
		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - p)
			return refuse(msg, msglen, path, EINVAL,
				      "header extension 0x%08x runs past the first cluster", type);
		if (type == QCOW2_EXT_BITMAPS) {
			if (len < 24)
				return refuse(msg, msglen, path, EINVAL,
					      "bitmaps extension is %u bytes, not 24", len);
			q->bm_ext_pos = (uint32_t)p;
		}
		if (type == QCOW2_EXT_BACKING_FORMAT) {
			if (len >= sizeof(q->backing_fmt))
				return refuse(msg, msglen, path, EINVAL,
					      "backing format name too long");
			memcpy(q->backing_fmt, q->header + p, len);
			q->backing_fmt[len] = 0;
		}
		p += (len + 7) & ~7u;
	}
	return refuse(msg, msglen, path, EINVAL, "header extensions are not terminated");
}

/* The first two structures that claim cluster c (for the overlap message). */
static void overlap_names(const struct qcow2 *q, uint64_t c, uint64_t l1_clusters,
			  uint64_t rt_clusters, char *a, char *b, size_t len)
{
	char *out[2] = {a, b};
	unsigned k = 0;
	uint64_t l1c = q->l1_offset >> q->cluster_bits, rtc = q->reftable_offset >> q->cluster_bits;
	snprintf(a, len, "?");
	snprintf(b, len, "?");
	if (c == 0)
		snprintf(out[k++], len, "the header");
	if (c >= l1c && c - l1c < l1_clusters)
		snprintf(out[k++], len, "the L1 table");
	if (k < 2 && c >= rtc && c - rtc < rt_clusters)
		snprintf(out[k++], len, "the refcount table");
	for (uint64_t i = 0; k < 2 && i < q->l1_size; i++)
		if ((q->l1[i] & QCOW2_OFFSET_MASK) &&
		    (q->l1[i] & QCOW2_OFFSET_MASK) >> q->cluster_bits == c)
			snprintf(out[k++], len, "the L2 table of L1 entry %llu",
				 (unsigned long long)i);
	for (uint64_t i = 0; k < 2 && i < q->reftable_entries; i++)
		if ((q->reftable[i] & QCOW2_OFFSET_MASK) &&
		    (q->reftable[i] & QCOW2_OFFSET_MASK) >> q->cluster_bits == c)
			snprintf(out[k++], len, "the refcount block of refcount table entry %llu",
				 (unsigned long long)i);
}

static int open_backing(struct qcow2 *q, char *msg, size_t msglen)
{
	struct blk *b = q->b;
	enum blk_format fmt = BLK_FMT_AUTO;
	if (q->backing_fmt[0] && blk_format_parse(q->backing_fmt, &fmt))
		return refuse(msg, msglen, b->path, ENOTSUP, "backing format '%s' is not supported",
			      q->backing_fmt);
	char path[4096];
	if (q->backing_name[0] == '/') {
		snprintf(path, sizeof(path), "%s", q->backing_name);
	} else { /* relative to the directory of this image, as QEMU resolves it */
		char dir[4096];
		snprintf(dir, sizeof(dir), "%s", b->path);
		int n = snprintf(path, sizeof(path), "%s/%s", dirname(dir), q->backing_name);
		if (n < 0 || (size_t)n >= sizeof(path))
			return refuse(msg, msglen, b->path, ENAMETOOLONG, "backing path too long");
	}
	char sub[400];
	int r = blk_open_backing(b, path, fmt, sub, sizeof(sub));
	if (!r)
		return 0;
	/* The reason comes from the image that failed, named once under the top of the chain (not
	 * nested once per level, where a deep chain would push it out of the message). */
	if (b->above) {
		snprintf(msg, msglen, "%s", sub);
		return r;
	}
	return refuse(msg, msglen, b->path, -r, "backing file: %s", sub);
}

int qcow2_open(struct blk *b, char *msg, size_t msglen)
{
	const char *path = b->path;
	struct qcow2 *q = calloc(1, sizeof(*q));
	uint8_t *h0 = NULL;
	int r;
	if (!q || posix_memalign((void **)&h0, 4096, 4096)) {
		free(q);
		return refuse(msg, msglen, path, ENOMEM, "out of memory");
	}
	q->b = b;
	q->fd = b->fd;
	q->readonly = b->readonly || b->dry; /* dry: validate as asked, write nothing */
	b->priv = q;
	ssize_t got = pread(q->fd, h0, 4096, 0);
	if (got < 72 || !qcow2_probe(h0, (size_t)got)) {
		r = refuse(msg, msglen, path, EINVAL, "not a qcow2 image (bad magic or version)");
		goto fail;
	}
	q->version = be32_get(h0 + 4);
	q->cluster_bits = be32_get(h0 + 20);
	if (q->cluster_bits < QCOW2_MIN_CLUSTER_BITS || q->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
		r = refuse(msg, msglen, path, EINVAL, "cluster_bits %u outside 9..21",
			   q->cluster_bits);
		goto fail;
	}
	q->cluster_size = 1ULL << q->cluster_bits;
	q->l2_bits = q->cluster_bits - 3;
	if (posix_memalign((void **)&q->header, 4096, q->cluster_size) ||
	    posix_memalign((void **)&q->buf, 4096, q->cluster_size)) {
		r = refuse(msg, msglen, path, ENOMEM, "out of memory");
		goto fail;
	}
	memset(q->header, 0, q->cluster_size);
	got = pread(q->fd, q->header, q->cluster_size, 0);
	if (got < 72) {
		r = refuse(msg, msglen, path, EIO, "cannot read the header");
		goto fail;
	}
	uint8_t *h = q->header;
	uint64_t backing_off = be64_get(h + 8);
	uint32_t backing_len = be32_get(h + 16);
	b->size = be64_get(h + 24);
	uint32_t crypt = be32_get(h + 32);
	q->l1_size = be32_get(h + 36);
	q->l1_offset = be64_get(h + 40);
	q->reftable_offset = be64_get(h + 48);
	uint32_t rt_clusters = be32_get(h + 56);
	uint32_t nb_snapshots = be32_get(h + 60);
	if (q->version >= 3) {
		q->incompat = be64_get(h + 72);
		q->compat = be64_get(h + 80);
		q->autoclear = be64_get(h + 88);
		q->refcount_order = be32_get(h + 96);
		q->header_length = be32_get(h + 100);
		if (q->header_length < QCOW2_V3_HEADER_LEN || q->header_length % 8 ||
		    q->header_length > q->cluster_size) {
			r = refuse(msg, msglen, path, EINVAL, "header_length %u is invalid",
				   q->header_length);
			goto fail;
		}
	} else {
		q->refcount_order = 4;
		q->header_length = 72;
	}
	if (crypt) {
		r = refuse(msg, msglen, path, ENOTSUP, "encrypted images are not supported");
		goto fail;
	}
	uint64_t unknown = q->incompat & ~QCOW2_INCOMPAT_KNOWN;
	if (unknown) {
		unsigned bit = (unsigned)__builtin_ctzll(unknown);
		const char *name = incompat_name(bit);
		r = refuse(msg, msglen, path, ENOTSUP,
			   "unsupported incompatible feature bit %u%s%s%s (features 0x%llx)", bit,
			   name ? " (" : "", name ? name : "", name ? ")" : "",
			   (unsigned long long)q->incompat);
		goto fail;
	}
	if (!b->readonly && (q->incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT))) {
		r = refuse(msg, msglen, path, EUCLEAN,
			   "the image is marked %s; repair it with 'qemu-img check -r all' or open "
			   "it read-only",
			   q->incompat & QCOW2_INCOMPAT_CORRUPT ? "corrupt"
								: "dirty (lazy refcounts)");
		goto fail;
	}
	if (q->refcount_order > 6) {
		r = refuse(msg, msglen, path, EINVAL, "refcount_order %u is above 6",
			   q->refcount_order);
		goto fail;
	}
	q->rb_bits = q->cluster_bits + 3 - q->refcount_order;
	q->refcount_max =
	    q->refcount_order == 6 ? UINT64_MAX : (1ULL << (1u << q->refcount_order)) - 1;
	if (b->size > (1ULL << 62) || (b->size && b->size < 512)) {
		r = refuse(msg, msglen, path, EINVAL, "virtual size %llu is invalid",
			   (unsigned long long)b->size);
		goto fail;
	}
	uint64_t per_l1 = q->cluster_size << q->l2_bits; /* bytes one L2 table maps */
	uint64_t need_l1 = (b->size + per_l1 - 1) / per_l1;
	if (q->l1_size < need_l1 || (uint64_t)q->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		r = refuse(msg, msglen, path, EINVAL, "l1_size %u does not fit the virtual size",
			   q->l1_size);
		goto fail;
	}
	uint64_t cmask = q->cluster_size - 1;
	if ((q->l1_size && (!q->l1_offset || (q->l1_offset & cmask))) ||
	    q->l1_offset >= QCOW2_MAX_OFFSET) {
		r = refuse(msg, msglen, path, EINVAL, "L1 table offset 0x%llx is invalid",
			   (unsigned long long)q->l1_offset);
		goto fail;
	}
	if (!q->reftable_offset || (q->reftable_offset & cmask) ||
	    q->reftable_offset >= QCOW2_MAX_OFFSET || !rt_clusters ||
	    (uint64_t)rt_clusters * q->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
		r = refuse(msg, msglen, path, EINVAL,
			   "refcount table (offset 0x%llx, %u clusters) "
			   "is invalid",
			   (unsigned long long)q->reftable_offset, rt_clusters);
		goto fail;
	}
	if (nb_snapshots && !b->readonly) {
		r = refuse(msg, msglen, path, ENOTSUP,
			   "the image has %u internal snapshot(s); berth opens such images "
			   "read-only only (delete them with 'qemu-img snapshot -d')",
			   nb_snapshots);
		goto fail;
	}
	q->snapshots = nb_snapshots != 0;
	if ((r = parse_extensions(q, path, msg, msglen)))
		goto fail;
	if (backing_off) {
		if (!backing_len || backing_len > QCOW2_MAX_BACKING_NAME ||
		    backing_off < q->header_length || backing_off > q->cluster_size ||
		    backing_len > q->cluster_size - backing_off) {
			r = refuse(msg, msglen, path, EINVAL,
				   "backing file name (offset %llu, %u bytes) is invalid",
				   (unsigned long long)backing_off, backing_len);
			goto fail;
		}
		memcpy(q->backing_name, h + backing_off, backing_len);
		q->backing_name[backing_len] = 0;
		if (strlen(q->backing_name) != backing_len) {
			r = refuse(msg, msglen, path, EINVAL, "backing file name contains a NUL");
			goto fail;
		}
	}

	/* Tables. */
	q->reftable_entries = (uint64_t)rt_clusters * q->cluster_size / 8;
	if ((r = read_table(q, q->l1_offset, q->l1_size, &q->l1, &q->l1_alloc)) ||
	    (r = read_table(q, q->reftable_offset, q->reftable_entries, &q->reftable, NULL))) {
		r = refuse(msg, msglen, path, -r == EIO ? EINVAL : -r,
			   "cannot read the %s table: %s", q->l1 ? "refcount" : "L1",
			   r == -EIO ? "it lies past the end of the file" : strerror(-r));
		goto fail;
	}
	uint64_t l1_clusters = (q->l1_size * 8ULL + cmask) >> q->cluster_bits;
	if ((r = qcow2_meta_append(q, 0, 1)) ||
	    (r = qcow2_meta_append(q, q->l1_offset >> q->cluster_bits, l1_clusters)) ||
	    (r = qcow2_meta_append(q, q->reftable_offset >> q->cluster_bits, rt_clusters))) {
		r = refuse(msg, msglen, path, -r, "out of memory");
		goto fail;
	}
	const struct {
		const uint64_t *t;
		uint64_t n;
		const char *what;
	} tables[] = {{q->l1, q->l1_size, "L1 entry"},
		      {q->reftable, q->reftable_entries, "refcount table entry"}};
	for (unsigned k = 0; k < 2; k++) /* every L2 table and refcount block is metadata */
		for (uint64_t i = 0; i < tables[k].n; i++) {
			uint64_t off = tables[k].t[i] & QCOW2_OFFSET_MASK;
			if (!off)
				continue;
			if (off & cmask) {
				r = refuse(msg, msglen, path, EINVAL,
					   "%s %llu (0x%llx) is not cluster-aligned",
					   tables[k].what, (unsigned long long)i,
					   (unsigned long long)tables[k].t[i]);
				goto fail;
			}
			if ((r = qcow2_meta_append(q, off >> q->cluster_bits, 1))) {
				r = refuse(msg, msglen, path, -r, "out of memory");
				goto fail;
			}
		}
	uint64_t dup;
	if (qcow2_meta_sort(q, &dup)) {
		char a[64], b2[64];
		overlap_names(q, dup, l1_clusters, rt_clusters, a, b2, sizeof(a));
		r = refuse(msg, msglen, path, EINVAL,
			   "metadata overlaps: %s and %s share the cluster at offset 0x%llx", a, b2,
			   (unsigned long long)(dup << q->cluster_bits));
		goto fail;
	}
	uint64_t l2n = QCOW2_L2_CACHE_BYTES / q->cluster_size;
	if (l2n > q->l1_size)
		l2n = q->l1_size;
	if (l2n < 4)
		l2n = 4;
	uint64_t rbn =
	    q->reftable_entries < QCOW2_RB_CACHE_MAX ? q->reftable_entries : QCOW2_RB_CACHE_MAX;
	if (rbn < 4)
		rbn = 4;
	if ((r = qcow2_cache_init(&q->l2c, (unsigned)l2n, q->l1_size, q->cluster_size)) ||
	    (r = qcow2_cache_init(&q->rbc, (unsigned)rbn, q->reftable_entries, q->cluster_size))) {
		r = refuse(msg, msglen, path, ENOMEM, "out of memory");
		goto fail;
	}
	struct stat st;
	if (fstat(q->fd, &st) < 0) {
		r = refuse(msg, msglen, path, errno, "%s", strerror(errno));
		goto fail;
	}
	q->next_free = ((uint64_t)st.st_size + cmask) >> q->cluster_bits;

	if (q->backing_name[0] && (r = open_backing(q, msg, msglen)))
		goto fail;
	if (msglen)
		msg[0] = 0;
	if ((r = qcow2_bitmaps_open(q, msg, msglen))) {
		if (msglen && !msg[0]) /* out of memory, or an I/O error */
			refuse(msg, msglen, path, -r, "dirty bitmaps: %s", strerror(-r));
		goto fail;
	}
	if (!q->readonly && q->version >= 3 && (q->autoclear & ~QCOW2_AUTOCLEAR_BITMAPS)) {
		/* Autoclear features we do not maintain must be cleared before the image changes,
		 * so other tools know they are stale. */
		q->autoclear &= QCOW2_AUTOCLEAR_BITMAPS;
		be64_put(h + 88, q->autoclear);
		if ((r = qcow2_write_header(q))) {
			r = refuse(msg, msglen, path, -r, "cannot update the header: %s",
				   strerror(-r));
			goto fail;
		}
	}
	b->size &= ~511ULL;
	b->drv = &qcow2_driver;
	b->can_discard = true;
	free(h0);
	return 0;
fail:
	free(h0);
	q->readonly = true; /* a refused image is not written: no bitmaps stored, nothing flushed */
	b->drv = &qcow2_driver;
	qcow2_driver.close(b);
	b->drv = NULL;
	if (b->backing) {
		blk_close(b->backing);
		free(b->backing);
		b->backing = NULL;
	}
	return r < 0 ? r : -EINVAL;
}
