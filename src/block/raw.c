/* Raw disk images and block devices: reads/writes go straight to io_uring; discard and zeroing use
 * fallocate. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include "block/block.h"

static int raw_submit_rw(struct blk *b, struct io_uring *ring, struct blk_aio *a, bool write,
			 uint64_t off, const struct iovec *iov, unsigned n, uint64_t len)
{
	(void)len;
	struct io_uring_sqe *sqe = blk_get_sqe(ring);
	if (!sqe)
		return -EBUSY;
	if (write)
		io_uring_prep_writev(sqe, b->fd, iov, n, off);
	else
		io_uring_prep_readv(sqe, b->fd, iov, n, off);
	io_uring_sqe_set_data(sqe, a);
	return 0;
}

static int raw_submit_flush(struct blk *b, struct io_uring *ring, struct blk_aio *a)
{
	struct io_uring_sqe *sqe = blk_get_sqe(ring);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data(sqe, a);
	return 0;
}

static int raw_discard(struct blk *b, uint64_t off, uint64_t len)
{
	if (!b->can_discard)
		return 0; /* advisory: nothing to do */
	if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) <
	    0)
		return errno == EOPNOTSUPP ? 0 : -errno;
	return 0;
}

static int raw_write_zeroes(struct blk *b, uint64_t off, uint64_t len, bool may_unmap)
{
	int mode = may_unmap && b->can_discard ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
					       : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
	if (fallocate(b->fd, mode, (off_t)off, (off_t)len) == 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EINVAL)
		return -errno;
	/* The file system cannot zero ranges: write zeroes ourselves. */
	static const uint8_t zero[65536] __attribute__((aligned(4096)));
	while (len) {
		size_t c = len < sizeof(zero) ? (size_t)len : sizeof(zero);
		int r = blk_pwrite_full(b->fd, zero, c, off);
		if (r)
			return r;
		off += c;
		len -= c;
	}
	return 0;
}

/* A raw image holds every byte; holes in a sparse file are zeroes. */
static int raw_status(struct blk *b, uint64_t off, uint64_t len, enum blk_status *st,
		      uint64_t *run)
{
	off_t d = lseek(b->fd, (off_t)off, SEEK_DATA);
	uint64_t end;
	if (d < 0 && errno != ENXIO) { /* no SEEK_DATA (block devices, some file systems) */
		*st = BLK_ST_DATA;
		*run = len;
		return 0;
	}
	if (d < 0 || (uint64_t)d > off) { /* a hole up to d (or to the end) */
		*st = BLK_ST_ZERO;
		end = d < 0 ? off + len : (uint64_t)d;
	} else {
		off_t h = lseek(b->fd, (off_t)off, SEEK_HOLE);
		*st = BLK_ST_DATA;
		end = h < 0 ? off + len : (uint64_t)h;
	}
	*run = end > off && end - off < len ? end - off : len;
	return 0;
}

const struct blk_driver blk_raw_driver = {
    .name = "raw",
    .submit_rw = raw_submit_rw,
    .submit_flush = raw_submit_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .status = raw_status,
};
