/* tests_blk.c — `blk`, `blk-ro`, `blk-verify`, blk benchmarks; ring 0 sets up, ring 3 does I/O. */
#include "guest.h"
#include "virtio_blk.h"
#include "x86.h"

#define ONE_US 10000000ULL   /* one request */
#define JOB_US 100000000ULL  /* a whole-disk pass */
#define BIG_BS (128 * 1024)  /* whole-disk passes: request size */
#define BIG_DEPTH 8	     /* ... and requests in flight per worker */
#define ONE_BUF (128 * 1024) /* single-request buffers */
#define ALT_KEY(key) ((key) ^ 0x5a00000000000000ULL)

struct blk_ctx {
	struct blk_dev dev;
	struct blk_slot *slot; /* for single requests */
	uint8_t *buf[2];       /* ONE_BUF each */
	uint32_t nw;	       /* workers (CPUs) used for disk-wide jobs */
	char why[160];
};

static struct blk_ctx ctx;
static struct blk_worker workers[MAX_CPUS];

static const char *blk_fail_name(uint32_t code)
{
	switch (code) {
	case BLK_FAIL_TIMEOUT:
		return "timeout";
	case BLK_FAIL_STATUS:
		return "bad-status";
	case BLK_FAIL_DATA:
		return "mismatch";
	case BLK_FAIL_RING:
		return "bad-used-id";
	case BLK_FAIL_ADD:
		return "cannot-post";
	case BLK_FAIL_TOKEN:
		return "bad-token";
	default:
		return "unknown";
	}
}

static uint64_t pattern_n(void)
{
	return cmdline_u64("pattern", 1) & 0xff;
}

/* Open the disk with up to `max_queues` queues, the CPUs started, and single-request memory. */
static int ctx_open(unsigned int max_queues)
{
	smp_boot_aps();
	dma_reset();
	memset(&ctx, 0, sizeof(ctx));
	if (blk_open(&ctx.dev, max_queues) < 0) {
		snprintf(ctx.why, sizeof(ctx.why), "%s", ctx.dev.v.error);
		return -1;
	}
	ctx.slot = dma_alloc(sizeof(struct blk_slot));
	ctx.buf[0] = dma_alloc(ONE_BUF);
	ctx.buf[1] = dma_alloc(ONE_BUF);
	if (!ctx.slot || !ctx.buf[0] || !ctx.buf[1]) {
		snprintf(ctx.why, sizeof(ctx.why), "no-dma-memory");
		virtio_reset(&ctx.dev.v);
		return -1;
	}
	ctx.nw = smp_ncpus < ctx.dev.nq ? smp_ncpus : ctx.dev.nq;
	return 0;
}

/* One request on queue 0, polled from ring 3: 0 with *status, or -1 (ctx.why). For discard and
 * write-zeroes, `buf` is ignored: the payload is {sector, n_sectors = bytes / 512, flags 0}. */
static int one(uint32_t type, uint64_t sector, uint8_t *buf, uint32_t bytes, uint8_t *status)
{
	struct blk_one o = {
	    .vq = ctx.dev.v.vq[0],
	    .slot = ctx.slot,
	    .lim = ctx.dev.lim,
	    .type = type,
	    .sector = sector,
	    .buf = buf,
	    .bytes = bytes,
	    .nodata = buf == NULL,
	    .deadline = tsc_after_us(ONE_US),
	};

	if (type == VIRTIO_BLK_T_DISCARD || type == VIRTIO_BLK_T_WRITE_ZEROES) {
		ctx.slot->dwz = (struct virtio_blk_dwz){sector, bytes / BLK_SECTOR, 0};
		o.buf = (uint8_t *)&ctx.slot->dwz;
		o.bytes = sizeof(ctx.slot->dwz);
		o.nodata = 0;
	}
	if (user_run(u_blk_one, (uint64_t)&o) != 0) {
		snprintf(ctx.why, sizeof(ctx.why), "%s type=%u sector=%lu status=0x%02x",
			 blk_fail_name(o.fail), type, sector, virtio_status(&ctx.dev.v));
		return -1;
	}
	*status = o.status;
	return 0;
}

/* A request that must end with status `want`. */
static int one_expect(const char *what, uint32_t type, uint64_t sector, uint8_t *buf,
		      uint32_t bytes, uint8_t want)
{
	uint8_t st;

	if (one(type, sector, buf, bytes, &st) < 0)
		return -1;
	if (st != want) {
		snprintf(ctx.why, sizeof(ctx.why), "%s status=%u want=%u sector=%lu bytes=%u", what,
			 st, want, sector, bytes);
		return -1;
	}
	return 0;
}

/* Fill `buf` as disk bytes [off, off+len) with pattern `key` (zero: zeroes), or check it. */
static int fill(uint8_t *buf, uint64_t off, uint64_t len, uint64_t key, int zero, int check,
		const char *what)
{
	struct blk_fill f = {buf, off, len, key, zero, check, 0, 0, 0};

	if (user_run(u_blk_fill, (uint64_t)&f) == 0)
		return 0;
	snprintf(ctx.why, sizeof(ctx.why), "%s mismatch off=0x%lx got=0x%lx want=0x%lx", what,
		 f.bad_off, f.got, f.want);
	return -1;
}

/* ---- disk-wide jobs over all workers -------------------------------------------------------- */

/* Requests one queue can hold at once. */
static uint32_t per_queue_max(const struct virtq *vq, const struct blk_limits *lim, uint32_t bs)
{
	uint32_t segs = (bs + lim->seg_bytes - 1) / lim->seg_bytes;

	return lim->indirect ? vq->size : vq->size / (segs + 2);
}

/* Set up `nw` workers for `op`: worker i drives queues i, i+nw, …, a share of `depth` requests of
 * `bs` bytes, and (pattern and sequential jobs) a bs-aligned share of [first, end). */
static int setup_workers(uint32_t nw, uint32_t op, uint32_t depth, uint32_t bs, uint64_t first,
			 uint64_t end)
{
	uint64_t span = end - first, chunk = (span / nw + bs - 1) / bs * bs;
	uint32_t slot_bytes = (bs + 4095) & ~4095u;

	for (uint32_t i = 0; i < nw; i++) {
		struct blk_worker *w = &workers[i];
		uint32_t qmax;

		memset(w, 0, sizeof(*w));
		w->op = op;
		w->lim = ctx.dev.lim;
		w->bs = bs;
		w->slot_bytes = slot_bytes;
		for (uint32_t q = i; q < ctx.dev.nq && w->nvq < BLK_MAX_WQ; q += nw)
			w->vq[w->nvq++] = ctx.dev.v.vq[q];
		w->depth = depth / nw + (i < depth % nw);
		qmax = per_queue_max(w->vq[0], &w->lim, bs) * w->nvq;
		if (w->depth > qmax)
			w->depth = qmax;
		if (!w->depth)
			w->depth = 1;
		w->first = first + chunk * i < end ? first + chunk * i : end;
		w->end = w->first + chunk < end ? w->first + chunk : end;
		w->disk_bytes = ctx.dev.cfg.capacity * BLK_SECTOR;
		w->seed = 0x9e3779b97f4a7c15ULL * (i + 1) ^ rdtsc();
		w->slots = dma_alloc((uint64_t)w->depth * sizeof(struct blk_slot));
		w->data = dma_alloc((uint64_t)w->depth * slot_bytes);
		if (!w->slots || !w->data) {
			snprintf(ctx.why, sizeof(ctx.why), "no-dma-memory depth=%u bs=%u", w->depth,
				 bs);
			return -1;
		}
	}
	return 0;
}

/* Run workers 1.. on the APs and worker 0 here; -1 with ctx.why on the first failure. */
static int run_workers(uint32_t nw, uint64_t timeout_us)
{
	uint64_t r0;

	for (uint32_t i = 1; i < nw; i++)
		smp_post(i, u_blk_worker, (uint64_t)&workers[i]);
	r0 = user_run(u_blk_worker, (uint64_t)&workers[0]);
	for (uint32_t i = 1; i < nw; i++) {
		if (smp_wait(i, timeout_us) < 0) {
			snprintf(ctx.why, sizeof(ctx.why), "worker-timeout cpu=%u", i);
			return -1;
		}
	}
	(void)r0;
	for (uint32_t i = 0; i < nw; i++) {
		const struct blk_worker *w = &workers[i];

		if (!w->fail)
			continue;
		if (w->fail == BLK_FAIL_DATA)
			snprintf(ctx.why, sizeof(ctx.why),
				 "mismatch off=0x%lx got=0x%lx want=0x%lx cpu=%u", w->fail_off,
				 w->fail_got, w->fail_want, i);
		else
			snprintf(ctx.why, sizeof(ctx.why),
				 "%s off=0x%lx status=%u cpu=%u dev=0x%02x", blk_fail_name(w->fail),
				 w->fail_off, w->fail_status, i, virtio_status(&ctx.dev.v));
		return -1;
	}
	return 0;
}

/* Write or verify the pattern over the whole disk. */
static int whole_disk(uint32_t op, uint64_t key)
{
	uint64_t disk = ctx.dev.cfg.capacity * BLK_SECTOR;

	if (setup_workers(ctx.nw, op, BIG_DEPTH * ctx.nw, BIG_BS, 0, disk) < 0)
		return -1;
	for (uint32_t i = 0; i < ctx.nw; i++) {
		workers[i].key = key;
		workers[i].deadline = tsc_after_us(JOB_US);
	}
	return run_workers(ctx.nw, JOB_US + 10000000);
}

/* ---- blk ------------------------------------------------------------------------------------ */

/* Bytes [sector*512, +bytes): write the other pattern, read it back, check the neighbouring
 * sectors kept the pattern, then restore the pattern and read that back. */
static int partial(uint64_t sector, uint32_t bytes, uint32_t lbs, uint64_t key)
{
	uint64_t off = sector * BLK_SECTOR, cap = ctx.dev.cfg.capacity;
	uint32_t nb = lbs * BLK_SECTOR; /* one logical block, the neighbours' size */
	uint8_t *a = ctx.buf[0], *b = ctx.buf[1];

	if (sector < lbs || sector + bytes / BLK_SECTOR + lbs > cap || bytes > ONE_BUF)
		return 0; /* disk too small for this case */
	if (fill(a, off, bytes, ALT_KEY(key), 0, 0, "") < 0 ||
	    fill(b, off, bytes, 0, 1, 0, "") < 0 ||
	    one_expect("partial-write", VIRTIO_BLK_T_OUT, sector, a, bytes, 0) < 0 ||
	    one_expect("partial-read", VIRTIO_BLK_T_IN, sector, b, bytes, 0) < 0 ||
	    fill(b, off, bytes, ALT_KEY(key), 0, 1, "partial") < 0)
		return -1;
	if (one_expect("neighbour-read", VIRTIO_BLK_T_IN, sector - lbs, b, nb, 0) < 0 ||
	    fill(b, off - nb, nb, key, 0, 1, "before-partial") < 0 ||
	    one_expect("neighbour-read", VIRTIO_BLK_T_IN, sector + bytes / BLK_SECTOR, b, nb, 0) <
		0 ||
	    fill(b, off + bytes, nb, key, 0, 1, "after-partial") < 0)
		return -1;
	if (fill(a, off, bytes, key, 0, 0, "") < 0 ||
	    one_expect("restore-write", VIRTIO_BLK_T_OUT, sector, a, bytes, 0) < 0 ||
	    one_expect("restore-read", VIRTIO_BLK_T_IN, sector, b, bytes, 0) < 0 ||
	    fill(b, off, bytes, key, 0, 1, "restored") < 0)
		return -1;
	return 0;
}

/* Write-zeroes or discard `n` sectors at `sector`, check (write-zeroes reads back zeroes), then
 * put the pattern back. */
static int zero_or_discard(uint32_t type, uint64_t sector, uint32_t n, uint64_t key)
{
	uint64_t off = sector * BLK_SECTOR;
	uint32_t bytes = n * BLK_SECTOR;
	uint8_t *a = ctx.buf[0], *b = ctx.buf[1];
	const char *what = type == VIRTIO_BLK_T_DISCARD ? "discard" : "write-zeroes";

	if (one_expect(what, type, sector, NULL, bytes, 0) < 0)
		return -1;
	if (type == VIRTIO_BLK_T_WRITE_ZEROES &&
	    (fill(b, off, bytes, key, 0, 0, "") < 0 ||
	     one_expect("zeroes-read", VIRTIO_BLK_T_IN, sector, b, bytes, 0) < 0 ||
	     fill(b, off, bytes, 0, 1, 1, "write-zeroes") < 0))
		return -1;
	if (fill(a, off, bytes, key, 0, 0, "") < 0 ||
	    one_expect("restore-write", VIRTIO_BLK_T_OUT, sector, a, bytes, 0) < 0 ||
	    one_expect("restore-read", VIRTIO_BLK_T_IN, sector, b, bytes, 0) < 0 ||
	    fill(b, off, bytes, key, 0, 1, "restored") < 0)
		return -1;
	return 0;
}

/* Printable copy of the GET_ID answer (up to 20 bytes, NUL-terminated if shorter). */
static void id_string(const uint8_t *id, char *out)
{
	int i;

	for (i = 0; i < BLK_ID_BYTES && id[i]; i++)
		out[i] =
		    id[i] >= 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\' ? id[i] : '?';
	out[i] = 0;
}

static int blk_flush(void)
{
	if (!(ctx.dev.v.features & VIRTIO_BLK_F_FLUSH))
		return 0;
	return one_expect("flush", VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0);
}

static int blk_steps(uint64_t key, char *serial, const char **wz, const char **dc)
{
	const struct blk_config *c = &ctx.dev.cfg;
	uint32_t lbs = c->blk_size > BLK_SECTOR ? c->blk_size / BLK_SECTOR : 1; /* in sectors */
	uint8_t st;

	if (ctx.dev.v.features & VIRTIO_BLK_F_RO) {
		snprintf(ctx.why, sizeof(ctx.why), "disk-is-read-only");
		return -1;
	}
	if (whole_disk(BLK_OP_WRITE_PATTERN, key) < 0 || blk_flush() < 0 ||
	    whole_disk(BLK_OP_VERIFY_PATTERN, key) < 0)
		return -1;
	/* 512 B, 4 KiB and 64 KiB + 512 B at odd (logical-block) positions */
	if (partial(7 * lbs, 512 * lbs, lbs, key) < 0 ||
	    partial(101 * lbs, 4096 * lbs, lbs, key) < 0 ||
	    partial(1001 * lbs, (65536 + 512 * lbs), lbs, key) < 0)
		return -1;
	memset(ctx.buf[0], 0, 64);
	if (one_expect("get-id", VIRTIO_BLK_T_GET_ID, 0, ctx.buf[0], BLK_ID_BYTES, 0) < 0)
		return -1;
	id_string(ctx.buf[0], serial);
	if (ctx.dev.v.features & VIRTIO_BLK_F_WRITE_ZEROES) {
		uint32_t n = c->max_write_zeroes_sectors < 256 ? c->max_write_zeroes_sectors : 256;

		n -= n % lbs;
		if (n && 4096 + n < c->capacity) {
			if (zero_or_discard(VIRTIO_BLK_T_WRITE_ZEROES, 4096, n, key) < 0)
				return -1;
			*wz = "ok";
		}
	}
	if (ctx.dev.v.features & VIRTIO_BLK_F_DISCARD) {
		uint32_t align = c->discard_sector_alignment ? c->discard_sector_alignment : lbs;
		uint32_t n = c->max_discard_sectors < 256 ? c->max_discard_sectors : 256;
		uint64_t at = (8192 + align - 1) / align * align;

		n -= n % align;
		if (n && at + n < c->capacity) {
			if (zero_or_discard(VIRTIO_BLK_T_DISCARD, at, n, key) < 0)
				return -1;
			*dc = "ok";
		}
	}
	/* beyond the end: entirely, and straddling it */
	if (one_expect("read-beyond-end", VIRTIO_BLK_T_IN, c->capacity, ctx.buf[1], 512 * lbs, 1) <
		0 ||
	    one_expect("read-across-end", VIRTIO_BLK_T_IN, c->capacity - lbs, ctx.buf[1],
		       1024 * lbs, 1) < 0 ||
	    one_expect("write-beyond-end", VIRTIO_BLK_T_OUT, c->capacity, ctx.buf[1], 512 * lbs,
		       1) < 0)
		return -1;
	if (one_expect("unknown-type", 0x3e, 0, NULL, 0, VIRTIO_BLK_S_UNSUPP) < 0)
		return -1;
	if (one(VIRTIO_BLK_T_IN, 0, ctx.buf[1], 512 * lbs, &st) < 0 || st != 0) {
		snprintf(ctx.why, sizeof(ctx.why), "read-after-errors status=%u", st);
		return -1;
	}
	return blk_flush();
}

void test_blk(void)
{
	uint64_t n = pattern_n(), t0 = rdtsc();
	char serial[BLK_ID_BYTES + 1] = "";
	const char *wz = "no", *dc = "no";

	if (ctx_open(BLK_MAX_WQ) < 0) {
		kprintf("berth-test blk FAIL reason=\"%s\"\n", ctx.why);
		return;
	}
	if (blk_steps(blk_pattern_key(n), serial, &wz, &dc) < 0) {
		kprintf("berth-test blk FAIL reason=\"%s\"\n", ctx.why);
		virtio_reset(&ctx.dev.v);
		return;
	}
	kprintf("berth-test blk PASS sectors=%lu serial=\"%s\" mq=%u cpus=%u pattern=%lu "
		"blk_size=%u seg_max=%u write_zeroes=%s discard=%s features=0x%lx ms=%lu\n",
		ctx.dev.cfg.capacity, serial, ctx.dev.nq, ctx.nw, n, ctx.dev.cfg.blk_size,
		ctx.dev.cfg.seg_max, wz, dc, ctx.dev.v.features, (rdtsc() - t0) / tsc_khz);
	virtio_reset(&ctx.dev.v);
}

/* ---- blk-ro, blk-verify ------------------------------------------------------------------- */

void test_blk_ro(void)
{
	uint8_t *a, *b, st = 0xff;
	uint32_t bytes = 8 * BLK_SECTOR;
	const char *fail = NULL;

	if (ctx_open(1) < 0) {
		kprintf("berth-test blk-ro FAIL reason=\"%s\"\n", ctx.why);
		return;
	}
	a = ctx.buf[0];
	b = ctx.buf[1];
	if (!(ctx.dev.v.features & VIRTIO_BLK_F_RO)) {
		snprintf(ctx.why, sizeof(ctx.why), "ro-not-offered offered=0x%lx",
			 ctx.dev.v.offered);
		fail = ctx.why;
	} else if (one_expect("read", VIRTIO_BLK_T_IN, 0, a, bytes, 0) < 0 ||
		   one_expect("read-last", VIRTIO_BLK_T_IN, ctx.dev.cfg.capacity - 1, b, BLK_SECTOR,
			      0) < 0 ||
		   fill(b, 0, bytes, ALT_KEY(blk_pattern_key(0x77)), 0, 0, "") < 0 ||
		   one(VIRTIO_BLK_T_OUT, 0, b, bytes, &st) < 0) {
		fail = ctx.why;
	} else if (st != VIRTIO_BLK_S_IOERR) {
		snprintf(ctx.why, sizeof(ctx.why), "write-status=%u want=1", st);
		fail = ctx.why;
	} else if (one_expect("reread", VIRTIO_BLK_T_IN, 0, b, bytes, 0) < 0) {
		fail = ctx.why;
	} else if (memcmp(a, b, bytes) != 0) {
		fail = "data-changed-by-refused-write";
	}
	if (fail)
		kprintf("berth-test blk-ro FAIL reason=\"%s\"\n", fail);
	else
		kprintf("berth-test blk-ro PASS sectors=%lu write_status=%u features=0x%lx\n",
			ctx.dev.cfg.capacity, st, ctx.dev.v.features);
	virtio_reset(&ctx.dev.v);
}

/* `rounds=R` reads the disk R times (a reader that keeps the device writing guest RAM). */
void test_blk_verify(void)
{
	uint64_t n = pattern_n(), t0 = rdtsc(), rounds = cmdline_u64("rounds", 1);

	if (ctx_open(BLK_MAX_WQ) < 0) {
		kprintf("berth-test blk-verify FAIL reason=\"%s\"\n", ctx.why);
		return;
	}
	for (uint64_t k = 1; k <= rounds; k++) {
		uint64_t t1 = rdtsc();

		if (whole_disk(BLK_OP_VERIFY_PATTERN, blk_pattern_key(n)) < 0) {
			kprintf("berth-test blk-verify FAIL reason=\"%s\" pattern=%lu round=%lu\n",
				ctx.why, n, k);
			virtio_reset(&ctx.dev.v);
			return;
		}
		if (rounds > 1)
			kprintf("berth-info blk-verify round=%lu ms=%lu\n", k,
				(rdtsc() - t1) / tsc_khz);
	}
	kprintf("berth-test blk-verify PASS sectors=%lu pattern=%lu mq=%u cpus=%u ms=%lu\n",
		ctx.dev.cfg.capacity, n, ctx.dev.nq, ctx.nw, (rdtsc() - t0) / tsc_khz);
	virtio_reset(&ctx.dev.v);
}

/* ---- blk-fill: writes in a scrambled order with periodic flushes (crash-safety workload) --- */

/* Chunk j of the workload is disk chunk (j * FILL_STRIDE) mod nchunks (the host recomputes it). */
#define FILL_STRIDE 389

void test_blk_fill(void)
{
	uint64_t n = pattern_n(), key = blk_pattern_key(n), t0 = rdtsc();
	uint64_t chunk = cmdline_u64("chunk", 64 * 1024), every = cmdline_u64("flush_every", 16);
	uint64_t pace = cmdline_u64("pace_ms", 0) * tsc_khz; /* at most one chunk per pace_ms */
	uint64_t nchunks, count, j, next = rdtsc();

	if (ctx_open(1) < 0) {
		kprintf("berth-test blk-fill FAIL reason=\"%s\"\n", ctx.why);
		return;
	}
	nchunks = ctx.dev.cfg.capacity * BLK_SECTOR / chunk;
	if (!chunk || chunk % 4096 || chunk > ONE_BUF || !nchunks || !every ||
	    (nchunks & (nchunks - 1))) {
		kprintf(
		    "berth-test blk-fill FAIL reason=\"bad-parameters chunk=%lu flush_every=%lu "
		    "chunks=%lu (a power of two)\"\n",
		    chunk, every, nchunks);
		virtio_reset(&ctx.dev.v);
		return;
	}
	count = cmdline_u64("count", nchunks);
	if (count > nchunks)
		count = nchunks;
	kprintf("berth-info blk-fill start chunks=%lu chunk=%lu stride=%u\n", count, chunk,
		FILL_STRIDE);
	for (j = 0; j < count; j++) {
		uint64_t off = (j * FILL_STRIDE) % nchunks * chunk;

		while (pace && rdtsc() < next)
			__asm__ volatile("pause");
		next = rdtsc() + pace;
		if (fill(ctx.buf[0], off, chunk, key, 0, 0, "") < 0 ||
		    one_expect("write", VIRTIO_BLK_T_OUT, off / BLK_SECTOR, ctx.buf[0],
			       (uint32_t)chunk, 0) < 0)
			break;
		if ((j + 1) % every == 0 || j + 1 == count) {
			if (one_expect("flush", VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 0) < 0)
				break;
			kprintf("berth-info blk-fill flushed=%lu\n", j + 1);
		}
	}
	if (j < count)
		kprintf("berth-test blk-fill FAIL reason=\"%s\" chunk=%lu\n", ctx.why, j);
	else
		kprintf("berth-test blk-fill PASS chunks=%lu pattern=%lu ms=%lu\n", count, n,
			(rdtsc() - t0) / tsc_khz);
	virtio_reset(&ctx.dev.v);
}

/* ---- benchmarks (bench=…) ------------------------------------------------------------------- */

static const struct {
	const char *name;
	uint32_t op, bs;
} benches[] = {
    {"blk-randread", BLK_OP_RANDREAD, 4096},
    {"blk-randwrite", BLK_OP_RANDWRITE, 4096},
    {"blk-seqread", BLK_OP_SEQREAD, 1024 * 1024},
    {"blk-seqwrite", BLK_OP_SEQWRITE, 1024 * 1024},
};

/* `bench=NAME` with qd= (default 32), bs= (default 4096 random, 1 MiB sequential), secs= (5),
 * cpus= (all that have a queue), warmup_ms= (500). Prints one berth-bench line. */
int blk_bench(const char *name, size_t len)
{
	uint32_t op = 0, bs = 0, qd, nw, depth = 0;
	uint64_t secs, warm, t0, window, reqs = 0, bytes = 0, lat = 0, kicks = 0, ms;
	char nm[32];

	for (size_t i = 0; i < sizeof(benches) / sizeof(benches[0]); i++)
		if (strlen(benches[i].name) == len && !strncmp(benches[i].name, name, len)) {
			op = benches[i].op;
			bs = benches[i].bs;
			memcpy(nm, name, len);
			nm[len] = 0;
		}
	if (!op)
		return -1;
	qd = cmdline_u64("qd", 32);
	bs = cmdline_u64("bs", bs);
	secs = cmdline_u64("secs", 5);
	warm = cmdline_u64("warmup_ms", 500);
	if (!qd || qd > 1024 || bs < BLK_SECTOR || bs % BLK_SECTOR || bs > 8 * 1024 * 1024 ||
	    !secs) {
		kprintf("berth-bench %s FAIL reason=\"bad-parameters qd=%u bs=%u secs=%lu\"\n", nm,
			qd, bs, secs);
		return 0;
	}
	if (ctx_open(BLK_MAX_WQ) < 0) {
		kprintf("berth-bench %s FAIL reason=\"%s\"\n", nm, ctx.why);
		return 0;
	}
	nw = cmdline_u64("cpus", ctx.nw);
	if (nw > ctx.nw)
		nw = ctx.nw;
	if (nw > qd)
		nw = qd;
	if (!nw)
		nw = 1;
	if ((uint64_t)bs > ctx.dev.lim.max_segs * (uint64_t)ctx.dev.lim.seg_bytes ||
	    bs > ctx.dev.cfg.capacity * BLK_SECTOR) {
		kprintf("berth-bench %s FAIL reason=\"bs-too-large bs=%u max=%u\"\n", nm, bs,
			ctx.dev.lim.max_segs * ctx.dev.lim.seg_bytes);
		virtio_reset(&ctx.dev.v);
		return 0;
	}
	if (setup_workers(nw, op, qd, bs, 0, ctx.dev.cfg.capacity * BLK_SECTOR) < 0) {
		kprintf("berth-bench %s FAIL reason=\"%s\"\n", nm, ctx.why);
		virtio_reset(&ctx.dev.v);
		return 0;
	}
	t0 = rdtsc();
	window = secs * 1000 * tsc_khz;
	for (uint32_t i = 0; i < nw; i++) {
		workers[i].t_measure = t0 + warm * tsc_khz;
		workers[i].t_end = workers[i].t_measure + window;
		workers[i].deadline = workers[i].t_end + 30000 * tsc_khz;
	}
	if (run_workers(nw, (warm + secs * 1000 + 60000) * 1000) < 0) {
		kprintf("berth-bench %s FAIL reason=\"%s\"\n", nm, ctx.why);
		virtio_reset(&ctx.dev.v);
		return 0;
	}
	for (uint32_t i = 0; i < nw; i++) {
		reqs += workers[i].reqs;
		bytes += workers[i].bytes;
		lat += workers[i].lat_sum;
		kicks += workers[i].kicks;
		depth += workers[i].depth;
	}
	ms = secs * 1000;
	if (!reqs) {
		kprintf("berth-bench %s FAIL reason=no-completions qd=%u bs=%u\n", nm, depth, bs);
	} else {
		uint64_t lat_ns = lat / reqs * 1000000 / tsc_khz;

		kprintf(
		    "berth-bench %s iops=%lu mbps=%lu qd=%u bs=%u lat_us_avg=%lu lat_ns_avg=%lu "
		    "cpus=%u queues=%u secs=%lu reqs=%lu kicks=%lu\n",
		    nm, reqs * 1000 / ms, bytes / ms / 1000, depth, bs, lat_ns / 1000, lat_ns, nw,
		    ctx.dev.nq, secs, reqs, kicks);
	}
	virtio_reset(&ctx.dev.v);
	return 0;
}

/* ---- blk-reset ------------------------------------------------------------------------------ */

#define RST_WRITES 64		 /* writes in the burst (at most) */
#define RST_READS 16		 /* reads in the burst (at most) */
#define RST_BS (64 * 1024)	 /* bytes per burst request (at most) */
#define RST_STRIDE (128 * 1024)	 /* burst requests start this far apart on the disk */
#define RST_BASE (1024 * 1024)	 /* first burst byte */
#define RST_QUIET_US 50000	 /* the old rings must hold still this long after the reset */
#define RST_STATUS_US 1000000ULL /* device_status must read 0 within this */
#define RST_START_US 20000ULL	 /* longest wait for the device to start on the burst */
#define RST_KEY ALT_KEY(blk_pattern_key(0x42))

/* Count the burst's status bytes the device has written. */
static uint32_t statuses_written(const struct blk_slot *s, uint32_t n)
{
	uint32_t k = 0;

	for (uint32_t i = 0; i < n; i++)
		k += *(volatile const uint8_t *)&s[i].status != BLK_STATUS_NONE;
	return k;
}

/* Post n requests on queue 0 (writes first, of pattern RST_KEY, then reads), publish and notify
 * them with one kick, and reset the device without reaping. Fills in what it saw. */
static int burst_and_reset(uint32_t nw, uint32_t nr, uint32_t bs, uint16_t *before,
			   uint16_t *completed, uint64_t *reset_us, uint32_t *st_at_reset)
{
	struct virtio_dev *v = &ctx.dev.v;
	struct virtq *vq = v->vq[0];
	uint32_t n = nw + nr, segs = (bs + ctx.dev.lim.seg_bytes - 1) / ctx.dev.lim.seg_bytes;
	struct blk_slot *slots = dma_alloc((uint64_t)n * sizeof(struct blk_slot));
	uint8_t *data = dma_alloc((uint64_t)n * bs);
	volatile uint16_t *used_idx = &vq->used->idx;
	uint16_t used_at_reset, used_later, qen = 0;
	uint32_t st_later;
	uint64_t t0, end;
	uint8_t s;

	if (!slots || !data) {
		snprintf(ctx.why, sizeof(ctx.why), "no-dma-memory n=%u bs=%u", n, bs);
		return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = RST_BASE + (uint64_t)i * RST_STRIDE;

		if (i < nw && fill(data + (uint64_t)i * bs, off, bs, RST_KEY, 0, 0, "") < 0)
			return -1;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct blk_slot *sl = &slots[i];
		uint8_t *buf = data + (uint64_t)i * bs;
		struct vq_buf b[VQ_INDIRECT_MAX];
		uint32_t k = 0, rd = i >= nw;

		memset(sl, 0, sizeof(*sl));
		sl->hdr.type = rd ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
		sl->hdr.sector = (RST_BASE + (uint64_t)i * RST_STRIDE) / BLK_SECTOR;
		sl->status = BLK_STATUS_NONE;
		b[k++] = (struct vq_buf){(uint64_t)&sl->hdr, sizeof(sl->hdr), 0};
		for (uint32_t g = 0; g < segs; g++) {
			uint32_t o = g * ctx.dev.lim.seg_bytes;
			uint32_t len =
			    bs - o < ctx.dev.lim.seg_bytes ? bs - o : ctx.dev.lim.seg_bytes;

			b[k++] = (struct vq_buf){(uint64_t)(buf + o), len, rd};
		}
		b[k++] = (struct vq_buf){(uint64_t)&sl->status, 1, 1};
		if (vq_add(vq, b, k, ctx.dev.lim.indirect, i) < 0) {
			snprintf(ctx.why, sizeof(ctx.why), "cannot-post request=%u of %u", i, n);
			return -1;
		}
	}
	vq_kick(vq);
	/* Reset as soon as the device is seen working on the burst (its first completion), so
	 * that the rest is in flight inside it; reset anyway after reset_wait_us= (default
	 * RST_START_US; 0: reset right after the notify). */
	end = tsc_after_us(cmdline_u64("reset_wait_us", RST_START_US));
	while (*used_idx == 0 && statuses_written(slots, 1) == 0 && rdtsc() < end)
		cpu_relax();
	*before = *used_idx;
	virtio_set_status(v, 0); /* nothing reaped */
	t0 = rdtsc();
	end = tsc_after_us(RST_STATUS_US);
	while ((s = virtio_status(v)) != 0 && rdtsc() < end)
		cpu_relax();
	*reset_us = (rdtsc() - t0) * 1000 / tsc_khz;
	used_at_reset = *used_idx;
	*st_at_reset = statuses_written(slots, n);
	*completed = used_at_reset;
	if (s != 0) {
		snprintf(ctx.why, sizeof(ctx.why),
			 "status-not-zero-after-reset status=0x%02x us=%lu", s, *reset_us);
		return -1;
	}
	for (uint32_t q = 0; q < ctx.dev.nq; q++) {
		qen = virtio_queue_read16(v, q, VCOMMON_Q_ENABLE);
		if (qen != 0) {
			snprintf(ctx.why, sizeof(ctx.why),
				 "queue-still-enabled-after-reset q=%u q_enable=%u", q, qen);
			return -1;
		}
	}
	udelay(RST_QUIET_US);
	used_later = *used_idx;
	st_later = statuses_written(slots, n);
	if (used_later != used_at_reset || st_later != *st_at_reset) {
		snprintf(ctx.why, sizeof(ctx.why),
			 "device-wrote-after-reset used=%u/%u statuses=%u/%u outstanding=%u",
			 used_at_reset, used_later, *st_at_reset, st_later, n);
		return -1;
	}
	if (used_at_reset > n) {
		snprintf(ctx.why, sizeof(ctx.why), "used-idx-beyond-posted used=%u posted=%u",
			 used_at_reset, n);
		return -1;
	}
	return virtio_reset(v) < 0 ? (snprintf(ctx.why, sizeof(ctx.why), "%s", v->error), -1) : 0;
}

void test_blk_reset(void)
{
	uint64_t n = pattern_n(), key = blk_pattern_key(n), t0 = rdtsc(), reset_us = 0;
	uint64_t first = RST_BASE, end;
	uint32_t bs, nreq, nwr, nrd, qmax, st_at_reset = 0;
	uint16_t before = 0, completed = 0;
	const char *step = "open";

	if (ctx_open(1) < 0)
		goto fail;
	step = "burst";
	if (ctx.dev.v.features & VIRTIO_BLK_F_RO) {
		snprintf(ctx.why, sizeof(ctx.why), "disk-is-read-only");
		goto fail_reset;
	}
	bs = RST_BS;
	if ((uint64_t)bs > (uint64_t)ctx.dev.lim.max_segs * ctx.dev.lim.seg_bytes)
		bs = ctx.dev.lim.max_segs * ctx.dev.lim.seg_bytes & ~4095u;
	qmax = per_queue_max(ctx.dev.v.vq[0], &ctx.dev.lim, bs);
	nreq = RST_WRITES + RST_READS < qmax ? RST_WRITES + RST_READS : qmax;
	nrd = nreq * RST_READS / (RST_WRITES + RST_READS);
	nwr = nreq - nrd;
	end = RST_BASE + (uint64_t)nreq * RST_STRIDE;
	if (end > ctx.dev.cfg.capacity * BLK_SECTOR || nwr == 0) {
		snprintf(ctx.why, sizeof(ctx.why), "disk-too-small sectors=%lu",
			 ctx.dev.cfg.capacity);
		goto fail_reset;
	}
	if (burst_and_reset(nwr, nrd, bs, &before, &completed, &reset_us, &st_at_reset) < 0)
		goto fail_reset;

	/* From scratch, twice: the first time one read and one write, the second time a final
	 * pattern over the whole burst region, flushed and read back. */
	step = "reinit-0";
	if (ctx_open(BLK_MAX_WQ) < 0)
		goto fail;
	if (one_expect("reinit-read", VIRTIO_BLK_T_IN, first / BLK_SECTOR, ctx.buf[0], RST_BS, 0) <
		0 ||
	    fill(ctx.buf[1], first, 4096, key, 0, 0, "") < 0 ||
	    one_expect("reinit-write", VIRTIO_BLK_T_OUT, first / BLK_SECTOR, ctx.buf[1], 4096, 0) <
		0)
		goto fail_reset;
	if (virtio_reset(&ctx.dev.v) < 0) {
		snprintf(ctx.why, sizeof(ctx.why), "%s", ctx.dev.v.error);
		goto fail;
	}
	step = "reinit-1";
	if (ctx_open(BLK_MAX_WQ) < 0)
		goto fail;
	step = "final";
	if (setup_workers(ctx.nw, BLK_OP_WRITE_PATTERN, BIG_DEPTH * ctx.nw, BIG_BS, first, end) < 0)
		goto fail_reset;
	for (uint32_t i = 0; i < ctx.nw; i++) {
		workers[i].key = key;
		workers[i].deadline = tsc_after_us(JOB_US);
	}
	if (run_workers(ctx.nw, JOB_US + 10000000) < 0 || blk_flush() < 0)
		goto fail_reset;
	step = "verify";
	if (setup_workers(ctx.nw, BLK_OP_VERIFY_PATTERN, BIG_DEPTH * ctx.nw, BIG_BS, first, end) <
	    0)
		goto fail_reset;
	for (uint32_t i = 0; i < ctx.nw; i++) {
		workers[i].key = key;
		workers[i].deadline = tsc_after_us(JOB_US);
	}
	if (run_workers(ctx.nw, JOB_US + 10000000) < 0)
		goto fail_reset;
	kprintf("berth-test blk-reset PASS outstanding=%u writes=%u reads=%u bs=%u "
		"completed_before_reset=%u completed_by_reset=%u statuses_at_reset=%u reset_us=%lu "
		"cycles=2 "
		"region=0x%lx-0x%lx pattern=%lu mq=%u cpus=%u ms=%lu\n",
		nreq, nwr, nrd, bs, before, completed, st_at_reset, reset_us, first, end, n,
		ctx.dev.nq, ctx.nw, (rdtsc() - t0) / tsc_khz);
	virtio_reset(&ctx.dev.v);
	return;
fail_reset:
	virtio_reset(&ctx.dev.v);
fail:
	kprintf("berth-test blk-reset FAIL reason=\"%s step=%s\"\n", ctx.why, step);
}
