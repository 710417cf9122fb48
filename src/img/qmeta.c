/* berth-img's qcow2 metadata reader: header fields and extensions, snapshot table and bitmap
 * directory, each validated with a message that names the field and the reason. */
#include "img/qmeta.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int bad(char *msg, size_t msglen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int qm_pread_pad(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, p + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	memset(p + got, 0, len - got);
	return 0;
}

static const char *const builtin_names[3][5] = {
    [QM_INCOMPAT] = {"dirty", "corrupt", "external data file", "compression type",
		     "extended L2 entries"},
    [QM_COMPAT] = {"lazy refcounts"},
    [QM_AUTOCLEAR] = {"bitmaps", "raw external data"},
};

const char *qm_feature_name(const struct qm_header *h, enum qm_feature_type type, unsigned bit)
{
	if (bit < 5 && builtin_names[type][bit])
		return builtin_names[type][bit];
	for (unsigned i = 0; i < h->nfeatures; i++)
		if (h->features[i].type == type && h->features[i].bit == bit &&
		    h->features[i].name[0])
			return h->features[i].name;
	return NULL;
}

const char *qm_compat_name(const struct qm_header *h)
{
	return h->version >= 3 ? "1.1" : "0.10";
}

/* A table of `bytes` at `off` must be cluster-aligned and addressable. */
static bool table_ok(const struct qm_header *h, uint64_t off, uint64_t bytes)
{
	return !(off & (h->cluster_size - 1)) && off < QCOW2_MAX_OFFSET &&
	       bytes <= QCOW2_MAX_OFFSET - off;
}

static int copy_string(char *dst, const uint8_t *src, uint32_t len, const char *what, char *msg,
		       size_t msglen)
{
	if (len > QCOW2_MAX_BACKING_NAME)
		return bad(msg, msglen, "%s is %u bytes long (at most %u)", what, len,
			   QCOW2_MAX_BACKING_NAME);
	memcpy(dst, src, len);
	dst[len] = 0;
	if (strlen(dst) != len)
		return bad(msg, msglen, "%s contains a NUL byte", what);
	return 0;
}

static const char *ext_name(uint32_t type)
{
	switch (type) {
	case QCOW2_EXT_BACKING_FORMAT:
		return " (backing format)";
	case QCOW2_EXT_FEATURE_TABLE:
		return " (feature name table)";
	case QCOW2_EXT_BITMAPS:
		return " (bitmaps)";
	case QM_EXT_CRYPTO:
		return " (encryption header pointer)";
	case QM_EXT_DATA_FILE:
		return " (external data file name)";
	default:
		return "";
	}
}

static int parse_extensions(struct qm_header *h, const uint8_t *c, char *msg, size_t msglen)
{
	uint64_t p = h->header_length, end = h->cluster_size;
	while (p + 8 <= end) {
		uint32_t type = be32_get(c + p), len = be32_get(c + p + 4);
		uint64_t at = p;
		p += 8;
		if (type == QCOW2_EXT_END)
			return 0;
		if (len > end - p)
			return bad(
			    msg, msglen,
			    "header extension 0x%08x%s at byte %llu (%u bytes) runs past the first "
			    "cluster",
			    type, ext_name(type), (unsigned long long)at, len);
		const uint8_t *d = c + p;
		int r = 0;
		switch (type) {
		case QCOW2_EXT_BACKING_FORMAT:
			r = copy_string(h->backing_fmt, d, len, "the backing format extension", msg,
					msglen);
			break;
		case QM_EXT_DATA_FILE:
			r = copy_string(h->data_file, d, len, "the data file name extension", msg,
					msglen);
			break;
		case QCOW2_EXT_FEATURE_TABLE:
			for (uint32_t i = 0; i + 48 <= len && h->nfeatures < 192; i += 48) {
				struct qm_feature *f = &h->features[h->nfeatures];
				if (d[i] > 2 || d[i + 1] > 63)
					continue;
				f->type = d[i];
				f->bit = d[i + 1];
				memcpy(f->name, d + i + 2, 46);
				f->name[46] = 0;
				h->nfeatures++;
			}
			break;
		case QCOW2_EXT_BITMAPS:
			if (len != 24)
				return bad(msg, msglen,
					   "the bitmaps extension is %u bytes (expected 24)", len);
			h->has_bitmaps = true;
			h->nb_bitmaps = be32_get(d);
			h->bitmap_dir_size = be64_get(d + 8);
			h->bitmap_dir_offset = be64_get(d + 16);
			break;
		case QM_EXT_CRYPTO:
			if (len != 16)
				return bad(
				    msg, msglen,
				    "the encryption header extension is %u bytes (expected 16)",
				    len);
			h->has_crypto = true;
			h->crypto_offset = be64_get(d);
			h->crypto_length = be64_get(d + 8);
			break;
		default:
			break; /* unknown extensions are ignored */
		}
		if (r)
			return r;
		p += (len + 7) & ~7u;
	}
	return bad(msg, msglen,
		   "the header extensions are not terminated within the first cluster");
}

int qm_read_header(int fd, struct qm_header *h, char *msg, size_t msglen)
{
	uint8_t head[104];
	memset(h, 0, sizeof(*h));
	int r = qm_pread_pad(fd, head, sizeof(head), 0);
	if (r)
		return snprintf(msg, msglen, "cannot read the header: %s", strerror(-r)), r;
	if (be32_get(head) != QCOW2_MAGIC)
		return bad(msg, msglen, "not a qcow2 image (bad magic)");
	h->version = be32_get(head + 4);
	if (h->version != 2 && h->version != 3)
		return bad(msg, msglen, "qcow2 version %u is not supported (only 2 and 3)",
			   h->version);
	h->cluster_bits = be32_get(head + 20);
	if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS)
		return bad(msg, msglen, "cluster_bits %u is outside 9..21 (512 bytes to 2 MiB)",
			   h->cluster_bits);
	h->cluster_size = 1ULL << h->cluster_bits;
	uint8_t *c = malloc(h->cluster_size);
	if (!c)
		return snprintf(msg, msglen, "out of memory"), -ENOMEM;
	if ((r = qm_pread_pad(fd, c, h->cluster_size, 0))) {
		snprintf(msg, msglen, "cannot read the header: %s", strerror(-r));
		goto out;
	}
	uint64_t backing_off = be64_get(c + 8);
	uint32_t backing_len = be32_get(c + 16);
	h->size = be64_get(c + 24);
	h->crypt_method = be32_get(c + 32);
	h->l1_size = be32_get(c + 36);
	h->l1_offset = be64_get(c + 40);
	h->reftable_offset = be64_get(c + 48);
	h->reftable_clusters = be32_get(c + 56);
	h->nb_snapshots = be32_get(c + 60);
	h->snapshots_offset = be64_get(c + 64);
	if (h->version >= 3) {
		h->incompat = be64_get(c + 72);
		h->compat = be64_get(c + 80);
		h->autoclear = be64_get(c + 88);
		h->refcount_order = be32_get(c + 96);
		h->header_length = be32_get(c + 100);
		if (h->header_length < QCOW2_V3_HEADER_LEN || h->header_length % 8 ||
		    h->header_length > h->cluster_size) {
			r = bad(msg, msglen,
				"header_length %u is invalid (a multiple of 8, at least 104)",
				h->header_length);
			goto out;
		}
		if (h->header_length > 104)
			h->compression_type = c[104];
	} else {
		h->refcount_order = 4;
		h->header_length = 72;
	}
	if (h->refcount_order > 6) {
		r = bad(msg, msglen, "refcount_order %u is above 6", h->refcount_order);
		goto out;
	}
	if (h->crypt_method > 2) {
		r = bad(msg, msglen, "crypt_method %u is unknown", h->crypt_method);
		goto out;
	}
	uint64_t per_l1 = h->cluster_size << (h->cluster_bits - 3);
	if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		r = bad(msg, msglen, "l1_size %u is above the limit of %u entries", h->l1_size,
			QCOW2_MAX_L1_BYTES / 8);
		goto out;
	}
	if (h->size / per_l1 + (h->size % per_l1 != 0) > h->l1_size) {
		r = bad(msg, msglen, "l1_size %u is too small for the virtual size %llu",
			h->l1_size, (unsigned long long)h->size);
		goto out;
	}
	if (!table_ok(h, h->l1_offset, (uint64_t)h->l1_size * 8) || (h->l1_size && !h->l1_offset)) {
		r = bad(msg, msglen, "L1 table offset 0x%llx is invalid (not cluster-aligned)",
			(unsigned long long)h->l1_offset);
		goto out;
	}
	if (!h->reftable_offset || !h->reftable_clusters ||
	    !table_ok(h, h->reftable_offset, (uint64_t)h->reftable_clusters * h->cluster_size) ||
	    (uint64_t)h->reftable_clusters * h->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
		r = bad(msg, msglen,
			"refcount table (offset 0x%llx, %u clusters) is invalid (cluster-aligned, "
			"non-empty, at most %u MiB)",
			(unsigned long long)h->reftable_offset, h->reftable_clusters,
			QCOW2_MAX_REFTABLE_BYTES >> 20);
		goto out;
	}
	if (h->nb_snapshots > QM_MAX_SNAPSHOTS ||
	    (h->nb_snapshots && (!h->snapshots_offset || !table_ok(h, h->snapshots_offset, 0)))) {
		r = bad(msg, msglen, "snapshot table (%u snapshots at 0x%llx) is invalid",
			h->nb_snapshots, (unsigned long long)h->snapshots_offset);
		goto out;
	}
	if ((r = parse_extensions(h, c, msg, msglen)))
		goto out;
	if (backing_off) {
		if (!backing_len || backing_len > QCOW2_MAX_BACKING_NAME ||
		    backing_off > h->cluster_size || backing_len > h->cluster_size - backing_off) {
			r = bad(msg, msglen,
				"backing file name (offset %llu, %u bytes) is outside the first "
				"cluster "
				"or longer than %u bytes",
				(unsigned long long)backing_off, backing_len,
				QCOW2_MAX_BACKING_NAME);
			goto out;
		}
		if ((r = copy_string(h->backing, c + backing_off, backing_len,
				     "the backing file name", msg, msglen)))
			goto out;
		h->has_backing = true;
	}
	r = 0;
out:
	free(c);
	return r;
}

void qm_free_snapshots(struct qm_snapshot *s, uint32_t n)
{
	for (uint32_t i = 0; s && i < n; i++) {
		free(s[i].id);
		free(s[i].name);
	}
	free(s);
}

static char *dup_bytes(const uint8_t *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* Read len bytes of a table at off + pos (bounded by max); -EINVAL with a message if it ends the
 * file early. */
static int table_read(int fd, uint8_t *buf, size_t len, uint64_t off, const char *what, char *msg,
		      size_t msglen)
{
	int r = blk_pread_full(fd, buf, len, off);
	if (r == -EIO)
		return bad(msg, msglen, "%s runs past the end of the file", what);
	if (r)
		snprintf(msg, msglen, "cannot read %s: %s", what, strerror(-r));
	return r;
}

int qm_read_snapshots(int fd, const struct qm_header *h, struct qm_snapshot **out, uint64_t *bytes,
		      char *msg, size_t msglen)
{
	*out = NULL;
	*bytes = 0;
	if (!h->nb_snapshots)
		return 0;
	struct qm_snapshot *s = calloc(h->nb_snapshots, sizeof(*s));
	uint8_t *buf = malloc(65536 * 2 + 1024 + 64);
	uint64_t pos = 0;
	uint32_t i;
	int r = 0;
	if (!s || !buf) {
		r = -ENOMEM;
		snprintf(msg, msglen, "out of memory");
		goto fail;
	}
	for (i = 0; i < h->nb_snapshots; i++) {
		struct qm_snapshot *e = &s[i];
		if ((r = table_read(fd, buf, 40, h->snapshots_offset + pos, "the snapshot table",
				    msg, msglen)))
			goto fail;
		e->l1_offset = be64_get(buf);
		e->l1_size = be32_get(buf + 8);
		uint16_t id_len = be16_get(buf + 12), name_len = be16_get(buf + 14);
		e->date_sec = be32_get(buf + 16);
		e->date_nsec = be32_get(buf + 20);
		e->vm_clock_nsec = be64_get(buf + 24);
		e->vm_state_size = be32_get(buf + 32);
		uint32_t extra = be32_get(buf + 36);
		e->icount = UINT64_MAX;
		if (extra > 1024) {
			r = bad(msg, msglen,
				"snapshot %u has %u bytes of extra data (at most 1024)", i, extra);
			goto fail;
		}
		uint64_t len = 40 + (uint64_t)extra + id_len + name_len;
		if ((r = table_read(fd, buf + 40, len - 40, h->snapshots_offset + pos + 40,
				    "the snapshot table", msg, msglen)))
			goto fail;
		if (extra >= 8)
			e->vm_state_size = be64_get(buf + 40);
		if (extra >= 16)
			e->disk_size = be64_get(buf + 48);
		if (extra >= 24)
			e->icount = be64_get(buf + 56);
		e->id = dup_bytes(buf + 40 + extra, id_len);
		e->name = dup_bytes(buf + 40 + extra + id_len, name_len);
		if (!e->id || !e->name) {
			r = -ENOMEM;
			snprintf(msg, msglen, "out of memory");
			goto fail;
		}
		if ((uint64_t)e->l1_size * 8 > QCOW2_MAX_L1_BYTES ||
		    !table_ok(h, e->l1_offset, (uint64_t)e->l1_size * 8)) {
			r = bad(
			    msg, msglen,
			    "snapshot %u ('%s'): L1 table (offset 0x%llx, %u entries) is invalid",
			    i, e->name, (unsigned long long)e->l1_offset, e->l1_size);
			goto fail;
		}
		pos += (len + 7) & ~7ULL;
		if (pos > QM_MAX_SNAPSHOT_TABLE) {
			r = bad(msg, msglen, "the snapshot table is larger than %u MiB",
				QM_MAX_SNAPSHOT_TABLE >> 20);
			goto fail;
		}
	}
	free(buf);
	*out = s;
	*bytes = pos;
	return 0;
fail:
	free(buf);
	qm_free_snapshots(s, h->nb_snapshots);
	return r ? r : -EINVAL;
}

void qm_free_bitmaps(struct qm_bitmap *b, uint32_t n)
{
	for (uint32_t i = 0; b && i < n; i++)
		free(b[i].name);
	free(b);
}

int qm_read_bitmaps(int fd, const struct qm_header *h, struct qm_bitmap **out, char *msg,
		    size_t msglen)
{
	*out = NULL;
	if (!h->has_bitmaps)
		return 0;
	if (!h->nb_bitmaps || h->nb_bitmaps > QM_MAX_BITMAPS ||
	    h->bitmap_dir_size > QM_MAX_BITMAP_DIR || h->bitmap_dir_size < 24ULL * h->nb_bitmaps ||
	    !table_ok(h, h->bitmap_dir_offset, h->bitmap_dir_size))
		return bad(msg, msglen,
			   "bitmap directory (%u bitmaps, %llu bytes at 0x%llx) is invalid",
			   h->nb_bitmaps, (unsigned long long)h->bitmap_dir_size,
			   (unsigned long long)h->bitmap_dir_offset);
	uint8_t *dir = malloc(h->bitmap_dir_size);
	struct qm_bitmap *b = calloc(h->nb_bitmaps, sizeof(*b));
	int r = 0;
	if (!dir || !b) {
		r = -ENOMEM;
		snprintf(msg, msglen, "out of memory");
		goto fail;
	}
	if ((r = table_read(fd, dir, h->bitmap_dir_size, h->bitmap_dir_offset,
			    "the bitmap directory", msg, msglen)))
		goto fail;
	uint64_t p = 0;
	for (uint32_t i = 0; i < h->nb_bitmaps; i++) {
		if (h->bitmap_dir_size - p < 24) {
			r = bad(msg, msglen, "bitmap directory entry %u runs past the directory",
				i);
			goto fail;
		}
		const uint8_t *e = dir + p;
		b[i].table_offset = be64_get(e);
		b[i].table_size = be32_get(e + 8);
		b[i].flags = be32_get(e + 12);
		b[i].type = e[16];
		b[i].granularity_bits = e[17];
		uint16_t name_len = be16_get(e + 18);
		uint32_t extra = be32_get(e + 20);
		uint64_t len = 24 + (uint64_t)extra + name_len;
		if (len > h->bitmap_dir_size - p || !name_len) {
			r = bad(msg, msglen, "bitmap directory entry %u is malformed", i);
			goto fail;
		}
		if (!(b[i].name = dup_bytes(e + 24 + extra, name_len))) {
			r = -ENOMEM;
			snprintf(msg, msglen, "out of memory");
			goto fail;
		}
		if (!table_ok(h, b[i].table_offset, (uint64_t)b[i].table_size * 8)) {
			r = bad(msg, msglen, "bitmap '%s': table offset 0x%llx is invalid",
				b[i].name, (unsigned long long)b[i].table_offset);
			goto fail;
		}
		p += (len + 7) & ~7ULL;
	}
	free(dir);
	*out = b;
	return 0;
fail:
	free(dir);
	qm_free_bitmaps(b, h->nb_bitmaps);
	return r ? r : -EINVAL;
}
