/* Whole-image operations on backing chains for checkpoints: synchronous I/O through a driver,
 * committing one layer into the image below it, format probing and rebasing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "common/fdmap.h"
#include "block/qcow2.h"

#define COPY_CHUNK (1u << 20)
#define PROGRESS_EVERY (16ULL << 20)

struct sync_op {
	struct blk_aio aio;
	int res;
	bool done;
};

static void sync_done(struct blk_aio *a, int res)
{
	struct sync_op *op = (struct sync_op *)a;
	op->res = res;
	op->done = true;
}

static int flush_sync(struct blk *b, struct io_uring *ring)
{
	struct sync_op op = {.aio = {sync_done}};
	int r = b->drv->submit_flush(b, ring, &op.aio);
	while (!r && !op.done) {
		struct io_uring_cqe *cqe;
		io_uring_submit(ring);
		if ((r = io_uring_wait_cqe(ring, &cqe)) == -EINTR) {
			r = 0;
			continue;
		}
		if (!r) {
			blk_aio_complete(cqe);
			io_uring_cqe_seen(ring, cqe);
		}
	}
	return r ? r : op.res < 0 ? op.res : 0;
}

/* Bytes of data and zero clusters the image itself holds (what a commit will copy). */
static int held_bytes(struct blk *b, uint64_t *total)
{
	*total = 0;
	for (uint64_t off = 0; off < b->size;) {
		enum blk_status st;
		uint64_t run;
		int r = b->drv->status(b, off, b->size - off, &st, &run);
		if (r)
			return r;
		if (st != BLK_ST_UNALLOC)
			*total += run;
		off += run;
	}
	return 0;
}

/* A pipelined copy: up to COPY_SLOTS chunks in flight, each read from one image and then written
 * to the other through their drivers on one ring. */
#define COPY_SLOTS 8

struct copier;

struct copy_slot {
	struct blk_aio aio;
	struct copier *cp;
	uint8_t *buf;
	struct iovec iov; /* read by the kernel when the ring is submitted, not when queued */
	uint64_t off, len;
	bool busy, writing;
};

struct copier {
	struct blk *from, *to;
	struct io_uring ring;
	struct copy_slot slot[COPY_SLOTS];
	unsigned inflight;
	int err; /* the first failure */
	bool err_writing;
	uint64_t err_off;
};

static void copy_fail(struct copier *cp, struct copy_slot *s, int res)
{
	if (!cp->err) {
		cp->err = res < 0 ? res : -EIO;
		cp->err_writing = s->writing;
		cp->err_off = s->off;
	}
	s->busy = false;
	cp->inflight--;
}

static void copy_done(struct blk_aio *a, int res)
{
	struct copy_slot *s = (struct copy_slot *)a;
	struct copier *cp = s->cp;
	if (res < 0 || (uint64_t)res != s->len) {
		copy_fail(cp, s, res);
		return;
	}
	if (s->writing) {
		s->busy = false;
		cp->inflight--;
		return;
	}
	s->writing = true;
	int r =
	    cp->to->drv->submit_rw(cp->to, &cp->ring, &s->aio, true, s->off, &s->iov, 1, s->len);
	if (r)
		copy_fail(cp, s, r);
}

/* Reap completions until at most `keep` operations are in flight. */
static void copy_wait(struct copier *cp, unsigned keep)
{
	while (cp->inflight > keep) {
		struct io_uring_cqe *cqe;
		io_uring_submit(&cp->ring);
		int r = io_uring_wait_cqe(&cp->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r)
			break; /* cannot happen with a live ring */
		blk_aio_complete(cqe);
		io_uring_cqe_seen(&cp->ring, cqe);
	}
}

static int copy_start(struct copier *cp, uint64_t off, uint64_t len)
{
	copy_wait(cp, COPY_SLOTS - 1);
	struct copy_slot *s = NULL;
	for (unsigned i = 0; i < COPY_SLOTS && !s; i++)
		if (!cp->slot[i].busy)
			s = &cp->slot[i];
	if (cp->err || !s)
		return cp->err ? cp->err : -EIO;
	*s = (struct copy_slot){.aio = {copy_done},
				.cp = cp,
				.buf = s->buf,
				.iov = {s->buf, (size_t)len},
				.off = off,
				.len = len,
				.busy = true};
	cp->inflight++;
	int r = cp->from->drv->submit_rw(cp->from, &cp->ring, &s->aio, false, off, &s->iov, 1, len);
	if (r)
		copy_fail(cp, s, r);
	return cp->err;
}

int blk_commit(const char *top, const char *base, const struct blk_progress *prog, uint64_t *copied,
	       char *msg, size_t msglen)
{
	struct blk t, bs;
	struct copier cp = {.from = &t, .to = &bs};
	uint64_t total = 0, done = 0, data = 0, next_report = PROGRESS_EVERY;
	bool ring_ok = false, base_open = false;
	int r = blk_open(&t, top, BLK_FMT_AUTO, true, false, msg, msglen);
	if (r)
		return r;
	if ((r = blk_open(&bs, base, BLK_FMT_AUTO, false, false, msg, msglen)))
		goto out;
	base_open = true;
	if (bs.size < t.size) {
		snprintf(msg, msglen, "'%s' (%llu bytes) is smaller than '%s' (%llu bytes)", base,
			 (unsigned long long)bs.size, top, (unsigned long long)t.size);
		r = -EINVAL;
		goto out;
	}
	if ((r = blk_ring_init(&cp.ring, 2 * COPY_SLOTS, -1))) {
		snprintf(msg, msglen, "io_uring: %s", strerror(-r));
		goto out;
	}
	ring_ok = true;
	for (unsigned i = 0; i < COPY_SLOTS; i++)
		if (posix_memalign((void **)&cp.slot[i].buf, 4096, COPY_CHUNK)) {
			snprintf(msg, msglen, "out of memory");
			r = -ENOMEM;
			goto out;
		}
	if ((r = held_bytes(&t, &total))) {
		snprintf(msg, msglen, "'%s': reading its metadata: %s", top, strerror(-r));
		goto out;
	}
	for (uint64_t off = 0; off < t.size;) {
		enum blk_status st;
		uint64_t run;
		if ((r = t.drv->status(&t, off, t.size - off, &st, &run))) {
			snprintf(msg, msglen, "'%s': reading its metadata: %s", top, strerror(-r));
			goto out;
		}
		if (st == BLK_ST_ZERO && (r = bs.drv->write_zeroes(&bs, off, run, false))) {
			snprintf(msg, msglen, "'%s': zeroing at %llu: %s", base,
				 (unsigned long long)off, strerror(-r));
			goto out;
		}
		for (uint64_t p = off; st == BLK_ST_DATA && p < off + run;) {
			uint64_t c = off + run - p < COPY_CHUNK ? off + run - p : COPY_CHUNK;
			if ((r = copy_start(&cp, p, c)))
				goto out;
			p += c;
			data += c;
			/* a long run of data (a fully written image is one) reports as it goes */
			if (prog && prog->fn && done + (p - off) >= next_report && p < off + run) {
				if (prog->fn(prog->opaque, done + (p - off), total)) {
					snprintf(msg, msglen, "'%s' into '%s': cancelled", top,
						 base);
					r = -ECANCELED;
					goto out;
				}
				next_report = done + (p - off) + PROGRESS_EVERY;
			}
		}
		if (st != BLK_ST_UNALLOC)
			done += run;
		off += run;
		if (prog && prog->fn && done >= next_report) {
			if (prog->fn(prog->opaque, done, total)) {
				snprintf(msg, msglen, "'%s' into '%s': cancelled", top, base);
				r = -ECANCELED;
				goto out;
			}
			next_report = done + PROGRESS_EVERY;
		}
	}
	copy_wait(&cp, 0);
	if ((r = cp.err))
		goto out;
	if ((r = flush_sync(&bs, &cp.ring)))
		snprintf(msg, msglen, "'%s': flushing: %s", base, strerror(-r));
	if (!r && prog && prog->fn && total)
		(void)prog->fn(prog->opaque, total, total);
out:
	if (ring_ok)
		copy_wait(&cp, 0); /* nothing may be in flight when the images close */
	if (r && r == cp.err)
		snprintf(msg, msglen, "'%s': %s at %llu: %s", cp.err_writing ? base : top,
			 cp.err_writing ? "writing" : "reading", (unsigned long long)cp.err_off,
			 r == -ENOTSUP && !cp.err_writing ? "compressed clusters are not supported"
							  : strerror(-r));
	if (base_open) {
		int rc = blk_close(&bs);
		if (!r && rc) {
			snprintf(msg, msglen, "'%s': writing back metadata: %s", base,
				 strerror(-rc));
			r = rc;
		}
	}
	blk_close(&t);
	if (ring_ok)
		io_uring_queue_exit(&cp.ring);
	for (unsigned i = 0; i < COPY_SLOTS; i++)
		free(cp.slot[i].buf);
	if (!r && copied)
		*copied = data;
	return r;
}

int blk_probe_file(const char *path, enum blk_format *fmt, char *msg, size_t msglen)
{
	uint8_t head[512];
	int fd = fdmap_open(path, O_RDONLY, msg, msglen);
	if (fd < 0) {
		if (!msg[0])
			snprintf(msg, msglen, "'%s': %s", path, strerror(-fd));
		return fd;
	}
	ssize_t n = pread(fd, head, sizeof(head), 0);
	int e = errno;
	close(fd);
	if (n < 0) {
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		return -e;
	}
	*fmt = qcow2_probe(head, (size_t)n) ? BLK_FMT_QCOW2 : BLK_FMT_RAW;
	return 0;
}

int blk_set_backing(const char *image, const char *backing, enum blk_format fmt, char *msg,
		    size_t msglen)
{
	enum blk_format f;
	int r = blk_probe_file(image, &f, msg, msglen);
	if (r)
		return r;
	if (f != BLK_FMT_QCOW2) {
		snprintf(msg, msglen, "'%s': only qcow2 images have a backing file", image);
		return -EINVAL;
	}
	if (fmt == BLK_FMT_AUTO && (r = blk_probe_file(backing, &fmt, msg, msglen)))
		return r;
	return qcow2_set_backing(image, backing, blk_format_name(fmt), msg, msglen);
}

int blk_backing_name(int fd, const char *path, char *name, size_t namelen, enum blk_format *fmt,
		     char *msg, size_t msglen)
{
	uint8_t h[QCOW2_V3_HEADER_LEN];
	name[0] = 0;
	*fmt = BLK_FMT_AUTO;
	ssize_t n = pread(fd, h, sizeof(h), 0);
	if (n < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		return -e;
	}
	if (!qcow2_probe(h, (size_t)n))
		return 0; /* raw: no backing file */
	if (n < 72) {
		snprintf(msg, msglen, "'%s': cannot read the qcow2 header", path);
		return -EIO;
	}
	uint32_t version = be32_get(h + 4), cluster_bits = be32_get(h + 20);
	uint64_t off = be64_get(h + 8);
	uint32_t len = be32_get(h + 16);
	uint32_t hlen = version >= 3 && n >= QCOW2_V3_HEADER_LEN ? be32_get(h + 100) : 72;
	if (cluster_bits < QCOW2_MIN_CLUSTER_BITS || cluster_bits > QCOW2_MAX_CLUSTER_BITS ||
	    hlen < 72 || hlen > (1u << cluster_bits)) {
		snprintf(msg, msglen, "'%s': invalid qcow2 header", path);
		return -EINVAL;
	}
	if (!off)
		return 0;
	uint64_t cs = 1ULL << cluster_bits;
	if (!len || len > QCOW2_MAX_BACKING_NAME || len >= namelen || off < hlen || off > cs ||
	    len > cs - off) {
		snprintf(msg, msglen, "'%s': backing file name (offset %llu, %u bytes) is invalid",
			 path, (unsigned long long)off, len);
		return -EINVAL;
	}
	int r = blk_pread_full(fd, name, len, off);
	if (r) {
		snprintf(msg, msglen, "'%s': %s", path, strerror(-r));
		name[0] = 0;
		return r;
	}
	name[len] = 0;
	if (strlen(name) != len) {
		snprintf(msg, msglen, "'%s': backing file name contains a NUL", path);
		name[0] = 0;
		return -EINVAL;
	}
	/* header extensions (v3; v2 images may have them after the 72-byte header too) up to the
	 * backing name: the backing format */
	for (uint64_t p = hlen; p + 8 <= off;) {
		uint8_t eh[8];
		if (blk_pread_full(fd, eh, 8, p))
			break;
		uint32_t type = be32_get(eh), elen = be32_get(eh + 4);
		if (type == QCOW2_EXT_END)
			break;
		if (type == QCOW2_EXT_BACKING_FORMAT && elen && elen < 16 && p + 8 + elen <= off) {
			char f[16] = {0};
			if (!blk_pread_full(fd, f, elen, p + 8) && blk_format_parse(f, fmt)) {
				snprintf(msg, msglen, "'%s': backing format '%s' is not supported",
					 path, f);
				return -ENOTSUP;
			}
			break;
		}
		p += 8 + (((uint64_t)elen + 7) & ~7ULL);
	}
	return 0;
}
