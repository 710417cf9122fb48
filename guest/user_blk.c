/* user_blk.c — ring-3 virtio-blk data path: request posting, disk patterns, benchmark loops. */
#include "guest.h"
#include "virtio_blk.h"

#define TOKEN_ONE 0xb10cULL

static void fill_pattern(uint64_t *p, uint64_t off, uint64_t len, uint64_t key)
{
	for (uint64_t i = 0; i < len / 8; i++)
		p[i] = (off + 8 * i) ^ key;
}

/* Index of the first word that differs from the pattern (or zeroes), or len / 8. */
static uint64_t check_pattern(const uint64_t *p, uint64_t off, uint64_t len, uint64_t key, int zero)
{
	uint64_t i, n = len / 8;

	for (i = 0; i < n; i++)
		if (p[i] != (zero ? 0 : (off + 8 * i) ^ key))
			break;
	return i;
}

/* Post header, data cut into segments, status. Device-writable data for IN and GET_ID; the
 * discard/write-zeroes payload is the slot's own dwz segment (pass it as buf). */
static int post(struct virtq *vq, const struct blk_limits *lim, struct blk_slot *s, uint32_t type,
		uint64_t sector, uint8_t *buf, uint32_t bytes, uint64_t token)
{
	struct vq_buf b[VQ_INDIRECT_MAX];
	uint32_t n = 0, dev_writes = type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID;

	s->hdr.type = type;
	s->hdr.reserved = 0;
	s->hdr.sector = sector;
	s->status = BLK_STATUS_NONE;
	s->bytes = bytes;
	s->buf = buf;
	b[n++] = (struct vq_buf){(uint64_t)&s->hdr, sizeof(s->hdr), 0};
	for (uint32_t off = 0; off < bytes;) {
		uint32_t seg = bytes - off < lim->seg_bytes ? bytes - off : lim->seg_bytes;

		if (n - 1 >= lim->max_segs)
			return -1;
		b[n++] = (struct vq_buf){(uint64_t)(buf + off), seg, dev_writes};
		off += seg;
	}
	b[n++] = (struct vq_buf){(uint64_t)&s->status, 1, 1};
	s->t_submit = vq_rdtsc();
	return vq_add(vq, b, n, lim->indirect, token) < 0 ? -1 : 0;
}

uint64_t u_blk_one(uint64_t arg)
{
	struct blk_one *o = (struct blk_one *)arg;
	uint64_t token;
	uint32_t len;
	int r;

	if (post(o->vq, &o->lim, o->slot, o->type, o->sector, o->buf, o->nodata ? 0 : o->bytes,
		 TOKEN_ONE) < 0)
		return o->fail = BLK_FAIL_ADD;
	vq_kick(o->vq);
	/* The deadline is extended once: guest time can jump (a pause, or a restore on a host that
	 * cannot offset the TSC), which must not fail a request the device is about to complete. */
	int extended = 0;
	uint64_t span = o->deadline - vq_rdtsc();
	while (!(r = vq_get(o->vq, &len, &token))) {
		if (vq_rdtsc() > o->deadline) {
			if (extended++)
				return o->fail = BLK_FAIL_TIMEOUT;
			o->deadline = vq_rdtsc() + span;
		}
	}
	if (r < 0)
		return o->fail = BLK_FAIL_RING;
	if (token != TOKEN_ONE)
		return o->fail = BLK_FAIL_TOKEN;
	o->used_len = len;
	o->status = *(volatile uint8_t *)&o->slot->status;
	return 0;
}

uint64_t u_blk_fill(uint64_t arg)
{
	struct blk_fill *f = (struct blk_fill *)arg;
	uint64_t i;

	if (!f->check) {
		if (f->zero)
			for (i = 0; i < f->len / 8; i++)
				((uint64_t *)f->buf)[i] = 0;
		else
			fill_pattern((uint64_t *)f->buf, f->off, f->len, f->key);
		return 0;
	}
	i = check_pattern((const uint64_t *)f->buf, f->off, f->len, f->key, f->zero);
	if (i == f->len / 8)
		return 0;
	f->bad_off = f->off + 8 * i;
	f->got = ((const uint64_t *)f->buf)[i];
	f->want = f->zero ? 0 : f->bad_off ^ f->key;
	return 1;
}

/* ---- disk-wide jobs ------------------------------------------------------------------------ */

struct wstate {
	uint64_t next; /* pattern and sequential jobs: next byte offset */
	uint64_t rng;
	uint64_t nblocks; /* random jobs: 4 KiB-aligned start positions */
	uint32_t kick_mask;
};

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545f4914f6cdd1dULL;
}

static int is_write(uint32_t op)
{
	return op == BLK_OP_WRITE_PATTERN || op == BLK_OP_RANDWRITE || op == BLK_OP_SEQWRITE;
}

/* Post the next request of the job into slot s: 0 posted, 1 nothing left to do, -1 failure. */
static int start(struct blk_worker *w, struct wstate *st, uint32_t s)
{
	struct blk_slot *slot = &w->slots[s];
	uint8_t *buf = w->data + (uint64_t)s * w->slot_bytes;
	uint32_t q = s % w->nvq, bytes = w->bs;
	uint64_t off;

	if (w->op == BLK_OP_WRITE_PATTERN || w->op == BLK_OP_VERIFY_PATTERN) {
		if (st->next >= w->end)
			return 1;
		off = st->next;
		if (w->end - off < bytes)
			bytes = w->end - off;
		st->next += bytes;
		if (w->op == BLK_OP_WRITE_PATTERN)
			fill_pattern((uint64_t *)buf, off, bytes, w->key);
	} else {
		if (vq_rdtsc() >= w->t_end)
			return 1;
		if (w->op == BLK_OP_RANDREAD || w->op == BLK_OP_RANDWRITE) {
			off =
			    (uint64_t)(((unsigned __int128)xorshift(&st->rng) * st->nblocks) >> 64)
			    << 12;
		} else {
			if (st->next + bytes > w->end)
				st->next = w->first;
			off = st->next;
			st->next += bytes;
		}
	}
	slot->q = q;
	if (post(w->vq[q], &w->lim, slot, is_write(w->op) ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
		 off / BLK_SECTOR, buf, bytes, s) < 0) {
		w->fail = BLK_FAIL_ADD;
		w->fail_off = off;
		return -1;
	}
	st->kick_mask |= 1u << q;
	return 0;
}

static void kick(struct blk_worker *w, struct wstate *st)
{
	for (uint32_t q = 0; q < w->nvq; q++)
		if (st->kick_mask & (1u << q))
			w->kicks += vq_kick(w->vq[q]);
	st->kick_mask = 0;
}

/* A completed request: check status (and data for verify jobs), count it. */
static int complete(struct blk_worker *w, struct blk_slot *s, uint64_t now)
{
	uint64_t off = s->hdr.sector * BLK_SECTOR;

	w->all_reqs++;
	if (s->status != VIRTIO_BLK_S_OK) {
		w->fail = BLK_FAIL_STATUS;
		w->fail_status = s->status;
		w->fail_off = off;
		return -1;
	}
	if (w->op == BLK_OP_VERIFY_PATTERN) {
		uint64_t i = check_pattern((const uint64_t *)s->buf, off, s->bytes, w->key, 0);

		if (i != s->bytes / 8) {
			w->fail = BLK_FAIL_DATA;
			w->fail_off = off + 8 * i;
			w->fail_got = ((const uint64_t *)s->buf)[i];
			w->fail_want = w->fail_off ^ w->key;
			return -1;
		}
	}
	if (w->op <= BLK_OP_VERIFY_PATTERN || (now >= w->t_measure && now < w->t_end)) {
		w->reqs++;
		w->bytes += s->bytes;
		w->lat_sum += now - s->t_submit;
	}
	return 0;
}

/* Keep `depth` requests in flight over the worker's queues until the job is done: a pattern job
 * when its range is covered, a benchmark when t_end passes (requests still in flight then are
 * reaped but not counted). Returns 0 or a BLK_FAIL_* code (also in w->fail). */
uint64_t u_blk_worker(uint64_t arg)
{
	struct blk_worker *w = (struct blk_worker *)arg;
	struct wstate st = {.next = w->first, .rng = w->seed | 1};
	uint32_t inflight = 0;

	if (w->disk_bytes >= w->bs)
		st.nblocks = (w->disk_bytes - w->bs) / 4096 + 1;
	for (uint32_t s = 0; s < w->depth; s++) {
		int r = start(w, &st, s);

		if (r < 0)
			return w->fail;
		if (r)
			break;
		inflight++;
	}
	kick(w, &st);
	while (inflight) {
		for (uint32_t q = 0; q < w->nvq; q++) {
			uint64_t token;
			uint32_t len;
			int r;

			while ((r = vq_get(w->vq[q], &len, &token)) != 0) {
				uint64_t now = vq_rdtsc();

				if (r < 0)
					return w->fail = BLK_FAIL_RING;
				if (token >= w->depth || token % w->nvq != q) {
					w->fail_off = token;
					return w->fail = BLK_FAIL_TOKEN;
				}
				if (complete(w, &w->slots[token], now) < 0)
					return w->fail;
				inflight--;
				r = start(w, &st, token);
				if (r < 0)
					return w->fail;
				if (!r)
					inflight++;
			}
		}
		kick(w, &st);
		if (vq_rdtsc() > w->deadline)
			return w->fail = BLK_FAIL_TIMEOUT;
	}
	return 0;
}
