/* Raw disk images and block devices: reads/writes go straight to io_uring; discard and zeroing use
 * fallocate. */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"

static int raw_prep_rw(struct blk *b, struct io_uring_sqe *sqe, bool write, uint64_t off,
		       const struct iovec *iov, unsigned n)
{
	if (write)
		io_uring_prep_writev(sqe, b->fd, iov, n, off);
	else
		io_uring_prep_readv(sqe, b->fd, iov, n, off);
	return 0;
}

static int raw_prep_flush(struct blk *b, struct io_uring_sqe *sqe)
{
	io_uring_prep_fsync(sqe, b->fd, IORING_FSYNC_DATASYNC);
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
		ssize_t w = pwrite(b->fd, zero, c, (off_t)off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		off += (uint64_t)w;
		len -= (uint64_t)w;
	}
	return 0;
}

static void raw_close(struct blk *b)
{
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}

static const struct blk_driver raw_driver = {
    .name = "raw",
    .prep_rw = raw_prep_rw,
    .prep_flush = raw_prep_flush,
    .discard = raw_discard,
    .write_zeroes = raw_write_zeroes,
    .close = raw_close,
};

int blk_open(struct blk *b, const char *path, bool readonly, bool direct, char *msg, size_t msglen)
{
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
	b->fd = open(path, flags);
	if (b->fd < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s': %s%s", path, strerror(e),
			 e == EINVAL && direct ? " (cache=none needs O_DIRECT support)" : "");
		return -e;
	}
	struct stat st;
	if (fstat(b->fd, &st) < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		goto fail_errno;
	}
	b->logical_block = 512;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		int lbs;
		if (ioctl(b->fd, BLKGETSIZE64, &sz) < 0) {
			snprintf(msg, msglen, "'%s': cannot read the device size: %s", path,
				 strerror(errno));
			goto fail_errno;
		}
		b->size = sz;
		if (direct && ioctl(b->fd, BLKSSZGET, &lbs) == 0 && lbs > 512)
			b->logical_block = (uint32_t)lbs;
		b->can_discard = false;
	} else if (S_ISREG(st.st_mode)) {
		b->size = (uint64_t)st.st_size;
		b->can_discard = true;
	} else {
		snprintf(msg, msglen, "'%s': not a regular file or block device", path);
		errno = EINVAL;
		goto fail_errno;
	}
	if (b->size < 512) {
		snprintf(msg, msglen, "'%s': %llu bytes: a disk needs at least one 512-byte sector",
			 path, (unsigned long long)b->size);
		errno = EINVAL;
		goto fail_errno;
	}
	b->size &= ~511ULL; /* a trailing partial sector is not addressable */
	b->drv = &raw_driver;
	b->path = strdup(path);
	b->readonly = readonly;
	b->direct = direct;
	return 0;
fail_errno : {
	int e = errno;
	close(b->fd);
	b->fd = -1;
	return -e;
}
}

void blk_close(struct blk *b)
{
	if (b->drv)
		b->drv->close(b);
	else if (b->fd >= 0)
		close(b->fd);
	free(b->path);
	b->path = NULL;
	b->drv = NULL;
}
