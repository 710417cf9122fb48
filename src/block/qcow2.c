/* qcow2 driver: map guest ranges through L1/L2 tables, reads on
 * io_uring (down the backing chain), overwrites on io_uring, allocating writes, discard, zeroing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "common/log.h"

#define TAG "qcow2"

bool qcow2_probe(const uint8_t *head, size_t len)
{
	return len >= 8 && be32_get(head) == QCOW2_MAGIC &&
	       (be32_get(head + 4) == 2 || be32_get(head + 4) == 3);
}

static inline uint64_t l2e(const uint64_t *t, uint64_t i)
{
	return be64_get((const uint8_t *)(t + i));
}

static inline void l2e_set(uint64_t *t, uint64_t i, uint64_t v)
{
	be64_put((uint8_t *)(t + i), v);
}

static int corrupt(struct qcow2 *q, const char *what, uint64_t v)
{
	if (!q->corrupt)
		log_err(TAG, "%s: %s (0x%llx): the image is corrupt; the disk is read-only now",
			q->b->path, what, (unsigned long long)v);
	q->corrupt = true;
	return -EIO;
}

/* What one guest cluster maps to. */
enum kind { K_DATA, K_ZERO, K_UNALLOC, K_COMPRESSED };

struct map {
	enum kind kind;
	uint64_t host;	/* K_DATA: host offset of the cluster */
	bool copied;	/* K_DATA: refcount is exactly one, may be overwritten in place */
	uint64_t entry; /* the raw L2 entry */
};

static int lookup(struct qcow2 *q, uint64_t gcluster, struct map *m)
{
	uint64_t l1i = gcluster >> q->l2_bits, l2i = gcluster & ((1ULL << q->l2_bits) - 1);
	uint64_t *t;
	memset(m, 0, sizeof(*m));
	int r = qcow2_l2_get(q, l1i, &t);
	if (r == -EUCLEAN)
		return corrupt(q, "L2 table offset invalid", q->l1[l1i]);
	if (r)
		return r;
	if (!t) {
		m->kind = K_UNALLOC;
		return 0;
	}
	uint64_t e = l2e(t, l2i);
	m->entry = e;
	if (e & QCOW2_OFLAG_COMPRESSED) {
		m->kind = K_COMPRESSED;
		return 0;
	}
	m->host = e & QCOW2_OFFSET_MASK;
	m->copied = e & QCOW2_OFLAG_COPIED;
	if ((e & QCOW2_OFLAG_ZERO) && q->version >= 3)
		m->kind = K_ZERO;
	else if (m->host)
		m->kind = K_DATA;
	else
		m->kind = K_UNALLOC;
	if (m->host && (m->host & (q->cluster_size - 1)))
		return corrupt(q, "unaligned data cluster offset", e);
	return 0;
}

/* ---- iovec helpers ---- */

/* The part [skip, skip+len) of iov as a new array (malloc'd into *out). */
static int iov_slice(const struct iovec *iov, unsigned n, uint64_t skip, uint64_t len,
		     struct iovec **out, unsigned *outn)
{
	unsigned i = 0, k = 0;
	while (i < n && skip >= iov[i].iov_len)
		skip -= iov[i++].iov_len;
	struct iovec *o = malloc((n - i + 1) * sizeof(*o));
	if (!o)
		return -ENOMEM;
	for (; i < n && len; i++) {
		uint64_t c = iov[i].iov_len - skip;
		if (c > len)
			c = len;
		o[k++] = (struct iovec){(uint8_t *)iov[i].iov_base + skip, c};
		len -= c;
		skip = 0;
	}
	*out = o;
	*outn = k;
	return len ? -EINVAL : 0;
}

static void iov_memset(const struct iovec *iov, unsigned n, uint64_t skip, uint64_t len)
{
	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		uint64_t c = iov[i].iov_len - skip;
		if (c > len)
			c = len;
		memset((uint8_t *)iov[i].iov_base + skip, 0, c);
		len -= c;
		skip = 0;
	}
}

static void iov_copy_out(const struct iovec *iov, unsigned n, uint64_t skip, uint8_t *dst,
			 uint64_t len)
{
	for (unsigned i = 0; i < n && len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		uint64_t c = iov[i].iov_len - skip;
		if (c > len)
			c = len;
		memcpy(dst, (uint8_t *)iov[i].iov_base + skip, c);
		dst += c;
		len -= c;
		skip = 0;
	}
}

/* ---- synchronous reads (copy-on-write fills, backing images) ---- */

static int qcow2_pread(struct blk *b, uint64_t off, uint8_t *buf, uint64_t len);

/* Read [off, off+len) of any image in a chain; past its end reads as zeroes. */
static int chain_pread(struct blk *b, uint64_t off, uint8_t *buf, uint64_t len)
{
	if (off >= b->size) {
		memset(buf, 0, len);
		return 0;
	}
	if (off + len > b->size) {
		memset(buf + (b->size - off), 0, off + len - b->size);
		len = b->size - off;
	}
	if (b->drv == &blk_raw_driver)
		return blk_pread_full(b->fd, buf, len, off);
	return qcow2_pread(b, off, buf, len);
}

static int qcow2_pread(struct blk *b, uint64_t off, uint8_t *buf, uint64_t len)
{
	struct qcow2 *q = b->priv;
	while (len) {
		uint64_t in = off & (q->cluster_size - 1), c = q->cluster_size - in;
		if (c > len)
			c = len;
		struct map m;
		int r = lookup(q, off >> q->cluster_bits, &m);
		if (r)
			return r;
		switch (m.kind) {
		case K_DATA:
			r = blk_pread_full(q->fd, buf, c, m.host + in);
			break;
		case K_ZERO:
			memset(buf, 0, c);
			break;
		case K_UNALLOC:
			if (b->backing)
				r = chain_pread(b->backing, off, buf, c);
			else
				memset(buf, 0, c);
			break;
		case K_COMPRESSED:
			r = -ENOTSUP;
			break;
		}
		if (r)
			return r;
		off += c, buf += c, len -= c;
	}
	return 0;
}

/* ---- writes ---- */

/* Set one L2 entry, dropping the reference the old entry held. */
static int set_entry(struct qcow2 *q, uint64_t gcluster, uint64_t v)
{
	uint64_t l1i = gcluster >> q->l2_bits, l2i = gcluster & ((1ULL << q->l2_bits) - 1);
	uint64_t *t;
	int r = qcow2_l2_get_alloc(q, l1i, &t);
	if (r == -EUCLEAN)
		return corrupt(q, "metadata inconsistent while allocating", l1i);
	if (r)
		return r;
	uint64_t old = l2e(t, l2i);
	l2e_set(t, l2i, v);
	qcow2_l2_mark_dirty(q, l1i);
	if (old & QCOW2_OFLAG_COMPRESSED) {
		/* The compressed data holds one reference to each host cluster it touches. */
		unsigned x = 62 - (q->cluster_bits - 8);
		uint64_t coff = old & ((1ULL << x) - 1);
		uint64_t sectors = ((old >> x) & ((1ULL << (q->cluster_bits - 8)) - 1)) + 1;
		uint64_t end = (coff & ~511ULL) + sectors * 512;
		for (uint64_t c = coff >> q->cluster_bits; c <= (end - 1) >> q->cluster_bits; c++)
			if ((r = qcow2_free_cluster(q, c)))
				return r == -EUCLEAN
					   ? corrupt(q, "freed compressed data is free or metadata",
						     old)
					   : r;
		return 0;
	}
	uint64_t oh = old & QCOW2_OFFSET_MASK;
	if (oh && oh != (v & QCOW2_OFFSET_MASK)) {
		r = qcow2_free_cluster(q, oh >> q->cluster_bits);
		if (r == -EUCLEAN)
			return corrupt(q, "cluster to free is free or metadata", old);
		return r;
	}
	return 0;
}

/*
 * Write [off, off+len) (from iov at skip) into clusters that need new space: fill partial clusters
 * with their old contents, write everything to fresh clusters at the end of the image, then point
 * the L2 entries at them. The L2 change reaches the disk only at the next flush, after the data.
 */
static int alloc_write(struct qcow2 *q, uint64_t off, const struct iovec *iov, unsigned n,
		       uint64_t skip, uint64_t len)
{
	uint64_t c0 = off >> q->cluster_bits, c1 = (off + len - 1) >> q->cluster_bits;
	uint64_t nc = c1 - c0 + 1, bytes = nc << q->cluster_bits,
		 in = off - (c0 << q->cluster_bits);
	uint8_t *buf;
	int r;
	if (posix_memalign((void **)&buf, 4096, bytes))
		return -ENOMEM;
	if (in && (r = qcow2_pread(q->b, c0 << q->cluster_bits, buf, q->cluster_size)))
		goto out;
	if ((in + len) & (q->cluster_size - 1) && (c1 != c0 || !in) &&
	    (r = qcow2_pread(q->b, c1 << q->cluster_bits, buf + ((nc - 1) << q->cluster_bits),
			     q->cluster_size)))
		goto out;
	if (iov)
		iov_copy_out(iov, n, skip, buf + in, len);
	else
		memset(buf + in, 0, len);
	uint64_t h;
	if ((r = qcow2_alloc(q, nc, &h))) {
		if (r == -EUCLEAN)
			r = corrupt(q, "refcount structures inconsistent", c0);
		goto out;
	}
	if ((r = blk_pwrite_full(q->fd, buf, bytes, h << q->cluster_bits)))
		goto out;
	for (uint64_t i = 0; i < nc && !r; i++)
		r = set_entry(q, c0 + i, ((h + i) << q->cluster_bits) | QCOW2_OFLAG_COPIED);
out:
	free(buf);
	return r;
}

/* Synchronous write of len bytes (iov NULL: zeroes) at off, allocating where needed. */
static int write_sync(struct qcow2 *q, uint64_t off, const struct iovec *iov, unsigned n,
		      uint64_t len)
{
	uint64_t done = 0;
	while (done < len) {
		uint64_t o = off + done, in = o & (q->cluster_size - 1);
		struct map m;
		int r = lookup(q, o >> q->cluster_bits, &m);
		if (r)
			return r;
		bool in_place = m.kind == K_DATA && m.copied;
		/* Extend over following clusters of the same sort (in place and contiguous, or
		 * not). */
		uint64_t c = q->cluster_size - in;
		while (done + c < len) {
			struct map m2;
			if ((r = lookup(q, (o + c) >> q->cluster_bits, &m2)))
				return r;
			bool ip2 = m2.kind == K_DATA && m2.copied;
			if (ip2 != in_place || (ip2 && m2.host != m.host + in + c))
				break;
			c += q->cluster_size;
		}
		if (c > len - done)
			c = len - done;
		if (in_place) {
			if (qcow2_meta_overlaps(q, m.host >> q->cluster_bits,
						(in + c + q->cluster_size - 1) >> q->cluster_bits))
				return corrupt(q, "data cluster overlaps metadata", m.host);
			if (iov) {
				uint8_t *tmp;
				if (posix_memalign((void **)&tmp, 4096, c))
					return -ENOMEM;
				iov_copy_out(iov, n, done, tmp, c);
				r = blk_pwrite_full(q->fd, tmp, c, m.host + in);
				free(tmp);
			} else {
				for (uint64_t z = 0; z < c && !r;) {
					uint64_t zc =
					    c - z < q->cluster_size ? c - z : q->cluster_size;
					memset(q->buf, 0, zc);
					r = blk_pwrite_full(q->fd, q->buf, zc, m.host + in + z);
					z += zc;
				}
			}
		} else {
			r = alloc_write(q, o, iov, n, done, c);
		}
		if (r)
			return r;
		done += c;
	}
	return 0;
}

/* ---- asynchronous reads and writes ---- */

struct q2_req {
	struct blk_aio *user;
	uint64_t len;
	int err;
	unsigned pending;
};

struct q2_part {
	struct blk_aio aio;
	struct q2_req *req;
	struct iovec *iov;
	uint64_t len;
};

static void req_put(struct q2_req *rq)
{
	if (--rq->pending)
		return;
	struct blk_aio *u = rq->user;
	int res = rq->err ? rq->err : (int)rq->len;
	free(rq);
	u->done(u, res);
}

static void part_done(struct blk_aio *a, int res)
{
	struct q2_part *p = (struct q2_part *)a;
	struct q2_req *rq = p->req;
	if (res < 0 && !rq->err)
		rq->err = res;
	else if (res >= 0 && (uint64_t)res != p->len && !rq->err)
		rq->err = -EIO;
	free(p->iov);
	free(p);
	req_put(rq);
}

/* Start one piece of a request: a read/write of the image file, or a read of the backing image. */
static int start_part(struct qcow2 *q, struct io_uring *ring, struct q2_req *rq, bool write,
		      bool backing, uint64_t off, const struct iovec *iov, unsigned n,
		      uint64_t skip, uint64_t len)
{
	struct q2_part *p = calloc(1, sizeof(*p));
	unsigned pn;
	if (!p)
		return -ENOMEM;
	int r = iov_slice(iov, n, skip, len, &p->iov, &pn);
	if (r) {
		free(p->iov);
		free(p);
		return r;
	}
	p->aio.done = part_done;
	p->req = rq;
	p->len = len;
	rq->pending++;
	if (backing) {
		struct blk *bb = q->b->backing;
		r = bb->drv->submit_rw(bb, ring, &p->aio, false, off, p->iov, pn, len);
	} else {
		struct io_uring_sqe *sqe = blk_get_sqe(ring);
		if (!sqe) {
			r = -EBUSY;
		} else {
			if (write)
				io_uring_prep_writev(sqe, q->fd, p->iov, pn, off);
			else
				io_uring_prep_readv(sqe, q->fd, p->iov, pn, off);
			io_uring_sqe_set_data(sqe, &p->aio);
		}
	}
	if (r) {
		rq->pending--;
		free(p->iov);
		free(p);
	}
	return r;
}

/* Read [off, off+len) into iov: data clusters from the file, holes from below, zeroes in place. */
static int read_parts(struct qcow2 *q, struct io_uring *ring, struct q2_req *rq, uint64_t off,
		      const struct iovec *iov, unsigned n, uint64_t len)
{
	uint64_t done = 0;
	struct blk *bb = q->b->backing;
	while (done < len) {
		uint64_t o = off + done, in = o & (q->cluster_size - 1);
		struct map m, m2;
		int r = lookup(q, o >> q->cluster_bits, &m);
		if (r)
			return r;
		uint64_t c = q->cluster_size - in;
		while (done + c < len) { /* coalesce clusters that continue this extent */
			if ((r = lookup(q, (o + c) >> q->cluster_bits, &m2)))
				return r;
			bool same = m.kind == K_DATA
					? m2.kind == K_DATA && m2.host == m.host + in + c
					: m2.kind == m.kind;
			if (!same)
				break;
			c += q->cluster_size;
		}
		if (c > len - done)
			c = len - done;
		switch (m.kind) {
		case K_DATA:
			r = start_part(q, ring, rq, false, false, m.host + in, iov, n, done, c);
			break;
		case K_COMPRESSED:
			log_err(TAG,
				"%s: compressed clusters are not supported (convert the image "
				"with qemu-img convert -O qcow2)",
				q->b->path);
			r = -ENOTSUP;
			break;
		case K_UNALLOC:
			if (bb && o < bb->size) {
				uint64_t below = bb->size - o < c ? bb->size - o : c;
				r = start_part(q, ring, rq, false, true, o, iov, n, done, below);
				if (!r && below < c)
					iov_memset(iov, n, done + below, c - below);
				break;
			}
			__attribute__((fallthrough)); /* nothing below */
		case K_ZERO:
			iov_memset(iov, n, done, c);
			break;
		}
		if (r)
			return r;
		done += c;
	}
	return 0;
}

static int qcow2_submit_rw(struct blk *b, struct io_uring *ring, struct blk_aio *a, bool write,
			   uint64_t off, const struct iovec *iov, unsigned n, uint64_t len)
{
	struct qcow2 *q = b->priv;
	if (write && (q->corrupt || q->readonly))
		return -EROFS;
	if (!len || off + len > b->size || off + len < off)
		return -EINVAL;
	if (write)
		qcow2_bitmaps_mark(q, off, len);
	uint64_t in = off & (q->cluster_size - 1);
	struct map m;
	int r = lookup(q, off >> q->cluster_bits, &m);
	if (r)
		return r;
	/* Fast path: the whole request is inside one data cluster (or a contiguous run). */
	if (m.kind == K_DATA && (!write || m.copied)) {
		uint64_t c = q->cluster_size - in;
		while (c < len) {
			struct map m2;
			if ((r = lookup(q, (off + c) >> q->cluster_bits, &m2)))
				return r;
			if (m2.kind != K_DATA || m2.host != m.host + in + c ||
			    (write && !m2.copied))
				break;
			c += q->cluster_size;
		}
		if (c >= len) {
			if (write && qcow2_meta_overlaps(q, m.host >> q->cluster_bits,
							 (in + len + q->cluster_size - 1) >>
							     q->cluster_bits))
				return corrupt(q, "data cluster overlaps metadata", m.host);
			struct io_uring_sqe *sqe = blk_get_sqe(ring);
			if (!sqe)
				return -EBUSY;
			if (write)
				io_uring_prep_writev(sqe, q->fd, iov, n, m.host + in);
			else
				io_uring_prep_readv(sqe, q->fd, iov, n, m.host + in);
			io_uring_sqe_set_data(sqe, a);
			return 0;
		}
	}
	if (write) { /* allocating or mixed writes are done now, in order */
		r = write_sync(q, off, iov, n, len);
		if (r)
			return r;
		a->done(a, (int)len);
		return 0;
	}
	struct q2_req *rq = calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->user = a;
	rq->len = len;
	rq->pending = 1; /* held until every part is started */
	r = read_parts(q, ring, rq, off, iov, n, len);
	if (r) {
		if (rq->pending == 1) { /* nothing started: the caller reports the error */
			free(rq);
			return r;
		}
		rq->err = r;
	}
	req_put(rq);
	return 0;
}

static int qcow2_submit_flush(struct blk *b, struct io_uring *ring, struct blk_aio *a)
{
	struct qcow2 *q = b->priv;
	if (!q->readonly && !q->corrupt) {
		int r = qcow2_flush_meta(q, false);
		if (r) {
			log_err(TAG, "%s: writing metadata: %s", b->path, strerror(-r));
			return r;
		}
	}
	struct io_uring_sqe *sqe = blk_get_sqe(ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, q->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, a);
	return 0;
}

/* Whole clusters of [off, off+len) become zero (v3) or unallocated; partial ones are zeroed by
 * writing when zero is true, left alone otherwise (discard is advisory). */
static int zero_or_discard(struct blk *b, uint64_t off, uint64_t len, bool zero)
{
	struct qcow2 *q = b->priv;
	if (q->corrupt || q->readonly)
		return -EROFS;
	uint64_t end = off + len, cs = q->cluster_size;
	uint64_t a = (off + cs - 1) & ~(cs - 1), z = end & ~(cs - 1);
	int r = 0;
	qcow2_bitmaps_mark(q, off, len);
	if (a >= z) { /* no whole cluster inside */
		return zero ? write_sync(q, off, NULL, 0, len) : 0;
	}
	if (zero && off < a && (r = write_sync(q, off, NULL, 0, a - off)))
		return r;
	if (zero && z < end && (r = write_sync(q, z, NULL, 0, end - z)))
		return r;
	bool below = b->backing != NULL;
	for (uint64_t c = a; c < z && !r; c += cs) {
		struct map m;
		if ((r = lookup(q, c >> q->cluster_bits, &m)))
			break;
		if (q->version < 3) {
			/* No zero flag: only an unallocated cluster without a backing image reads
			 * as zeroes. */
			if (below)
				r = zero ? write_sync(q, c, NULL, 0, cs) : 0;
			else if (m.kind != K_UNALLOC)
				r = set_entry(q, c >> q->cluster_bits, 0);
			continue;
		}
		if (m.kind == K_UNALLOC && !below)
			continue;
		if (m.kind == K_ZERO && !m.host)
			continue;
		r = set_entry(q, c >> q->cluster_bits, below || zero ? QCOW2_OFLAG_ZERO : 0);
	}
	return r;
}

static int qcow2_discard(struct blk *b, uint64_t off, uint64_t len)
{
	return zero_or_discard(b, off, len, false);
}

static int qcow2_write_zeroes(struct blk *b, uint64_t off, uint64_t len, bool may_unmap)
{
	(void)may_unmap; /* zero clusters never keep their space */
	return zero_or_discard(b, off, len, true);
}

static int qcow2_close(struct blk *b)
{
	struct qcow2 *q = b->priv;
	int r = 0;
	if (!q)
		return 0;
	if (!q->readonly && !q->corrupt) {
		r = qcow2_bitmaps_store(q);
		int r2 = qcow2_flush_meta(q, true);
		r = r ? r : r2;
	}
	qcow2_bitmaps_free(q);
	qcow2_cache_free(&q->l2c);
	qcow2_cache_free(&q->rbc);
	free(q->l1);
	free(q->reftable);
	free(q->meta);
	free(q->header);
	free(q->buf);
	free(q);
	b->priv = NULL;
	return r;
}

static int qcow2_status(struct blk *b, uint64_t off, uint64_t len, enum blk_status *st,
			uint64_t *run)
{
	struct qcow2 *q = b->priv;
	uint64_t done = 0;
	while (done < len) {
		struct map m;
		int r = lookup(q, (off + done) >> q->cluster_bits, &m);
		if (r)
			return r;
		/* Compressed clusters count as data (reading them reports ENOTSUP). */
		enum blk_status k = m.kind == K_ZERO	  ? BLK_ST_ZERO
				    : m.kind == K_UNALLOC ? BLK_ST_UNALLOC
							  : BLK_ST_DATA;
		if (done == 0)
			*st = k;
		else if (k != *st)
			break;
		done += q->cluster_size - ((off + done) & (q->cluster_size - 1));
	}
	*run = done < len ? done : len;
	return 0;
}

const struct blk_driver qcow2_driver = {
    .name = "qcow2",
    .submit_rw = qcow2_submit_rw,
    .submit_flush = qcow2_submit_flush,
    .discard = qcow2_discard,
    .write_zeroes = qcow2_write_zeroes,
    .close = qcow2_close,
    .status = qcow2_status,
};
