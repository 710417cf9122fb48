/* libFuzzer target: hostile qcow2 images through blk_open and the qcow2 driver (reads, writes,
 * flushes, discards, zeroing on a private io_uring), blk_close, then a read-only reopen. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2.h"
#include "common/log.h"

/*
 * Input: an image file, then a trailer of NOPS 8-byte operations (an input shorter than
 * MIN_WITH_OPS bytes is all image and runs no operations):
 *   byte 0   bits 0-2 kind: 0-1 read, 2-3 write, 4 flush, 5 discard, 6-7 write-zeroes (7: may
 *            unmap); bit 3: leave a read/write in flight while the next operation starts;
 *            bits 4-5: the buffer is split into 1 + n iovecs
 *   byte 1   length in sectors: (1 + (b & 63)) << 3 * (b >> 6), at most MAX_RW (reads and
 *            writes) or MAX_ZERO (discard, write-zeroes) bytes
 *   2..5     LE u32: where, spread over the whole virtual size (sel * sectors >> 32)
 *   6..7     data seed for writes
 *
 * The image is written to a file in a private directory on tmpfs (nothing touches a disk) and
 * opened writable as qcow2; an image that is refused writable is opened read-only instead. After
 * the operations and blk_close, whatever berth left behind is opened read-only and read again.
 *
 * Backing files: the backing name in the header is kept if it is one of the files this target
 * puts next to the image (base.raw, base.qcow2, mid.qcow2 -> base.qcow2, loop.qcow2 -> img, img
 * itself); any other name has each non-NUL byte replaced by 'x' (same length, NULs kept), so it is
 * still parsed and checked but resolves to a file that does not exist in the private directory.
 * The fuzzer can thus never make berth open a host file of its choosing.
 */
#define NOPS 16
#define OP_BYTES 8
#define TRAILER (NOPS * OP_BYTES)
#define MIN_WITH_OPS (512 + TRAILER)
#define MAX_RW (256u << 10)
#define MAX_ZERO (1u << 20)
#define MAX_INFLIGHT 8
#define RING_ENTRIES 256

static char dir[64], img_path[96];
static int img_fd = -1;
static struct io_uring ring;
static uint8_t *bufs[MAX_INFLIGHT];

static bool verbose; /* FUZZ_QCOW2_LOG set: berth's log lines and each operation on stderr */

/* berth's logger, replaced: formatted (so format bugs still show) and dropped. */
static unsigned log_lines;
void log_init(const char *prog, const char *vm_name, enum log_level level)
{
	(void)prog, (void)vm_name, (void)level;
}
void log_set_level(enum log_level level)
{
	(void)level;
}
enum log_level log_get_level(void)
{
	return LOG_DEBUG;
}
void log_vmsg(enum log_level level, const char *tag, const char *fmt, va_list ap)
{
	char line[2048];
	(void)level, (void)tag;
	vsnprintf(line, sizeof(line), fmt, ap);
	if (verbose)
		fprintf(stderr, "log: %s\n", line);
	log_lines++;
}
void log_msg(enum log_level level, const char *tag, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vmsg(level, tag, fmt, ap);
	va_end(ap);
}

static void check(bool ok, const char *what);

/*
 * The driver's fallocate calls land here (this definition takes the place of the C library's for
 * the whole executable): punching a hole into a cluster the open image uses for metadata would
 * destroy a live table, so it is an invariant, for hostile images too.
 */
static struct qcow2 *live; /* the writable image open now */
int fallocate(int fd, int mode, off_t off, off_t len)
{
	if (live && fd == live->fd && (mode & FALLOC_FL_PUNCH_HOLE) && len > 0) {
		uint64_t c0 = (uint64_t)off >> live->cluster_bits;
		uint64_t c1 = ((uint64_t)off + (uint64_t)len - 1) >> live->cluster_bits;
		check(!qcow2_meta_overlaps(live, c0, c1 - c0 + 1),
		      "a hole was punched into metadata");
	}
	return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_qcow2: invariant broken: %s\n", what);
		abort();
	}
}

/* ---- one operation in flight ---- */

/*
 * The oracle: while it holds, each sector marked in known[] must read back as shadow[] says. It
 * is set up only for an image that opened writable, is at most ORACLE_MAX bytes, and maps every
 * host cluster at most once, inside the file and apart from all metadata, with no compressed
 * clusters. The first checked read of a sector defines it; writes, zeroing and discards redefine
 * it; any failed write, discard or zeroing ends the oracle (it may have landed in part). After
 * blk_close, the read-only reopen must read every known sector the same: what completed was
 * written back.
 */
#define ORACLE_MAX (64u << 20)
static uint8_t *shadow, *scratch, known[ORACLE_MAX / 512 / 8];
static bool oracle;

static bool is_known(uint64_t sector)
{
	return known[sector / 8] >> (sector % 8) & 1;
}

/* Define [off, off+len) as data (NULL: zeroes). */
static void shadow_set(uint64_t off, const uint8_t *data, uint64_t len)
{
	if (data)
		memcpy(shadow + off, data, len);
	else
		memset(shadow + off, 0, len);
	for (uint64_t s = off / 512; s < (off + len) / 512; s++)
		known[s / 8] |= (uint8_t)(1u << (s % 8));
}

/* A read of [off, off+len) returned buf: check the known sectors, define the others. */
static void shadow_check(const uint8_t *buf, uint64_t off, uint64_t len, const char *what)
{
	for (uint64_t o = 0; o < len; o += 512) {
		uint64_t s = (off + o) / 512;
		if (!is_known(s)) {
			shadow_set(off + o, buf + o, 512);
		} else if (memcmp(buf + o, shadow + off + o, 512)) {
			fprintf(stderr,
				"fuzz_qcow2: %s: sector %llu differs from what the disk held\n",
				what, (unsigned long long)s);
			abort();
		}
	}
}

struct op {
	struct blk_aio aio;
	uint64_t off, len;
	uint8_t *buf;
	int res;
	bool busy, done, write, checked;
	struct iovec iov[4];
};

static struct op ops[MAX_INFLIGHT];
static unsigned inflight;

static void op_done(struct blk_aio *a, int res)
{
	struct op *o = (struct op *)a;
	check(o->busy && !o->done, "done() ran twice or for an operation never started");
	/* the bytes transferred (short when a data cluster lies past the end of the file) */
	check(res < 0 || (uint64_t)res <= o->len, "done() with more bytes than asked for");
	o->done = true;
	o->res = res;
	inflight--;
	if (verbose && (uint64_t)res != o->len)
		fprintf(stderr, "done: %s of %llu bytes at %llu: %d\n", o->write ? "write" : "read",
			(unsigned long long)o->len, (unsigned long long)o->off, res);
	if (o->write && (uint64_t)res != o->len)
		oracle = false;
	if (!o->write && o->checked && oracle && (uint64_t)res == o->len)
		shadow_check(o->buf, o->off, o->len, "read");
}

/* Data writes reach the image file through io_uring (metadata is written synchronously): none of
 * the writes queued since the last submit may land on a metadata cluster of the open image. Writes
 * the driver submits itself when the queue is full go unchecked. */
static void check_queued_writes(void)
{
	struct io_uring_sq *sq = &ring.sq;
	for (unsigned i = sq->sqe_head; live && i != sq->sqe_tail; i++) {
		const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
		if (sqe->opcode != IORING_OP_WRITEV || sqe->fd != live->fd)
			continue;
		const struct iovec *iov = (const struct iovec *)(uintptr_t)sqe->addr;
		uint64_t len = 0;
		for (unsigned k = 0; k < sqe->len; k++)
			len += iov[k].iov_len;
		if (!len)
			continue;
		uint64_t c0 = sqe->off >> live->cluster_bits;
		uint64_t c1 = (sqe->off + len - 1) >> live->cluster_bits;
		check(!qcow2_meta_overlaps(live, c0, c1 - c0 + 1),
		      "a data write lands on metadata");
	}
}

/* Reap completions until at most `keep` operations are in flight. */
static void wait_until(unsigned keep)
{
	check_queued_writes();
	io_uring_submit(&ring);
	while (inflight > keep) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_sec = 2};
		int r = io_uring_wait_cqe_timeout(&ring, &cqe, &ts);
		check(r != -ETIME, "an operation's done() never ran");
		if (r == -EINTR)
			continue;
		check(r == 0, "io_uring_wait_cqe");
		unsigned head, n = 0;
		io_uring_for_each_cqe(&ring, head, cqe)
		{
			blk_aio_complete(cqe);
			n++;
		}
		io_uring_cq_advance(&ring, n);
	}
	for (unsigned i = 0; i < MAX_INFLIGHT; i++)
		if (ops[i].busy && ops[i].done)
			ops[i].busy = false;
}

/* After a reopen: read back every known sector (runs of them, synchronously). */
static void verify_known(struct blk *b)
{
	uint64_t sectors = b->size / 512;
	for (uint64_t s = 0; s < sectors;) {
		if (!is_known(s)) {
			s++;
			continue;
		}
		uint64_t e = s;
		while (e < sectors && e - s < MAX_RW / 512 && is_known(e))
			e++;
		uint64_t off = s * 512, len = (e - s) * 512;
		struct op *o = &ops[0];
		*o = (struct op){.aio.done = op_done, .off = off, .len = len, .busy = true};
		o->iov[0] = (struct iovec){scratch, len};
		inflight++;
		int r = b->drv->submit_rw(b, &ring, &o->aio, false, off, o->iov, 1, len);
		check(r == 0, "cannot read back what was written");
		wait_until(0);
		check((uint64_t)o->res == len, "reading back what was written failed");
		shadow_check(scratch, off, len, "after blk_close and a reopen");
		s = e;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Does the image map each host cluster once, inside the file, apart from metadata? */
static bool sane(struct blk *b)
{
	struct qcow2 *q = b->priv;
	struct stat st;
	if (fstat(q->fd, &st) < 0)
		return false;
	uint64_t per = 1ULL << q->l2_bits, span = q->cluster_size << q->l2_bits;
	uint64_t nl1 = (b->size + span - 1) / span, n = 0;
	uint64_t *hosts = malloc(nl1 * per * sizeof(*hosts) + 1);
	bool ok = hosts != NULL;
	for (uint64_t i = 0; ok && i < nl1; i++) {
		uint64_t *t, off = q->l1[i] & QCOW2_OFFSET_MASK;
		/* A table wholly past the end of the file reads as zeroes once the file grows over
		 * it (berth never allocates it); until then its I/O just fails. One that straddles
		 * the end becomes readable, hostile entries and all, when the file grows. */
		if (off >= (uint64_t)st.st_size)
			continue;
		if (qcow2_l2_get(q, i, &t)) {
			ok = false;
			break;
		}
		for (uint64_t j = 0; t && j < per; j++) {
			uint64_t e = be64_get((const uint8_t *)(t + j)), h = e & QCOW2_OFFSET_MASK;
			if (e & QCOW2_OFLAG_COMPRESSED)
				ok = false;
			else if (h && ((h & (q->cluster_size - 1)) ||
				       h + q->cluster_size > (uint64_t)st.st_size ||
				       qcow2_meta_overlaps(q, h >> q->cluster_bits, 1)))
				ok = false;
			else if (h)
				hosts[n++] = h;
		}
	}
	if (ok) {
		qsort(hosts, n, sizeof(*hosts), cmp_u64);
		for (uint64_t i = 1; i < n; i++)
			if (hosts[i] == hosts[i - 1])
				ok = false;
	}
	free(hosts);
	return ok;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ULL;
	return x ^ (x >> 29);
}

/* The oracle's idea of a discard: whole clusters read as zeroes afterwards, except on a version 2
 * image with a backing file (no zero flag: discard leaves them be). */
static void shadow_discard(struct blk *b, uint64_t off, uint64_t len)
{
	struct qcow2 *q = b->priv;
	uint64_t cs = q->cluster_size, a = (off + cs - 1) & ~(cs - 1), z = (off + len) & ~(cs - 1);
	if (a < z && (q->version >= 3 || !b->backing))
		memset(shadow + a, 0, z - a);
}

/* On an image that was sane at open, no L2 table may map a data cluster onto metadata: berth
 * must never hand out a cluster some table claims (even one past the end of the file). */
static void check_no_data_on_metadata(struct qcow2 *q)
{
	for (unsigned i = 0; i < q->l2c.n; i++) {
		const struct qcow2_cached *e = &q->l2c.e[i];
		for (uint64_t j = 0; e->valid && j < 1ULL << q->l2_bits; j++) {
			uint64_t v = be64_get(e->data + 8 * j), h = v & QCOW2_OFFSET_MASK;
			check(!h || (v & QCOW2_OFLAG_COMPRESSED) ||
				  !qcow2_meta_overlaps(q, h >> q->cluster_bits, 1),
			      "a data cluster was allocated on top of metadata");
		}
	}
}

/* Run the operations against an open image. */
static void run_ops(struct blk *b, const uint8_t *t, size_t nops)
{
	struct qcow2 *q = b->priv;
	uint64_t sectors = b->size / 512;
	for (size_t k = 0; k < nops; k++, t += OP_BYTES) {
		unsigned kind = t[0] & 7, split = 1 + ((t[0] >> 4) & 3);
		bool keep = t[0] & 8;
		uint64_t n = (uint64_t)(1 + (t[1] & 63)) << (3 * (t[1] >> 6));
		uint32_t sel = (uint32_t)t[2] | (uint32_t)t[3] << 8 | (uint32_t)t[4] << 16 |
			       (uint32_t)t[5] << 24;
		uint16_t seed = (uint16_t)(t[6] | t[7] << 8);
		if (!sectors)
			break;
		uint64_t sector = (uint64_t)(((unsigned __int128)sel * sectors) >> 32);
		bool rw = kind < 4;
		uint64_t max = (rw ? MAX_RW : MAX_ZERO) / 512;
		if (n > max)
			n = max;
		if (n > sectors - sector)
			n = sectors - sector;
		uint64_t off = sector * 512, len = n * 512;
		bool was_corrupt = q->corrupt;
		if (!rw || !keep || inflight == MAX_INFLIGHT)
			wait_until(0);
		int r;
		switch (kind) {
		case 0:
		case 1:
		case 2:
		case 3: {
			bool write = kind >= 2;
			struct op *o = NULL;
			unsigned slot = 0;
			for (; slot < MAX_INFLIGHT; slot++)
				if (!ops[slot].busy || ops[slot].done) {
					o = &ops[slot];
					break;
				}
			check(o != NULL, "no free operation slot");
			uint8_t *buf = bufs[slot];
			*o = (struct op){.aio.done = op_done,
					 .off = off,
					 .len = len,
					 .buf = buf,
					 .busy = true,
					 .write = write,
					 .checked = oracle};
			/* Racing requests have no defined result: reads overlapping a write in
			 * flight go unchecked, overlapping writes in flight end the oracle. */
			for (unsigned i = 0; i < MAX_INFLIGHT; i++) {
				struct op *x = &ops[i];
				if (x == o || !x->busy || x->done || x->off >= off + len ||
				    off >= x->off + x->len)
					continue;
				if (write && x->write)
					oracle = false;
				else
					x->checked = o->checked = false;
			}
			if (write) {
				for (uint64_t i = 0; i < len; i += 8) {
					uint64_t v = mix(seed ^ (off + i));
					memcpy(buf + i, &v, 8);
				}
				if (oracle)
					shadow_set(off, buf, len);
			} else {
				memset(buf, 0xa5, len);
			}
			/* split at sector boundaries */
			uint64_t at = 0;
			unsigned niov = 0;
			for (unsigned i = 0; i < split && at < len; i++) {
				uint64_t part =
				    i + 1 == split ? len - at : ((len / 512) / split + 1) * 512;
				if (part > len - at)
					part = len - at;
				o->iov[niov++] = (struct iovec){buf + at, part};
				at += part;
			}
			inflight++;
			r = b->drv->submit_rw(b, &ring, &o->aio, write, off, o->iov, niov, len);
			if (r) {
				check(r < 0, "submit_rw returned a positive value");
				check(!o->done, "submit_rw failed but done() ran");
				o->busy = false;
				inflight--;
				if (write)
					oracle = false;
			}
			if (write && (b->readonly || was_corrupt))
				check(r < 0 || (o->done && o->res < 0),
				      "a write succeeded on a read-only or corrupt image");
			if (!keep)
				wait_until(0);
			break;
		}
		case 4: {
			struct op *o = &ops[0];
			*o = (struct op){.aio.done = op_done, .len = 0, .busy = true};
			inflight++;
			r = b->drv->submit_flush(b, &ring, &o->aio);
			if (r) {
				check(!o->done, "submit_flush failed but done() ran");
				o->busy = false;
				inflight--;
			}
			wait_until(0);
			break;
		}
		case 5:
			r = b->drv->discard(b, off, len);
			if (b->readonly || was_corrupt)
				check(r < 0, "a discard succeeded on a read-only or corrupt image");
			if (r)
				oracle = false;
			else if (oracle)
				shadow_discard(b, off, len);
			break;
		default:
			r = b->drv->write_zeroes(b, off, len, kind == 7);
			if (b->readonly || was_corrupt)
				check(r < 0,
				      "write-zeroes succeeded on a read-only or corrupt image");
			if (r)
				oracle = false;
			else if (oracle)
				shadow_set(off, NULL, len);
			break;
		}
		if (verbose)
			fprintf(stderr, "op %zu: kind %u off %llu len %llu%s: %d%s\n", k, kind,
				(unsigned long long)off, (unsigned long long)len,
				b->readonly ? " (ro)" : "", r, oracle ? " (oracle)" : "");
		if (was_corrupt)
			check(q->corrupt, "a corrupt image became writable again");
		if (oracle)
			check_no_data_on_metadata(q);
	}
	wait_until(0);
}

/* One open of the image: writable (setting up the oracle) or read-only (checking it). */
static void session(bool readonly, const uint8_t *t, size_t nops)
{
	struct blk b;
	char msg[512], cmsg[512];
	struct stat st0, st1;
	/* blk_check (--check) must agree with the open, and change nothing. */
	cmsg[0] = 0;
	check(fstat(img_fd, &st0) == 0, "fstat");
	int cr = blk_check(img_path, BLK_FMT_QCOW2, readonly, false, cmsg, sizeof(cmsg));
	check(fstat(img_fd, &st1) == 0 && st1.st_size == st0.st_size &&
		  st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
		  st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec,
	      "blk_check changed the image");
	msg[0] = 0;
	int r = blk_open(&b, img_path, BLK_FMT_QCOW2, readonly, false, msg, sizeof(msg));
	if (verbose)
		fprintf(stderr, "open%s: %d %s\n", readonly ? " read-only" : "", r, r ? msg : "");
	if (verbose && !cr != !r)
		fprintf(stderr, "check: %d %s\n", cr, cmsg);
	check(!cr == !r, "blk_check and blk_open disagree");
	if (r) {
		check(r < 0 && msg[0], "blk_open failed without a message");
		check(strstr(msg, img_path) != NULL, "blk_open's message does not name the image");
		check(!oracle, "an image berth wrote and closed cleanly does not open again");
		return;
	}
	check(b.drv != NULL && b.priv != NULL && b.size % 512 == 0, "blk_open left no driver");
	if (!readonly) {
		oracle = b.size <= ORACLE_MAX && sane(&b);
		memset(known, 0, sizeof(known));
	} else if (oracle) {
		verify_known(&b);
	}
	live = readonly ? NULL : b.priv;
	run_ops(&b, t, nops);
	if (!readonly && (((struct qcow2 *)b.priv)->corrupt || blk_close(&b)))
		oracle = false;
	if (b.drv)
		blk_close(&b);
	live = NULL;
}

static void cleanup(void)
{
	static const char *const names[] = {"img", "base.raw", "base.qcow2", "mid.qcow2",
					    "loop.qcow2"};
	char p[160];
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		unlink(p);
	}
	rmdir(dir);
}

static void make_qcow2(const char *name, const char *backing, const char *backing_fmt)
{
	char p[160], msg[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	struct qcow2_create_opts o = {
	    .size = 1 << 20, .cluster_bits = 9, .backing = backing, .backing_fmt = backing_fmt};
	if (qcow2_create(p, &o, msg, sizeof(msg))) {
		fprintf(stderr, "fuzz_qcow2: %s\n", msg);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	verbose = getenv("FUZZ_QCOW2_LOG") != NULL;
	snprintf(dir, sizeof(dir), "/dev/shm/berth-fuzz-qcow2-XXXXXX");
	if (!mkdtemp(dir)) {
		snprintf(dir, sizeof(dir), "/tmp/berth-fuzz-qcow2-XXXXXX");
		if (!mkdtemp(dir))
			abort();
	}
	atexit(cleanup);
	snprintf(img_path, sizeof(img_path), "%s/img", dir);
	img_fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (img_fd < 0 || io_uring_queue_init(RING_ENTRIES, &ring, 0))
		abort();
	for (unsigned i = 0; i < MAX_INFLIGHT; i++)
		if (posix_memalign((void **)&bufs[i], 4096, MAX_RW))
			abort();
	if (!(shadow = malloc(ORACLE_MAX)) || posix_memalign((void **)&scratch, 4096, MAX_RW))
		abort();
	/* The backing files a header may name. */
	char p[160];
	snprintf(p, sizeof(p), "%s/base.raw", dir);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	static uint8_t pat[65536];
	for (unsigned i = 0; i < sizeof(pat); i++)
		pat[i] = (uint8_t)(i * 7 + (i >> 9));
	if (fd < 0 || blk_pwrite_full(fd, pat, sizeof(pat), 0) || ftruncate(fd, 1 << 20))
		abort();
	close(fd);
	make_qcow2("base.qcow2", "base.raw", "raw");
	make_qcow2("mid.qcow2", "base.qcow2", "qcow2");
	make_qcow2("loop.qcow2", "img", NULL);
	return 0;
}

/* Keep the backing name only if it is one of ours (see the top of the file). */
static void tame_backing(uint8_t *img, size_t size)
{
	static const char *const ok[] = {"base.raw", "base.qcow2", "mid.qcow2", "loop.qcow2",
					 "img"};
	if (size < 20)
		return;
	uint64_t off = be64_get(img + 8);
	uint32_t len = be32_get(img + 16);
	if (!off || off >= size || len > size - off)
		return;
	for (unsigned i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		if (strlen(ok[i]) == len && !memcmp(img + off, ok[i], len))
			return;
	for (uint32_t i = 0; i < len; i++)
		if (img[off + i])
			img[off + i] = 'x';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t isize = size, nops = 0;
	if (size >= MIN_WITH_OPS) {
		isize = size - TRAILER;
		nops = NOPS;
	}
	uint8_t *img = malloc(isize ? isize : 1);
	if (!img)
		return 0;
	memcpy(img, data, isize);
	tame_backing(img, isize);
	if (ftruncate(img_fd, 0) || (isize && blk_pwrite_full(img_fd, img, isize, 0)))
		abort();
	free(img);
	const uint8_t *t = data + isize;
	/* Writable; then read-only (what a writable open refused, or what it left behind: whatever
	 * berth wrote must not crash it either). */
	oracle = false;
	session(false, t, nops);
	session(true, t, nops);
	return 0;
}
