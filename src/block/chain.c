/* Whole-image operations on backing chains for checkpoints: synchronous I/O through a driver,
 * committing one layer into the image below it, format probing and rebasing. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
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

int blk_rw_sync(struct blk *b, struct io_uring *ring, bool write, uint64_t off, void *buf,
		uint64_t len)
{
	struct sync_op op = {.aio = {sync_done}};
	struct iovec iov = {buf, (size_t)len};
	int r = b->drv->submit_rw(b, ring, &op.aio, write, off, &iov, 1, len);
	if (r)
		return r;
	while (!op.done) {
		struct io_uring_cqe *cqe;
		io_uring_submit(ring);
		r = io_uring_wait_cqe(ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r)
			return r; /* cannot happen with a live ring: nothing else is queued */
		blk_aio_complete(cqe);
		io_uring_cqe_seen(ring, cqe);
	}
	if (op.res < 0)
		return op.res;
	return (uint64_t)op.res == len ? 0 : -EIO;
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

int blk_commit(const char *top, const char *base, const struct blk_progress *prog, uint64_t *copied,
	       char *msg, size_t msglen)
{
	struct blk t, bs;
	struct io_uring ring;
	uint8_t *buf = NULL;
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
	if ((r = io_uring_queue_init(8, &ring, 0))) {
		snprintf(msg, msglen, "io_uring: %s", strerror(-r));
		goto out;
	}
	ring_ok = true;
	if (posix_memalign((void **)&buf, 4096, COPY_CHUNK)) {
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
			if ((r = blk_rw_sync(&t, &ring, false, p, buf, c))) {
				snprintf(msg, msglen, "'%s': reading at %llu: %s", top,
					 (unsigned long long)p,
					 r == -ENOTSUP ? "compressed clusters are not supported"
						       : strerror(-r));
				goto out;
			}
			if ((r = blk_rw_sync(&bs, &ring, true, p, buf, c))) {
				snprintf(msg, msglen, "'%s': writing at %llu: %s", base,
					 (unsigned long long)p, strerror(-r));
				goto out;
			}
			p += c;
			data += c;
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
	if ((r = flush_sync(&bs, &ring)))
		snprintf(msg, msglen, "'%s': flushing: %s", base, strerror(-r));
	if (!r && prog && prog->fn)
		(void)prog->fn(prog->opaque, total, total);
out:
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
		io_uring_queue_exit(&ring);
	free(buf);
	if (!r && copied)
		*copied = data;
	return r;
}

int blk_probe_file(const char *path, enum blk_format *fmt, char *msg, size_t msglen)
{
	uint8_t head[512];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		return -e;
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
