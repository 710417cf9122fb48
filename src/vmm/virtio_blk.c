/* virtio-blk (virtio 1.2 5.2): requests from every queue go to one io_uring; multi-queue, flush,
 * discard, write-zeroes, GET_ID. */
#include <errno.h>
#include <stdatomic.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "block/block.h"
#include "common/log.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"
#include "vmm/vm.h"

#define BLK_QUEUE_SIZE 256
#define BLK_SEG_MAX (BLK_QUEUE_SIZE - 2)
#define SECTOR 512ULL
#define BLK_POLL_US 50 /* adaptive polling window of the I/O thread */

/* Feature bits (5.2.3). */
#define F_SEG_MAX 2
#define F_RO 5
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_TOPOLOGY 10
#define F_MQ 12
#define F_DISCARD 13
#define F_WRITE_ZEROES 14

enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2 };

#define MAX_DISCARD_SEG 1
#define MAX_DISCARD_SECTORS (1u << 22) /* 2 GiB per request */

struct blk_req {
	struct blk_aio aio; /* the host I/O this request leads (reads, writes, flushes) */
	struct virtio_pci *vp;
	struct blk_req *next_free;
	unsigned q;
	uint8_t *status;
	uint32_t written; /* bytes written into the driver's buffers (for the used ring) */
	/* Reads and writes wait in a batch so that adjacent ones become one host I/O. */
	bool wr, flush;		    /* flush: a T_FLUSH (for the counters) */
	uint64_t sector, len;	    /* len: a read or write's bytes, 0 for other requests */
	uint64_t expect;	    /* bytes the host I/O must transfer (the whole group) */
	struct blk_req *group_next; /* the other requests merged behind this leader */
	struct iovec *merged_iov;   /* the group's iovecs, owned by the leader */
	struct vq_elem elem;
};

#define MERGE_MAX_BYTES (16u << 20)
#define MERGE_MAX_IOV 1024 /* IOV_MAX */

struct virtio_blk {
	struct blk disk;
	char serial[DISK_SERIAL_MAX + 1];
	unsigned nqueues;
	struct io_uring ring;
	bool ring_ok;
	int cq_fd;			 /* eventfd signalled on io_uring completions */
	unsigned inflight;		 /* host I/Os started whose done() has not run */
	bool dropping;			 /* reset: results of requests in flight are dropped */
	bool touched[VIRTIO_MAX_QUEUES]; /* queues with new used entries to interrupt */
	struct blk_req *free;
	struct blk_req *batch[BLK_QUEUE_SIZE];
	unsigned nbatch;
	uint64_t stat_submits, stat_rw; /* host I/Os issued, guest reads/writes they carried */
	/* query-stats: completed guest requests, updated on the I/O thread, read anywhere. */
	_Atomic uint64_t rd_bytes, rd_reqs, wr_bytes, wr_reqs, flush_reqs, errors;
	uint64_t stat_group[16];
	uint8_t config[0x3c];
};

static struct blk_req *req_get(struct virtio_blk *b)
{
	struct blk_req *r = b->free;
	if (r)
		b->free = r->next_free;
	else if (!(r = malloc(sizeof(*r))))
		return NULL;
	r->merged_iov = NULL;
	r->group_next = NULL;
	r->expect = 0;
	return r;
}

static void req_put(struct virtio_blk *b, struct blk_req *r)
{
	r->next_free = b->free;
	b->free = r;
}

static void put_le(uint8_t *p, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void build_config(struct virtio_blk *b)
{
	uint8_t *c = b->config;
	memset(c, 0, sizeof(b->config));
	put_le(c + 0x00, b->disk.size / SECTOR, 8);	     /* capacity */
	put_le(c + 0x0c, BLK_SEG_MAX, 4);		     /* seg_max */
	put_le(c + 0x14, b->disk.logical_block, 4);	     /* blk_size */
	c[0x18] = 0;					     /* physical_block_exp */
	put_le(c + 0x1a, 1, 2);				     /* min_io_size (in blk_size units) */
	put_le(c + 0x1c, 0, 4);				     /* opt_io_size */
	put_le(c + 0x22, b->nqueues, 2);		     /* num_queues */
	put_le(c + 0x24, MAX_DISCARD_SECTORS, 4);	     /* max_discard_sectors */
	put_le(c + 0x28, MAX_DISCARD_SEG, 4);		     /* max_discard_seg */
	put_le(c + 0x2c, b->disk.logical_block / SECTOR, 4); /* discard_sector_alignment */
	put_le(c + 0x30, MAX_DISCARD_SECTORS, 4);	     /* max_write_zeroes_sectors */
	put_le(c + 0x34, MAX_DISCARD_SEG, 4);		     /* max_write_zeroes_seg */
	c[0x38] = b->disk.can_discard;			     /* write_zeroes_may_unmap */
}

static void config_read(struct virtio_pci *vp, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_blk *b = vp->dev;
	if (off < sizeof(b->config))
		memcpy(buf, b->config + off,
		       len < sizeof(b->config) - off ? len : sizeof(b->config) - off);
}

/* Drop n bytes from the front / back of an iovec array (in place). */
static void iov_trim_front(struct iovec *iov, unsigned *n, size_t bytes)
{
	unsigned i = 0;
	while (i < *n && bytes >= iov[i].iov_len)
		bytes -= iov[i++].iov_len;
	if (i < *n && bytes) {
		iov[i].iov_base = (uint8_t *)iov[i].iov_base + bytes;
		iov[i].iov_len -= bytes;
	}
	memmove(iov, iov + i, (*n - i) * sizeof(*iov));
	*n -= i;
}

static void iov_trim_back(struct iovec *iov, unsigned *n, size_t bytes)
{
	while (*n && bytes >= iov[*n - 1].iov_len)
		bytes -= iov[--*n].iov_len;
	if (*n && bytes)
		iov[*n - 1].iov_len -= bytes;
}

static void complete(struct virtio_pci *vp, struct blk_req *r, uint8_t status)
{
	struct virtio_blk *b = vp->dev;
	free(r->merged_iov);
	r->merged_iov = NULL;
	r->group_next = NULL;
	if (!b->dropping) {
		if (status != S_OK)
			atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
		else if (r->len && r->wr) {
			atomic_fetch_add_explicit(&b->wr_bytes, r->len, memory_order_relaxed);
			atomic_fetch_add_explicit(&b->wr_reqs, 1, memory_order_relaxed);
		} else if (r->len) {
			atomic_fetch_add_explicit(&b->rd_bytes, r->len, memory_order_relaxed);
			atomic_fetch_add_explicit(&b->rd_reqs, 1, memory_order_relaxed);
		} else if (r->flush) {
			atomic_fetch_add_explicit(&b->flush_reqs, 1, memory_order_relaxed);
		}
		*r->status = status;
		vq_push(&vp->q[r->q].vq, r->elem.head, r->written + 1);
		b->touched[r->q] = true;
	}
	req_put(b, r);
}

/* A host I/O finished: complete its request and the ones merged behind it. */
static void req_done(struct blk_aio *a, int res)
{
	struct blk_req *r = (struct blk_req *)a;
	struct virtio_pci *vp = r->vp;
	struct virtio_blk *b = vp->dev;
	uint8_t st = S_OK;
	if (res < 0) {
		st = S_IOERR;
		log_debug(vp->tag, "I/O error: %s", strerror(-res));
	} else if (r->expect && (uint64_t)res != r->expect) {
		st = S_IOERR; /* a short transfer is an error for a block device */
	}
	b->inflight--;
	while (r) {
		struct blk_req *next = r->group_next;
		complete(vp, r, st);
		r = next;
	}
}

static void reap(struct virtio_blk *b)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	io_uring_for_each_cqe(&b->ring, head, cqe)
	{
		blk_aio_complete(cqe);
		n++;
	}
	io_uring_cq_advance(&b->ring, n);
}

static void flush_batch(struct virtio_pci *vp);

/* Finish every host I/O in flight (before discards, and on reset). */
static void drain(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	flush_batch(vp);
	io_uring_submit(&b->ring);
	while (b->inflight) {
		struct io_uring_cqe *cqe;
		if (io_uring_wait_cqe(&b->ring, &cqe) < 0)
			break;
		reap(b);
	}
}

static bool range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t bytes)
{
	uint64_t cap = b->disk.size / SECTOR;
	return sector <= cap && bytes / SECTOR <= cap - sector;
}

/* Discard / write-zeroes segments {sector u64, num_sectors u32, flags u32} (synchronous). */
static uint8_t do_ranges(struct virtio_blk *b, struct blk_req *r, bool zeroes)
{
	uint8_t seg[16];
	if (r->elem.out_len != 16 || b->disk.readonly)
		return b->disk.readonly ? S_IOERR : S_UNSUPP;
	iov_to_buf(r->elem.out, r->elem.out_num, 0, seg, sizeof(seg));
	uint64_t sector = 0, n = 0;
	uint32_t flags = 0;
	memcpy(&sector, seg, 8);
	memcpy(&n, seg + 8, 4);
	memcpy(&flags, seg + 12, 4);
	if (n > MAX_DISCARD_SECTORS || !range_ok(b, sector, n * SECTOR) || (flags & ~1u) ||
	    (!zeroes && flags))
		return S_IOERR;
	drain(r->vp);
	int e = zeroes ? b->disk.drv->write_zeroes(&b->disk, sector * SECTOR, n * SECTOR, flags & 1)
		       : b->disk.drv->discard(&b->disk, sector * SECTOR, n * SECTOR);
	return e ? S_IOERR : S_OK;
}

/* Start one request; returns 1 if it went to io_uring, 0 if completed now. */
static int start(struct virtio_pci *vp, struct blk_req *r)
{
	struct virtio_blk *b = vp->dev;
	uint8_t hdr[16];
	uint32_t type;
	uint64_t sector;
	iov_to_buf(r->elem.out, r->elem.out_num, 0, hdr, sizeof(hdr));
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	iov_trim_front(r->elem.out, &r->elem.out_num, 16);
	r->elem.out_len -= 16;
	r->status = (uint8_t *)r->elem.in[r->elem.in_num - 1].iov_base +
		    r->elem.in[r->elem.in_num - 1].iov_len - 1;
	iov_trim_back(r->elem.in, &r->elem.in_num, 1);
	r->elem.in_len -= 1;
	r->written = 0;
	r->len = 0;
	r->flush = type == T_FLUSH;

	switch (type) {
	case T_IN:
	case T_OUT: {
		bool wr = type == T_OUT;
		uint64_t len = wr ? r->elem.out_len : r->elem.in_len;
		if ((wr && b->disk.readonly) || len % SECTOR || !range_ok(b, sector, len)) {
			complete(vp, r, S_IOERR);
			return 0;
		}
		if (len == 0) {
			complete(vp, r, S_OK);
			return 0;
		}
		r->wr = wr;
		r->sector = sector;
		r->len = len;
		r->written = wr ? 0 : (uint32_t)len;
		r->group_next = NULL;
		r->merged_iov = NULL;
		b->batch[b->nbatch++] = r; /* submitted by flush_batch() */
		return 0;
	}
	case T_FLUSH: {
		r->expect = 0;
		r->group_next = NULL;
		b->inflight++;
		int e = b->disk.drv->submit_flush(&b->disk, &b->ring, &r->aio);
		if (e) {
			b->inflight--;
			log_debug(vp->tag, "flush: %s", strerror(-e));
			break;
		}
		return 1;
	}
	case T_GET_ID: {
		char id[DISK_SERIAL_MAX] = {0};
		memcpy(id, b->serial, strlen(b->serial));
		r->written = (uint32_t)iov_from_buf(r->elem.in, r->elem.in_num, 0, id, sizeof(id));
		complete(vp, r, S_OK);
		return 0;
	}
	case T_DISCARD:
	case T_WRITE_ZEROES:
		complete(vp, r, do_ranges(b, r, type == T_WRITE_ZEROES));
		return 0;
	default:
		complete(vp, r, S_UNSUPP);
		return 0;
	}
	complete(vp, r, S_IOERR);
	return 0;
}

static void interrupt_touched(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	for (unsigned q = 0; q < b->nqueues; q++)
		if (b->touched[q]) {
			b->touched[q] = false;
			virtio_queue_interrupt(vp, q);
		}
}

/* Submit the batched reads and writes, merging runs of adjacent ones into one host I/O. */
static void flush_batch(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	unsigned i = 0;
	while (i < b->nbatch) {
		struct blk_req *lead = b->batch[i];
		unsigned j = i + 1, niov = lead->wr ? lead->elem.out_num : lead->elem.in_num;
		uint64_t bytes = lead->len;
		while (j < b->nbatch) {
			struct blk_req *c = b->batch[j], *prev = b->batch[j - 1];
			unsigned cn = c->wr ? c->elem.out_num : c->elem.in_num;
			if (c->wr != lead->wr || c->sector != prev->sector + prev->len / SECTOR ||
			    niov + cn > MERGE_MAX_IOV || bytes + c->len > MERGE_MAX_BYTES)
				break;
			niov += cn;
			bytes += c->len;
			j++;
		}
		struct iovec *iov = lead->wr ? lead->elem.out : lead->elem.in;
		if (j - i > 1) {
			struct iovec *m = malloc(niov * sizeof(*m));
			if (!m) {
				j = i + 1; /* no memory: submit this one alone */
				niov = lead->wr ? lead->elem.out_num : lead->elem.in_num;
				bytes = lead->len;
			} else {
				unsigned k = 0;
				for (unsigned x = i; x < j; x++) {
					struct blk_req *c = b->batch[x];
					unsigned cn = c->wr ? c->elem.out_num : c->elem.in_num;
					memcpy(m + k, c->wr ? c->elem.out : c->elem.in,
					       cn * sizeof(*m));
					k += cn;
					if (x > i)
						b->batch[x - 1]->group_next = c;
				}
				lead->merged_iov = iov = m;
			}
		}
		lead->expect = bytes;
		b->stat_submits++;
		b->stat_rw += j - i;
		b->stat_group[j - i < 16 ? j - i : 15]++;
		b->inflight++;
		int e = b->disk.drv->submit_rw(&b->disk, &b->ring, &lead->aio, lead->wr,
					       lead->sector * SECTOR, iov, niov, bytes);
		if (e) {
			log_debug(vp->tag, "cannot start I/O: %s", strerror(-e));
			req_done(&lead->aio, e);
		}
		i = j;
	}
	b->nbatch = 0;
}

static void on_completion(struct virtio_pci *vp, void *arg)
{
	struct virtio_blk *b = arg;
	uint64_t cnt;
	if (read(b->cq_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		return;
	reap(b);
	interrupt_touched(vp);
}

/* Polling hook: reap completions without waiting for the eventfd. */
static bool blk_poll(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	if (!b->inflight || !io_uring_cq_ready(&b->ring))
		return false;
	reap(b);
	interrupt_touched(vp);
	return true;
}

static void blk_notify(struct virtio_pci *vp, unsigned qi)
{
	struct virtio_blk *b = vp->dev;
	struct virtqueue *vq = &vp->q[qi].vq;
	unsigned queued = 0;
	do {
		vq_enable_notify(vq, false);
		for (;;) {
			struct blk_req *r = req_get(b);
			const char *why;
			if (!r) {
				log_err(vp->tag, "out of memory");
				break;
			}
			int got = vq_pop(vq, &r->elem, &why);
			if (got <= 0) {
				req_put(b, r);
				if (got < 0) {
					virtio_needs_reset(vp, why);
					goto out;
				}
				break;
			}
			r->q = qi;
			r->vp = vp;
			r->aio.done = req_done;
			if (r->elem.out_len < 16 || r->elem.in_num == 0) {
				req_put(b, r);
				virtio_needs_reset(vp, "request without header or status byte");
				goto out;
			}
			if (b->nbatch == BLK_QUEUE_SIZE) {
				queued += b->nbatch;
				flush_batch(vp);
			}
			queued += (unsigned)start(vp, r);
		}
		/* The I/O thread polls next and re-arms doorbells when it stops polling. */
	} while (0);
out:
	queued += b->nbatch;
	flush_batch(vp);
	if (queued)
		io_uring_submit(&b->ring);
	interrupt_touched(vp);
}

/* The driver reset the device: wait for every request in flight; their results are dropped. */
static void blk_reset(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	b->dropping = true;
	drain(vp);
	b->dropping = false;
	memset(b->touched, 0, sizeof(b->touched));
}

/* Save: every request in flight completes (and is in the used ring) before memory is saved. */
static void blk_quiesce(struct virtio_pci *vp)
{
	drain(vp);
	interrupt_touched(vp);
}

bool virtio_blk_is(const struct virtio_pci *vp)
{
	return vp->ops->device_id == 2;
}

bool virtio_blk_writable(const struct virtio_pci *vp)
{
	return !((struct virtio_blk *)vp->dev)->disk.readonly;
}

int virtio_blk_push_overlay(struct virtio_pci *vp, const char *path, char *msg, size_t msglen)
{
	struct virtio_blk *b = vp->dev;
	drain(vp); /* the caller quiesced the device; nothing may still be in flight */
	int r = blk_push_overlay(&b->disk, path, msg, msglen);
	if (!r)
		log_info(vp->tag, "now writing to %s (its backing file holds the checkpoint)",
			 path);
	return r;
}

const struct blk *virtio_blk_disk(const struct virtio_pci *vp)
{
	return &((const struct virtio_blk *)vp->dev)->disk;
}

int virtio_blk_switch(struct virtio_pci *vp, const char *path, enum blk_format fmt,
		      int (*between)(void *arg, char *msg, size_t msglen), void *arg, char *msg,
		      size_t msglen)
{
	struct virtio_blk *b = vp->dev;
	drain(vp); /* the caller quiesced the device; nothing may still be in flight */
	char *old = strdup(b->disk.path);
	bool direct = b->disk.direct;
	enum blk_format ofmt = b->disk.drv == &blk_raw_driver ? BLK_FMT_RAW : BLK_FMT_QCOW2;
	if (!old) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	int r = blk_close(&b->disk);
	if (r < 0)
		snprintf(msg, msglen, "'%s': writing back metadata failed: %s", old, strerror(-r));
	if (!r && between)
		r = between(arg, msg, msglen);
	if (!r)
		r = blk_open(&b->disk, path, fmt, false, direct, msg, msglen);
	if (r) {
		char again[300];
		if (blk_open(&b->disk, old, ofmt, false, direct, again, sizeof(again))) {
			log_err(vp->tag, "could not reopen '%s': %s", old, again);
			virtio_needs_reset(vp, "its disk could not be reopened");
		}
	} else if (strcmp(old, path)) {
		log_info(vp->tag, "now writing to %s", path);
	}
	free(old);
	return r;
}

static json_t *blk_stats(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	const struct blk *top = &b->disk;
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "path", top->path, "read_bytes",
			 (json_int_t)atomic_load(&b->rd_bytes), "read_requests",
			 (json_int_t)atomic_load(&b->rd_reqs), "write_bytes",
			 (json_int_t)atomic_load(&b->wr_bytes), "write_requests",
			 (json_int_t)atomic_load(&b->wr_reqs), "flush_requests",
			 (json_int_t)atomic_load(&b->flush_reqs), "errors",
			 (json_int_t)atomic_load(&b->errors));
}

static void blk_destroy(struct virtio_pci *vp)
{
	struct virtio_blk *b = vp->dev;
	log_debug(vp->tag, "%llu reads/writes in %llu host I/Os", (unsigned long long)b->stat_rw,
		  (unsigned long long)b->stat_submits);
	for (unsigned i = 1; i < 16; i++)
		if (b->stat_group[i])
			log_debug(vp->tag, "  groups of %u: %llu", i,
				  (unsigned long long)b->stat_group[i]);
	blk_reset(vp);
	while (b->free) {
		struct blk_req *r = b->free;
		b->free = r->next_free;
		free(r);
	}
	if (b->ring_ok)
		io_uring_queue_exit(&b->ring);
	if (b->cq_fd >= 0)
		close(b->cq_fd);
	if (blk_close(&b->disk) < 0)
		log_err(vp->tag, "metadata could not be written back at close");
	free(b);
	vp->dev = NULL;
}

int virtio_blk_create(struct vm *vm, const struct disk_cfg *cfg, unsigned nqueues)
{
	char msg[300];
	struct virtio_blk *b = calloc(1, sizeof(*b));
	struct virtio_device_ops *ops = calloc(1, sizeof(*ops));
	int r;
	if (!b || !ops) {
		free(b);
		free(ops);
		return -ENOMEM;
	}
	b->cq_fd = -1;
	if (nqueues > VIRTIO_MAX_QUEUES)
		nqueues = VIRTIO_MAX_QUEUES;
	b->nqueues = nqueues ? nqueues : 1;
	snprintf(b->serial, sizeof(b->serial), "%s", cfg->serial);
	if ((r = blk_open(&b->disk, cfg->path, cfg->format, cfg->readonly, cfg->cache_none, msg,
			  sizeof(msg)))) {
		log_err("virtio-blk", "--disk %s", msg);
		goto fail;
	}
	build_config(b);
	b->cq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->cq_fd < 0) {
		r = -errno;
		goto fail;
	}
	if ((r = blk_ring_init(&b->ring, BLK_QUEUE_SIZE * b->nqueues, b->cq_fd))) {
		log_err("virtio-blk", "io_uring: %s", strerror(-r));
		goto fail;
	}
	b->ring_ok = true;
	/* The ops table carries per-disk facts (queues, features), so each disk has its own. */
	*ops = (struct virtio_device_ops){
	    .name = "virtio-blk",
	    .device_id = 2,
	    .pci_class = 0x010000,
	    .num_queues = (uint16_t)b->nqueues,
	    .queue_max = BLK_QUEUE_SIZE,
	    .features = 1ULL << F_SEG_MAX | 1ULL << F_BLK_SIZE | 1ULL << F_FLUSH |
			1ULL << F_TOPOLOGY | 1ULL << F_MQ | 1ULL << F_DISCARD |
			1ULL << F_WRITE_ZEROES | (cfg->readonly ? 1ULL << F_RO : 0),
	    .config_size = sizeof(b->config),
	    .config_read = config_read,
	    .reset = blk_reset,
	    .quiesce = blk_quiesce,
	    .queue_notify = blk_notify,
	    .destroy = blk_destroy,
	    .owns_ops = true,
	    .poll_us = BLK_POLL_US,
	    .settle_ns = 1000,
	    .poll = blk_poll,
	    .stats = blk_stats,
	};
	struct virtio_pci *vp;
	if ((r = virtio_pci_create(vm, ops, b, &vp)))
		goto fail;
	if ((r = virtio_pci_watch(vp, b->cq_fd, on_completion, b)))
		return r; /* the device is on the bus; the VM teardown frees it */
	log_debug(vp->tag, "%s: %llu sectors, %u queue(s)%s%s", cfg->path,
		  (unsigned long long)(b->disk.size / SECTOR), b->nqueues,
		  cfg->readonly ? ", read-only" : "", cfg->cache_none ? ", cache=none" : "");
	return 0;
fail:
	if (b->ring_ok)
		io_uring_queue_exit(&b->ring);
	if (b->cq_fd >= 0)
		close(b->cq_fd);
	blk_close(&b->disk);
	free(b);
	free(ops);
	return r;
}
