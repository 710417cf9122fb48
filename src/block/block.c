/* Block layer core: format names and probing, opening an image and its backing chain, and the
 * small synchronous and io_uring helpers the drivers share. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "block/block.h"
#include "common/fdmap.h"
#include "block/qcow2.h"

static const char *const format_names[] = {
    [BLK_FMT_AUTO] = "auto", [BLK_FMT_RAW] = "raw", [BLK_FMT_QCOW2] = "qcow2"};

const char *blk_format_name(enum blk_format f)
{
	return (unsigned)f < sizeof(format_names) / sizeof(format_names[0]) ? format_names[f] : "?";
}

int blk_format_parse(const char *s, enum blk_format *f)
{
	for (unsigned i = 0; i < sizeof(format_names) / sizeof(format_names[0]); i++)
		if (!strcmp(s, format_names[i])) {
			*f = (enum blk_format)i;
			return 0;
		}
	return -EINVAL;
}

/* liburing 2.3 declares io_uring_register_restrictions/io_uring_enable_rings but does not export
 * them: call the kernel. */
static int ring_register(struct io_uring *ring, unsigned op, const void *arg, unsigned n)
{
	return syscall(__NR_io_uring_register, ring->ring_fd, op, arg, n) < 0 ? -errno : 0;
}

int blk_ring_init(struct io_uring *ring, unsigned entries, int efd)
{
	static const unsigned char ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC};
	struct io_uring_restriction res[sizeof(ops)];
	memset(res, 0, sizeof(res));
	for (unsigned i = 0; i < sizeof(ops); i++) {
		res[i].opcode = IORING_RESTRICTION_SQE_OP;
		res[i].sqe_op = ops[i];
	}
	/* Restrictions can only be registered on a ring created disabled. */
	int r = io_uring_queue_init(entries, ring, IORING_SETUP_R_DISABLED);
	if (r)
		return r;
	if ((efd >= 0 && (r = io_uring_register_eventfd(ring, efd))) ||
	    (r = ring_register(ring, IORING_REGISTER_RESTRICTIONS, res, sizeof(ops))) ||
	    (r = ring_register(ring, IORING_REGISTER_ENABLE_RINGS, NULL, 0))) {
		io_uring_queue_exit(ring);
		return r;
	}
	return 0;
}

struct io_uring_sqe *blk_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe && io_uring_submit(ring) >= 0)
		sqe = io_uring_get_sqe(ring);
	return sqe;
}

int blk_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r, off += (uint64_t)r, len -= (size_t)r;
	}
	return 0;
}

int blk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len) {
		ssize_t r = pwrite(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r, off += (uint64_t)r, len -= (size_t)r;
	}
	return 0;
}

/* Open the file, learn its size, identity and block size; then the format's driver. */
static int open_one(struct blk *b, const char *path, enum blk_format fmt, bool readonly,
		    bool direct, char *msg, size_t msglen)
{
	int e;
	b->fd = -1;
	/* a path handed over as a descriptor (fdmap) is not opened by name: the descriptor's access
	 * mode is checked instead (a dry run changes nothing through it either) */
	bool mapped = fdmap_lookup(path) >= 0;
	int flags = (readonly || (b->dry && !mapped) ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    (direct ? O_DIRECT : 0);
	int fd = fdmap_open(path, flags, msg, msglen);
	if (fd < 0 && msg[0])
		return fd;
	b->fd = fd < 0 ? -1 : fd;
	errno = fd < 0 ? -fd : 0;
	if (b->fd >= 0 && b->dry && !readonly && !mapped && access(path, W_OK) != 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		close(b->fd);
		b->fd = -1;
		return -e;
	}
	if (b->fd < 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': %s%s", path, strerror(e),
			 e == EINVAL && direct ? " (cache=none needs O_DIRECT support)" : "");
		return -e;
	}
	struct stat st;
	if (fstat(b->fd, &st) < 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(e));
		goto fail;
	}
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	/* A backing file already in the chain above is a loop: refuse it before its own backing
	 * file is opened (else the loop would only end at the depth limit). */
	for (const struct blk *p = b->above; p; p = p->above)
		if (p->dev == b->dev && p->ino == b->ino) {
			snprintf(msg, msglen,
				 "'%s': backing file loops back into its own chain ('%s')",
				 b->above->path, path);
			e = ELOOP;
			goto fail;
		}
	b->logical_block = 512;
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		int lbs;
		if (ioctl(b->fd, BLKGETSIZE64, &sz) < 0) {
			e = errno;
			snprintf(msg, msglen, "'%s': cannot read the device size: %s", path,
				 strerror(e));
			goto fail;
		}
		b->size = sz;
		if (direct && ioctl(b->fd, BLKSSZGET, &lbs) == 0 && lbs > 512)
			b->logical_block = (uint32_t)lbs;
	} else if (S_ISREG(st.st_mode)) {
		b->size = (uint64_t)st.st_size;
		b->can_discard = true;
	} else {
		snprintf(msg, msglen, "'%s': not a regular file or block device", path);
		e = EINVAL;
		goto fail;
	}
	if (!(b->path = strdup(path))) {
		e = ENOMEM;
		snprintf(msg, msglen, "'%s': out of memory", path);
		goto fail;
	}
	b->readonly = readonly;
	b->direct = direct;
	if (fmt == BLK_FMT_AUTO) {
		uint8_t head[512] __attribute__((aligned(4096)));
		uint8_t *buf = head;
		void *al = NULL;
		if (direct && posix_memalign(&al, 4096, 4096) == 0)
			buf = al;
		ssize_t n = pread(b->fd, buf, direct ? 4096 : sizeof(head), 0);
		fmt = n > 0 && qcow2_probe(buf, (size_t)n) ? BLK_FMT_QCOW2 : BLK_FMT_RAW;
		free(al);
	}
	if (fmt == BLK_FMT_QCOW2) {
		int r = qcow2_open(b, msg, msglen);
		if (r) {
			e = -r;
			goto fail;
		}
	} else {
		if (b->size < 512) {
			snprintf(msg, msglen,
				 "'%s': %llu bytes: a disk needs at least one 512-byte sector",
				 path, (unsigned long long)b->size);
			e = EINVAL;
			goto fail;
		}
		b->size &= ~511ULL; /* a trailing partial sector is not addressable */
		if (S_ISBLK(st.st_mode))
			b->can_discard = false;
		b->drv = &blk_raw_driver;
	}
	return 0;
fail:
	close(b->fd);
	b->fd = -1;
	free(b->path);
	b->path = NULL;
	return -e;
}

int blk_open(struct blk *b, const char *path, enum blk_format fmt, bool readonly, bool direct,
	     char *msg, size_t msglen)
{
	memset(b, 0, sizeof(*b));
	return open_one(b, path, fmt, readonly, direct, msg, msglen);
}

int blk_check(const char *path, enum blk_format fmt, bool readonly, bool direct, char *msg,
	      size_t msglen)
{
	struct blk b;
	memset(&b, 0, sizeof(b));
	b.dry = true;
	int r = open_one(&b, path, fmt, readonly, direct, msg, msglen);
	if (!r)
		blk_close(&b);
	return r;
}

int blk_open_backing(struct blk *above, const char *path, enum blk_format fmt, char *msg,
		     size_t msglen)
{
	unsigned depth = 0;
	for (const struct blk *p = above; p; p = p->above)
		depth++;
	if (depth >= BLK_CHAIN_MAX) {
		snprintf(msg, msglen, "'%s': backing chain deeper than %u images", above->path,
			 BLK_CHAIN_MAX);
		return -ELOOP;
	}
	struct blk *b = calloc(1, sizeof(*b));
	if (!b) {
		snprintf(msg, msglen, "'%s': out of memory", path);
		return -ENOMEM;
	}
	b->above = above;
	b->dry = above->dry;
	int r = open_one(b, path, fmt, true, above->direct, msg, msglen);
	if (r) {
		free(b);
		return r;
	}
	above->backing = b;
	return 0;
}

int blk_push_overlay(struct blk *b, const char *path, char *msg, size_t msglen)
{
	if (b->readonly) {
		snprintf(msg, msglen, "'%s': a read-only disk needs no overlay", b->path);
		return -EINVAL;
	}
	char *old = realpath(b->path, NULL);
	const char *fmt = b->drv == &blk_raw_driver ? "raw" : "qcow2";
	enum blk_format ofmt = b->drv == &blk_raw_driver ? BLK_FMT_RAW : BLK_FMT_QCOW2;
	bool direct = b->direct;
	int r = old ? 0 : -errno;
	if (r) {
		snprintf(msg, msglen, "'%s': %s", b->path, strerror(-r));
		return r;
	}
	/* Close first: a qcow2 image writes back its metadata and dirty bitmaps and syncs. */
	struct qcow2_create_opts o = {.size = b->size, .backing = old, .backing_fmt = fmt};
	if ((r = qcow2_create(path, &o, msg, msglen))) {
		free(old);
		return r;
	}
	if ((r = blk_close(b)) < 0)
		snprintf(msg, msglen, "'%s': writing back metadata failed: %s", old, strerror(-r));
	else
		r = blk_open(b, path, BLK_FMT_QCOW2, false, direct, msg, msglen);
	if (r) {
		char again[300];
		unlink(path);
		if (blk_open(b, old, ofmt, false, direct, again, sizeof(again)))
			snprintf(msg, msglen, "'%s': could not reopen the disk: %s", old, again);
	}
	free(old);
	return r;
}

int blk_close(struct blk *b)
{
	int r = 0;
	if (b->drv && b->drv->close)
		r = b->drv->close(b);
	if (b->backing) {
		blk_close(b->backing);
		free(b->backing);
		b->backing = NULL;
	}
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
	free(b->path);
	b->path = NULL;
	b->drv = NULL;
	return r;
}
