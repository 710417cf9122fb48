/* The block-driver interface shared by berth's disk formats (raw now, qcow2 next): open, async I/O
 * through io_uring, sync maintenance. */
#ifndef BERTH_BLOCK_H
#define BERTH_BLOCK_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct blk;

struct blk_driver {
	const char *name;
	/* Queue one read or write of the iovecs at byte offset off; returns 0 or -errno. */
	int (*prep_rw)(struct blk *b, struct io_uring_sqe *sqe, bool write, uint64_t off,
		       const struct iovec *iov, unsigned n);
	/* Queue a flush of everything written so far to stable storage. */
	int (*prep_flush)(struct blk *b, struct io_uring_sqe *sqe);
	/* Deallocate (discard) or zero a byte range, synchronously. */
	int (*discard)(struct blk *b, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct blk *b, uint64_t off, uint64_t len, bool may_unmap);
	void (*close)(struct blk *b);
};

struct blk {
	const struct blk_driver *drv;
	char *path;
	int fd;
	bool readonly;
	bool direct;		/* O_DIRECT (cache=none) */
	uint64_t size;		/* bytes the guest sees */
	uint32_t logical_block; /* 512, or the host's logical block size with O_DIRECT */
	bool can_discard;
};

/* Open a disk image (raw for now). The message names the path and the reason. */
int blk_open(struct blk *b, const char *path, bool readonly, bool direct, char *msg, size_t msglen);
void blk_close(struct blk *b);

#endif
