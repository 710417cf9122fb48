/* The block-driver interface shared by berth's disk formats (raw, qcow2): open with format probing
 * and backing chains, asynchronous reads/writes/flushes on the caller's io_uring, sync maintenance. */
#ifndef BERTH_BLOCK_H
#define BERTH_BLOCK_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct blk;

/*
 * One asynchronous operation. The user_data of every sqe a driver queues points to a blk_aio; the
 * ring's owner calls blk_aio_complete(cqe) for each completion. done() runs exactly once per
 * submitted operation with the bytes transferred or -errno, possibly before submit returns.
 */
struct blk_aio {
	void (*done)(struct blk_aio *a, int res);
};

enum blk_format { BLK_FMT_AUTO, BLK_FMT_RAW, BLK_FMT_QCOW2 };

/* What a range of one image (not counting its backing file) holds. */
enum blk_status { BLK_ST_DATA, BLK_ST_ZERO, BLK_ST_UNALLOC };

struct blk_driver {
	const char *name;
	/* Read or write len bytes of iov at byte offset off. 0 (done() will run) or -errno (it
	 * will not). */
	int (*submit_rw)(struct blk *b, struct io_uring *ring, struct blk_aio *a, bool write,
			 uint64_t off, const struct iovec *iov, unsigned n, uint64_t len);
	/* Make every completed write durable. Same contract as submit_rw. */
	int (*submit_flush)(struct blk *b, struct io_uring *ring, struct blk_aio *a);
	/* Deallocate (discard) or zero a byte range, synchronously. The caller has no reads or
	 * writes in flight that overlap the range. */
	int (*discard)(struct blk *b, uint64_t off, uint64_t len);
	int (*write_zeroes)(struct blk *b, uint64_t off, uint64_t len, bool may_unmap);
	/* Write back cached metadata (clean shutdown); nothing in flight. */
	int (*close)(struct blk *b);
	/* What this image itself holds at off: *st for the first byte, *run bytes from off (at
	 * least 1, at most len) of that kind. Synchronous. */
	int (*status)(struct blk *b, uint64_t off, uint64_t len, enum blk_status *st,
		      uint64_t *run);
};

#define BLK_CHAIN_MAX 64 /* backing files deeper than this are refused (and loops with them) */

struct blk {
	const struct blk_driver *drv;
	char *path;
	int fd;
	bool readonly;
	bool direct;		/* O_DIRECT (cache=none) */
	uint64_t size;		/* bytes the guest sees */
	uint32_t logical_block; /* 512, or the host's logical block size with O_DIRECT */
	bool can_discard;
	bool dry; /* blk_check: validate as if opened this way, change nothing */
	uint64_t dev, ino;	  /* identity of the file, to refuse loops in backing chains */
	struct blk *backing;	  /* qcow2: the image below this one, or NULL */
	const struct blk *above; /* the image this one backs, or NULL at the top */
	void *priv;		  /* the driver's state */
};

const char *blk_format_name(enum blk_format f);
/* "raw", "qcow2", "auto" → format; -EINVAL otherwise. */
int blk_format_parse(const char *s, enum blk_format *f);

/* Open a disk image and its backing chain (read-only below the top). The message names the path
 * and the reason. */
int blk_open(struct blk *b, const char *path, enum blk_format fmt, bool readonly, bool direct,
	     char *msg, size_t msglen);
/* Validate that blk_open would succeed with these arguments, without changing the image (the file
 * is opened read-only; write permission is checked separately). */
int blk_check(const char *path, enum blk_format fmt, bool readonly, bool direct, char *msg,
	      size_t msglen);
/* Close the chain; -errno if cached metadata could not be written back (the image is then as
 * after a crash: consistent, with possible leaks). */
int blk_close(struct blk *b);

/*
 * Checkpoint a disk: make everything written durable, create a qcow2 overlay at path whose backing
 * file is b's image (absolute path, its format), and reopen b as that overlay (the old image
 * becomes its read-only backing). Nothing may be in flight. On failure b is the old image again
 * and the overlay file is removed.
 */
int blk_push_overlay(struct blk *b, const char *path, char *msg, size_t msglen);

/* chain.c: whole-image operations for checkpoints (synchronous; the images may be open elsewhere
 * read-only, never written elsewhere). */

/* Progress of a long copy: bytes done out of total, called every few MiB and at the end; a non-zero
 * return cancels the copy (-ECANCELED). */
struct blk_progress {
	int (*fn)(void *opaque, uint64_t done, uint64_t total);
	void *opaque;
};

/*
 * Commit: copy what the image `top` itself holds (its data and zero clusters, not its backing
 * files') into `base`, so that base alone reads like top over base. Images above top must then be
 * rebased onto base (blk_set_backing) before top goes away. base is written through its driver
 * and synced; top is not changed. *copied (optional) gets the bytes of data copied.
 */
int blk_commit(const char *top, const char *base, const struct blk_progress *prog,
	       uint64_t *copied, char *msg, size_t msglen);
/* Rewrite a qcow2 image's backing file name and format (the data is not touched: the new backing
 * file must read like the old one). The image must not be open for writing anywhere. */
int blk_set_backing(const char *image, const char *backing, enum blk_format fmt, char *msg,
		    size_t msglen);
/* Grow an image to size bytes (a multiple of 512): raw by ftruncate, qcow2 by qcow2_resize. The
 * image must not be open for writing anywhere. Shrinking is refused (-EINVAL). */
int blk_resize(const char *path, enum blk_format fmt, uint64_t size, char *msg, size_t msglen);
/*
 * The backing file named in the header of the image open on fd (path names it in messages),
 * without opening the image through a driver: name as written (relative names are relative to
 * the image's directory), "" for a raw image or a qcow2 image without one; *fmt from the
 * backing-format extension (BLK_FMT_AUTO if absent). -errno with msg.
 */
int blk_backing_name(int fd, const char *path, char *name, size_t namelen, enum blk_format *fmt,
		     char *msg, size_t msglen);
/* The format of an image file as blk_open's probe sees it. */
int blk_probe_file(const char *path, enum blk_format *fmt, char *msg, size_t msglen);

/* Dispatch one completion of a ring the block layer queued on. */
static inline void blk_aio_complete(struct io_uring_cqe *cqe)
{
	struct blk_aio *a = io_uring_cqe_get_data(cqe);
	if (a)
		a->done(a, cqe->res);
}

/* An sqe, submitting what is queued first if the submission queue is full; NULL on failure. */
struct io_uring_sqe *blk_get_sqe(struct io_uring *ring);
/* A ring for the drivers (and eventfd efd, if >= 0, signalled on completions) that accepts only
 * the operations they submit: readv, writev, fsync, without SQE flags; no other opcode (openat,
 * socket, connect …) and, once enabled, no registration. -errno. */
int blk_ring_init(struct io_uring *ring, unsigned entries, int efd);

/* Synchronous helpers for metadata and copy-on-write (full transfers or -errno; EINTR retried,
 * a short transfer is -EIO). */
int blk_pread_full(int fd, void *buf, size_t len, uint64_t off);
int blk_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);

/* Driver entry points used by blk_open. */
extern const struct blk_driver blk_raw_driver;
int qcow2_open(struct blk *b, char *msg, size_t msglen);
bool qcow2_probe(const uint8_t *head, size_t len);
/* Open the image below `above` (read-only, same cache mode) into above->backing; refuses chains
 * deeper than BLK_CHAIN_MAX and files already in the chain. */
int blk_open_backing(struct blk *above, const char *path, enum blk_format fmt, char *msg,
		     size_t msglen);

#endif
