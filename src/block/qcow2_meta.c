/* qcow2 metadata: the L2-table and refcount-block caches, refcounts, cluster allocation at the
 * end of the image, the overlap-check set, and crash-safe ordered write-back. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/qcow2.h"

/* ---- metadata cluster set (sorted) ---- */

static uint64_t meta_lower_bound(const struct qcow2 *q, uint64_t c)
{
	uint64_t lo = 0, hi = q->nmeta;
	while (lo < hi) {
		uint64_t mid = (lo + hi) / 2;
		if (q->meta[mid] < c)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int qcow2_meta_add(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t c = cluster + i, pos = meta_lower_bound(q, c);
		if (pos < q->nmeta && q->meta[pos] == c)
			return -EUCLEAN; /* two metadata structures in one cluster */
		if (q->nmeta == q->meta_cap) {
			uint64_t cap = q->meta_cap ? q->meta_cap * 2 : 64;
			uint64_t *m = realloc(q->meta, cap * sizeof(*m));
			if (!m)
				return -ENOMEM;
			q->meta = m;
			q->meta_cap = cap;
		}
		memmove(q->meta + pos + 1, q->meta + pos, (q->nmeta - pos) * sizeof(*q->meta));
		q->meta[pos] = c;
		q->nmeta++;
	}
	return 0;
}

int qcow2_meta_append(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	if (n > (UINT64_MAX >> 4) - q->nmeta)
		return -ENOMEM;
	if (q->nmeta + n > q->meta_cap) {
		uint64_t cap = q->meta_cap ? q->meta_cap : 64;
		while (cap < q->nmeta + n)
			cap *= 2;
		uint64_t *m = realloc(q->meta, cap * sizeof(*m));
		if (!m)
			return -ENOMEM;
		q->meta = m;
		q->meta_cap = cap;
	}
	for (uint64_t i = 0; i < n; i++)
		q->meta[q->nmeta++] = cluster + i;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int qcow2_meta_sort(struct qcow2 *q, uint64_t *dup)
{
	qsort(q->meta, q->nmeta, sizeof(*q->meta), cmp_u64);
	for (uint64_t i = 1; i < q->nmeta; i++)
		if (q->meta[i] == q->meta[i - 1]) {
			*dup = q->meta[i];
			return -EUCLEAN;
		}
	return 0;
}

void qcow2_meta_del(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t c = cluster + i, pos = meta_lower_bound(q, c);
		if (pos < q->nmeta && q->meta[pos] == c) {
			memmove(q->meta + pos, q->meta + pos + 1,
				(q->nmeta - pos - 1) * sizeof(*q->meta));
			q->nmeta--;
		}
	}
}

bool qcow2_meta_overlaps(const struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	uint64_t pos = meta_lower_bound(q, cluster);
	return pos < q->nmeta && q->meta[pos] < cluster + n;
}

/* ---- caches ---- */

int qcow2_cache_init(struct qcow2_cache *c, unsigned n, uint64_t nslot, uint64_t cluster_size)
{
	(void)cluster_size;
	memset(c, 0, sizeof(*c));
	c->e = calloc(n, sizeof(*c->e));
	c->slot = malloc((nslot ? nslot : 1) * sizeof(*c->slot));
	if (!c->e || !c->slot) {
		free(c->e);
		free(c->slot);
		return -ENOMEM;
	}
	for (uint64_t i = 0; i < nslot; i++)
		c->slot[i] = -1;
	c->n = n;
	c->nslot = nslot;
	c->head = c->tail = -1;
	for (unsigned i = 0; i < n; i++)
		c->e[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
	c->free = 0;
	return 0;
}

void qcow2_cache_free(struct qcow2_cache *c)
{
	for (unsigned i = 0; i < c->n; i++)
		free(c->e ? c->e[i].data : NULL);
	free(c->e);
	free(c->slot);
	memset(c, 0, sizeof(*c));
}

static int cache_grow_slots(struct qcow2_cache *c, uint64_t nslot)
{
	if (nslot <= c->nslot)
		return 0;
	int32_t *s = realloc(c->slot, nslot * sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (uint64_t i = c->nslot; i < nslot; i++)
		s[i] = -1;
	c->slot = s;
	c->nslot = nslot;
	return 0;
}

static int write_cluster(struct qcow2 *q, const uint8_t *data, uint64_t off)
{
	return blk_pwrite_full(q->fd, data, q->cluster_size, off);
}

static void lru_unlink(struct qcow2_cache *c, struct qcow2_cached *e)
{
	if (e->prev >= 0)
		c->e[e->prev].next = e->next;
	else
		c->head = e->next;
	if (e->next >= 0)
		c->e[e->next].prev = e->prev;
	else
		c->tail = e->prev;
}

static void lru_push_front(struct qcow2_cache *c, struct qcow2_cached *e)
{
	int32_t i = (int32_t)(e - c->e);
	e->prev = -1;
	e->next = c->head;
	if (c->head >= 0)
		c->e[c->head].prev = i;
	c->head = i;
	if (c->tail < 0)
		c->tail = i;
}

/* The entry to reuse: a free one, else the least recently used clean one, else the LRU one. */
static struct qcow2_cached *victim(struct qcow2_cache *c)
{
	if (c->free >= 0) {
		struct qcow2_cached *e = &c->e[c->free];
		c->free = e->next;
		return e;
	}
	for (int32_t i = c->tail; i >= 0; i = c->e[i].prev)
		if (!c->e[i].dirty)
			return &c->e[i];
	return &c->e[c->tail];
}

/*
 * A free cache entry for table index idx at file offset off: filled from disk (load) or zeroed.
 * A dirty victim forces an ordered write-back of all metadata first.
 */
static int cache_fill(struct qcow2 *q, struct qcow2_cache *c, uint64_t idx, uint64_t off, bool load,
		      struct qcow2_cached **out)
{
	struct qcow2_cached *v = victim(c);
	if (v->valid && v->dirty) {
		int r = qcow2_flush_meta(q, false);
		if (r)
			return r;
	}
	if (v->valid) {
		c->slot[v->idx] = -1;
		lru_unlink(c, v);
		v->valid = false;
	}
	int r = 0;
	if (!v->data && posix_memalign((void **)&v->data, 4096, q->cluster_size)) {
		v->data = NULL;
		r = -ENOMEM;
	} else if (load) {
		r = blk_pread_full(q->fd, v->data, q->cluster_size, off);
		if (r == -EIO)
			r = -EUCLEAN; /* a table past the end of the file */
	} else {
		memset(v->data, 0, q->cluster_size);
	}
	if (r) { /* give the entry back */
		v->next = c->free;
		c->free = (int32_t)(v - c->e);
		return r;
	}
	v->idx = idx;
	v->off = off;
	v->dirty = !load;
	v->valid = true;
	lru_push_front(c, v);
	c->slot[idx] = (int32_t)(v - c->e);
	*out = v;
	return 0;
}

static struct qcow2_cached *cache_lookup(struct qcow2_cache *c, uint64_t idx)
{
	if (idx >= c->nslot || c->slot[idx] < 0)
		return NULL;
	struct qcow2_cached *e = &c->e[c->slot[idx]];
	if (c->head != c->slot[idx]) {
		lru_unlink(c, e);
		lru_push_front(c, e);
	}
	return e;
}

static bool offset_ok(const struct qcow2 *q, uint64_t off)
{
	return off && !(off & (q->cluster_size - 1)) && off < QCOW2_MAX_OFFSET;
}

/* ---- L2 tables ---- */

int qcow2_l2_get(struct qcow2 *q, uint64_t l1i, uint64_t **table)
{
	*table = NULL;
	if (l1i >= q->l1_size)
		return -EUCLEAN;
	struct qcow2_cached *e = cache_lookup(&q->l2c, l1i);
	if (e) {
		*table = (uint64_t *)e->data;
		return 0;
	}
	uint64_t off = q->l1[l1i] & QCOW2_OFFSET_MASK;
	if (!off)
		return 0;
	if (!offset_ok(q, off))
		return -EUCLEAN;
	int r = cache_fill(q, &q->l2c, l1i, off, true, &e);
	if (r)
		return r;
	*table = (uint64_t *)e->data;
	return 0;
}

int qcow2_l2_get_alloc(struct qcow2 *q, uint64_t l1i, uint64_t **table)
{
	int r = qcow2_l2_get(q, l1i, table);
	if (r || *table)
		return r;
	uint64_t c;
	if ((r = qcow2_alloc(q, 1, &c)))
		return r;
	if ((r = qcow2_meta_add(q, c, 1)))
		return r;
	struct qcow2_cached *e;
	if ((r = cache_fill(q, &q->l2c, l1i, c << q->cluster_bits, false, &e)))
		return r;
	q->l1[l1i] = (c << q->cluster_bits) | QCOW2_OFLAG_COPIED;
	q->l1_dirty = true;
	*table = (uint64_t *)e->data;
	return 0;
}

void qcow2_l2_mark_dirty(struct qcow2 *q, uint64_t l1i)
{
	struct qcow2_cached *e = cache_lookup(&q->l2c, l1i);
	if (e)
		e->dirty = true;
}

/* ---- refcounts ---- */

static uint64_t rc_read(const struct qcow2 *q, const uint8_t *blk, uint64_t i)
{
	switch (q->refcount_order) {
	case 0:
		return (blk[i / 8] >> (i % 8)) & 1;
	case 1:
		return (blk[i / 4] >> (2 * (i % 4))) & 3;
	case 2:
		return (blk[i / 2] >> (4 * (i % 2))) & 15;
	case 3:
		return blk[i];
	case 4:
		return be16_get(blk + 2 * i);
	case 5:
		return be32_get(blk + 4 * i);
	default:
		return be64_get(blk + 8 * i);
	}
}

static void rc_write(const struct qcow2 *q, uint8_t *blk, uint64_t i, uint64_t v)
{
	unsigned sh;
	switch (q->refcount_order) {
	case 0:
	case 1:
	case 2:
		sh = (unsigned)((i % (8u >> q->refcount_order)) << q->refcount_order);
		blk[(i << q->refcount_order) / 8] =
		    (uint8_t)((blk[(i << q->refcount_order) / 8] &
			       ~(((1u << (1u << q->refcount_order)) - 1) << sh)) |
			      (v << sh));
		break;
	case 3:
		blk[i] = (uint8_t)v;
		break;
	case 4:
		be16_put(blk + 2 * i, (uint16_t)v);
		break;
	case 5:
		be32_put(blk + 4 * i, (uint32_t)v);
		break;
	default:
		be64_put(blk + 8 * i, v);
	}
}

/* The refcount block for reftable index rti, loaded; NULL (and 0) if there is none. */
static int rb_get(struct qcow2 *q, uint64_t rti, struct qcow2_cached **out)
{
	*out = NULL;
	if (rti >= q->reftable_entries)
		return 0;
	if ((*out = cache_lookup(&q->rbc, rti)))
		return 0;
	uint64_t off = q->reftable[rti] & QCOW2_OFFSET_MASK;
	if (!off)
		return 0;
	if (!offset_ok(q, off))
		return -EUCLEAN;
	return cache_fill(q, &q->rbc, rti, off, true, out);
}

int qcow2_refcount_get(struct qcow2 *q, uint64_t cluster, uint64_t *rc)
{
	struct qcow2_cached *e;
	int r = rb_get(q, cluster >> q->rb_bits, &e);
	*rc = e ? rc_read(q, e->data, cluster & ((1ULL << q->rb_bits) - 1)) : 0;
	return r;
}

static int refcount_set(struct qcow2 *q, uint64_t cluster, uint64_t v)
{
	struct qcow2_cached *e;
	int r = rb_get(q, cluster >> q->rb_bits, &e);
	if (r)
		return r;
	if (!e)
		return -EUCLEAN; /* callers make sure the block exists */
	rc_write(q, e->data, cluster & ((1ULL << q->rb_bits) - 1), v);
	e->dirty = true;
	return 0;
}

/* The first cluster at or after the frontier whose refcount is 0 and that no table claims (an
 * image may name metadata past its end: such clusters are never handed out). */
static int next_free_cluster(struct qcow2 *q, uint64_t *c)
{
	for (;;) {
		uint64_t rc;
		int r = qcow2_refcount_get(q, q->next_free, &rc);
		if (r)
			return r;
		if (!rc && !qcow2_meta_overlaps(q, q->next_free, 1)) {
			*c = q->next_free;
			return 0;
		}
		if (++q->next_free >= QCOW2_MAX_OFFSET >> q->cluster_bits)
			return -ENOSPC;
	}
}

/*
 * Grow the refcount table so it has at least min entries. The new table and the refcount blocks
 * that describe it are placed together past everything the old table covers; all are written and
 * synced before the header points at them, and only then is the old table freed.
 */
static int grow_reftable(struct qcow2 *q, uint64_t min)
{
	uint64_t per = q->cluster_size / 8, E = 1ULL << q->rb_bits;
	uint64_t T =
	    q->next_free > q->reftable_entries * E ? q->next_free : q->reftable_entries * E;
	uint64_t entries, rc_clusters, k, n;
	for (;;) {
		uint64_t want = q->reftable_entries * 2 > min ? q->reftable_entries * 2 : min;
		k = 0;
		for (;;) {
			entries = (want + per - 1) / per * per;
			rc_clusters = entries / per;
			for (;;) { /* blocks for [T, T+n) themselves live in that range */
				n = rc_clusters + k;
				uint64_t need = ((T + n - 1) >> q->rb_bits) - (T >> q->rb_bits) + 1;
				if (need == k)
					break;
				k = need;
			}
			if (entries > ((T + n - 1) >> q->rb_bits))
				break;
			want = ((T + n - 1) >> q->rb_bits) + 1;
		}
		/* Past any table the image names beyond its end. */
		uint64_t pos = meta_lower_bound(q, T);
		if (pos >= q->nmeta || q->meta[pos] >= T + n)
			break;
		T = q->meta[pos] + 1;
	}
	if (entries * 8 > QCOW2_MAX_REFTABLE_BYTES)
		return -EFBIG;
	int r = qcow2_flush_meta(q, false); /* start from clean metadata */
	if (r)
		return r;
	uint64_t *nt = calloc(entries, sizeof(*nt));
	uint8_t *blk = NULL, *tbuf = NULL;
	if (!nt || posix_memalign((void **)&blk, 4096, q->cluster_size) ||
	    posix_memalign((void **)&tbuf, 4096, rc_clusters * q->cluster_size)) {
		r = -ENOMEM;
		goto out;
	}
	memcpy(nt, q->reftable, q->reftable_entries * sizeof(*nt));
	uint64_t first_rt = T >> q->rb_bits;
	for (uint64_t i = 0; i < k; i++) {
		uint64_t rt = first_rt + i, bc = T + rc_clusters + i;
		memset(blk, 0, q->cluster_size);
		for (uint64_t c = T; c < T + n; c++)
			if ((c >> q->rb_bits) == rt)
				rc_write(q, blk, c & (E - 1), 1);
		if ((r = write_cluster(q, blk, bc << q->cluster_bits)))
			goto out;
		nt[rt] = bc << q->cluster_bits;
	}
	for (uint64_t i = 0; i < entries; i++)
		be64_put(tbuf + 8 * i, nt[i]);
	if ((r = blk_pwrite_full(q->fd, tbuf, rc_clusters * q->cluster_size,
				 T << q->cluster_bits)) ||
	    fdatasync(q->fd) < 0) {
		r = r ? r : -errno;
		goto out;
	}
	uint64_t old_off = q->reftable_offset,
		 old_clusters = (q->reftable_entries * 8 + q->cluster_size - 1) >> q->cluster_bits;
	be64_put(q->header + 48, T << q->cluster_bits);
	be32_put(q->header + 56, (uint32_t)rc_clusters);
	if ((r = qcow2_write_header(q)))
		goto out;
	if ((r = cache_grow_slots(&q->rbc, entries)))
		goto out;
	free(q->reftable);
	q->reftable = nt;
	nt = NULL;
	q->reftable_entries = entries;
	q->reftable_offset = T << q->cluster_bits;
	qcow2_meta_del(q, old_off >> q->cluster_bits, old_clusters);
	if ((r = qcow2_meta_add(q, T, n)))
		goto out;
	q->next_free = T + n;
	for (uint64_t i = 0; i < old_clusters && !r; i++)
		r = qcow2_free_cluster(q, (old_off >> q->cluster_bits) + i);
out:
	free(nt);
	free(blk);
	free(tbuf);
	return r;
}

/* Make sure a refcount block covers cluster c, creating it (and growing the table) if needed. */
static int ensure_rb(struct qcow2 *q, uint64_t c, bool *created)
{
	uint64_t rti = c >> q->rb_bits;
	int r;
	*created = false;
	if (rti >= q->reftable_entries) {
		if ((r = grow_reftable(q, rti + 1)))
			return r;
		*created = true;
		if (q->reftable[rti])
			return 0;
	}
	if (q->reftable[rti] & QCOW2_OFFSET_MASK)
		return 0;
	/* Place the new block at the frontier; it may describe itself or need another block. */
	uint64_t bc;
	if ((r = next_free_cluster(q, &bc)))
		return r;
	q->next_free = bc + 1;
	struct qcow2_cached *e;
	if ((r = cache_fill(q, &q->rbc, rti, bc << q->cluster_bits, false, &e)))
		return r;
	q->reftable[rti] = bc << q->cluster_bits;
	q->reftable_dirty = true;
	*created = true;
	if ((r = qcow2_meta_add(q, bc, 1)))
		return r;
	if ((bc >> q->rb_bits) == rti) {
		rc_write(q, e->data, bc & ((1ULL << q->rb_bits) - 1), 1);
		return 0;
	}
	bool dummy;
	if ((r = ensure_rb(q, bc, &dummy)))
		return r;
	return refcount_set(q, bc, 1);
}

int qcow2_alloc(struct qcow2 *q, uint64_t n, uint64_t *first)
{
	int r;
	for (;;) {
		uint64_t start;
		if ((r = next_free_cluster(q, &start)))
			return r;
		bool restart = false;
		for (uint64_t i = 0; i < n && !restart; i++) {
			bool created;
			uint64_t rc;
			if ((r = ensure_rb(q, start + i, &created)))
				return r;
			if ((r = qcow2_refcount_get(q, start + i, &rc)))
				return r;
			bool taken = rc || qcow2_meta_overlaps(q, start + i, 1);
			if (created || taken) { /* the run moved or is taken: look again */
				if (taken && q->next_free <= start + i)
					q->next_free = start + i + 1;
				restart = true;
			}
		}
		if (restart)
			continue;
		for (uint64_t i = 0; i < n; i++)
			if ((r = refcount_set(q, start + i, 1)))
				return r;
		q->next_free = start + n;
		*first = start;
		return 0;
	}
}

int qcow2_free_cluster(struct qcow2 *q, uint64_t cluster)
{
	/* Metadata leaves the set before it is freed; a data reference to a cluster still in it
	 * means the image is corrupt, and freeing it would punch a hole in a live table. */
	if (qcow2_meta_overlaps(q, cluster, 1))
		return -EUCLEAN;
	uint64_t rc;
	int r = qcow2_refcount_get(q, cluster, &rc);
	if (r)
		return r;
	if (!rc)
		return -EUCLEAN; /* freeing a free cluster: the image is inconsistent */
	if ((r = refcount_set(q, cluster, rc - 1)))
		return r;
	if (rc == 1 &&
	    fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)(cluster << q->cluster_bits), (off_t)q->cluster_size) < 0 &&
	    errno != EOPNOTSUPP)
		return -errno;
	return 0;
}

/* ---- ordered write-back ---- */

bool qcow2_meta_dirty(const struct qcow2 *q)
{
	if (q->l1_dirty || q->reftable_dirty)
		return true;
	for (unsigned i = 0; i < q->l2c.n; i++)
		if (q->l2c.e[i].valid && q->l2c.e[i].dirty)
			return true;
	for (unsigned i = 0; i < q->rbc.n; i++)
		if (q->rbc.e[i].valid && q->rbc.e[i].dirty)
			return true;
	return false;
}

static int write_dirty(struct qcow2 *q, struct qcow2_cache *c, bool *wrote)
{
	for (unsigned i = 0; i < c->n; i++) {
		struct qcow2_cached *e = &c->e[i];
		if (!e->valid || !e->dirty)
			continue;
		int r = write_cluster(q, e->data, e->off);
		if (r)
			return r;
		e->dirty = false;
		*wrote = true;
	}
	return 0;
}

static int write_table(struct qcow2 *q, const uint64_t *t, uint64_t entries, uint64_t off)
{
	uint64_t bytes = (entries * 8 + q->cluster_size - 1) & ~(q->cluster_size - 1);
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, bytes))
		return -ENOMEM;
	memset(buf, 0, bytes);
	for (uint64_t i = 0; i < entries; i++)
		be64_put(buf + 8 * i, t[i]);
	int r = blk_pwrite_full(q->fd, buf, bytes, off);
	free(buf);
	return r;
}

static int sync_fd(struct qcow2 *q)
{
	return fdatasync(q->fd) < 0 ? -errno : 0;
}

/*
 * Guest data and refcounts reach the disk before any table that points at them, so a crash at any
 * moment leaves at worst leaked clusters: refcount blocks, then the refcount table; sync; L2
 * tables; sync; L1 table.
 */
int qcow2_flush_meta(struct qcow2 *q, bool sync)
{
	bool wrote = false, rb = false, l2 = false;
	int r;
	if ((r = write_dirty(q, &q->rbc, &rb)))
		return r;
	if (q->reftable_dirty) {
		if ((rb && (r = sync_fd(q))) ||
		    (r = write_table(q, q->reftable, q->reftable_entries, q->reftable_offset)))
			return r;
		q->reftable_dirty = false;
		rb = true;
	}
	bool l2_dirty = q->l1_dirty;
	for (unsigned i = 0; i < q->l2c.n && !l2_dirty; i++)
		l2_dirty = q->l2c.e[i].valid && q->l2c.e[i].dirty;
	if (l2_dirty) {
		if ((r = sync_fd(q))) /* guest data and refcounts first */
			return r;
		if ((r = write_dirty(q, &q->l2c, &l2)))
			return r;
		if (q->l1_dirty) {
			if (l2 && (r = sync_fd(q)))
				return r;
			if ((r = write_table(q, q->l1, q->l1_size, q->l1_offset)))
				return r;
			q->l1_dirty = false;
			l2 = true;
		}
	}
	wrote = rb || l2;
	if (sync && wrote && (r = sync_fd(q)))
		return r;
	return 0;
}

int qcow2_write_header(struct qcow2 *q)
{
	int r = write_cluster(q, q->header, 0);
	return r ? r : sync_fd(q);
}
