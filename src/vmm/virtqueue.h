/* Split virtqueues (virtio 1.2, 2.7): validated descriptor-chain walking, used ring, notification
 * suppression. */
#ifndef BERTH_VIRTQUEUE_H
#define BERTH_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

#define VQ_MAX_SIZE 1024
#define VQ_DESC_F_NEXT 1
#define VQ_DESC_F_WRITE 2
#define VQ_DESC_F_INDIRECT 4
#define VQ_AVAIL_F_NO_INTERRUPT 1
#define VQ_USED_F_NO_NOTIFY 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vring_used_elem {
	uint32_t id;
	uint32_t len;
};

struct virtqueue {
	const struct guest_mem *mem;
	uint16_t size;
	bool indirect;	/* VIRTIO_F_RING_INDIRECT_DESC negotiated */
	bool event_idx; /* VIRTIO_F_RING_EVENT_IDX negotiated */
	/* Host pointers to the rings, validated when the queue was enabled. */
	struct vring_desc *desc;
	uint16_t *avail; /* flags, idx, ring[size], used_event */
	uint8_t *used;	 /* flags, idx, ring[size] of vring_used_elem, avail_event */
	uint16_t last_avail;
	uint16_t used_idx;
	uint16_t signalled_used; /* used idx at the last interrupt (EVENT_IDX) */
	bool signalled_valid;
};

/* A request: the device-readable buffers, then the device-writable ones. */
struct vq_elem {
	uint16_t head;
	unsigned out_num, in_num;
	uint64_t out_len, in_len; /* total bytes */
	struct iovec out[VQ_MAX_SIZE];
	struct iovec in[VQ_MAX_SIZE];
};

/*
 * Check the ring addresses/size and set the queue up. -EINVAL if size is not a power of two in
 * 1..VQ_MAX_SIZE, or a ring is misaligned or not entirely in guest RAM.
 */
int vq_init(struct virtqueue *vq, const struct guest_mem *mem, uint16_t size, uint64_t desc,
	    uint64_t avail, uint64_t used, bool indirect, bool event_idx);

/*
 * Take the next available chain. 1: *e filled; 0: nothing available; -EINVAL: the guest gave a
 * malformed chain (loop, too long, outside RAM, a readable buffer after a writable one, bad
 * indirect table, head out of range, avail index jumped by more than the queue size). The error
 * text goes to *why (static string).
 */
int vq_pop(struct virtqueue *vq, struct vq_elem *e, const char **why);

/* Give back the last n chains taken with vq_pop, unused (they will be popped again). */
static inline void vq_unpop(struct virtqueue *vq, uint16_t n)
{
	vq->last_avail = (uint16_t)(vq->last_avail - n);
}

/* True if the driver has made chains available that vq_pop has not taken yet. */
bool vq_has_avail(struct virtqueue *vq);
/* The driver's current available index (for batching heuristics). */
uint16_t vq_avail_idx(struct virtqueue *vq);

/* Return a chain: len bytes were written into its writable buffers. */
void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len);

/* After pushing: must the driver be interrupted (NO_INTERRUPT flag / used_event)? */
bool vq_need_interrupt(struct virtqueue *vq);

/*
 * Ask for (or suppress) doorbells. With EVENT_IDX, enabling writes avail_event. Returns true if
 * new buffers arrived meanwhile (the caller must then process again).
 */
bool vq_enable_notify(struct virtqueue *vq, bool enable);

/* Copy helpers over an iovec array; return bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len);

#endif
