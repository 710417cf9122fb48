/* user_virtq.c — split-virtqueue data path (add chain, kick, reap), callable from ring 3 and 0. */
#include "guest.h"
#include "virtio.h"

/* Built with the kernel's flags (general registers only) but placed in .user.text, so the kernel
 * may call these as well as ring-3 workloads. Only identity-mapped user pages are touched: the
 * rings and buffers in RAM and the notify register in a user-mapped BAR. */

static inline void vq_wmb(void)
{
	__asm__ volatile("" ::: "memory"); /* x86 keeps stores in order */
}

static inline void vq_mb(void)
{
	__asm__ volatile("mfence" ::: "memory");
}

static inline uint16_t rd16(const volatile uint16_t *p)
{
	return *p;
}

uint64_t vq_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static uint16_t *used_event(struct virtq *vq)
{
	return &vq->avail->ring[vq->size];
}

static volatile uint16_t *avail_event(struct virtq *vq)
{
	return (volatile uint16_t *)&vq->used->ring[vq->size];
}

static void fill(struct vring_desc *d, const struct vq_buf *b, uint16_t next, int last)
{
	d->addr = b->addr;
	d->len = b->len;
	d->flags = (b->write ? VRING_DESC_F_WRITE : 0) | (last ? 0 : VRING_DESC_F_NEXT);
	d->next = last ? 0 : next;
}

int vq_add(struct virtq *vq, const struct vq_buf *bufs, unsigned int n, int use_indirect,
	   uint64_t token)
{
	uint16_t head, i, d;
	unsigned int k;

	if (!n)
		return -1;
	for (k = 1; k < n; k++) /* device-readable buffers first, then device-writable */
		if (bufs[k - 1].write && !bufs[k].write)
			return -1;
	use_indirect = use_indirect && vq->indirect && n <= VQ_INDIRECT_MAX;
	if (vq->num_free < (use_indirect ? 1 : n))
		return -1;
	head = vq->free_head;
	if (use_indirect) {
		struct vring_desc *t = vq->itab[head];

		for (k = 0; k < n; k++)
			fill(&t[k], &bufs[k], k + 1, k + 1 == n);
		vq->free_head = vq->desc[head].next;
		vq->desc[head].addr = (uint64_t)t;
		vq->desc[head].len = n * sizeof(struct vring_desc);
		vq->desc[head].flags = VRING_DESC_F_INDIRECT;
		vq->num_free--;
	} else {
		for (k = 0, d = head; k < n; k++) {
			i = d;
			d = vq->desc[i].next; /* free-list link, before fill() overwrites it */
			fill(&vq->desc[i], &bufs[k], d, k + 1 == n);
		}
		vq->free_head = d;
		vq->num_free -= n;
	}
	vq->token[head] = token;
	vq->head_state[head] = use_indirect ? VQ_HEAD_INDIRECT : VQ_HEAD_DIRECT;
	vq->avail->ring[vq->avail_idx & (vq->size - 1)] = head;
	vq_wmb();
	vq->avail_idx++;
	*(volatile uint16_t *)&vq->avail->idx = vq->avail_idx;
	return head;
}

int vq_kick(struct virtq *vq)
{
	uint16_t old = vq->kicked_idx, now = vq->avail_idx;
	int notify;

	vq_mb(); /* avail->idx visible before we read the device's suppression state */
	if (vq->event_idx)
		notify = (uint16_t)(now - rd16(avail_event(vq)) - 1) < (uint16_t)(now - old);
	else
		notify = !(rd16(&vq->used->flags) & VRING_USED_F_NO_NOTIFY);
	vq->kicked_idx = now;
	if (notify) {
		*vq->notify = vq->index;
		vq->kicks++;
	} else {
		vq->kicks_suppressed++;
	}
	return notify;
}

int vq_get(struct virtq *vq, uint32_t *len, uint64_t *token)
{
	struct vring_used_elem e;
	uint16_t id, d, n = 1;

	if (rd16(&vq->used->idx) == vq->last_used)
		return 0;
	__asm__ volatile("" ::: "memory"); /* x86 keeps loads in order */
	e = ((volatile struct vring_used_elem *)vq->used->ring)[vq->last_used & (vq->size - 1)];
	vq->last_used++;
	if (vq->event_idx && vq->irq_on)
		*(volatile uint16_t *)used_event(vq) = vq->last_used;
	id = e.id;
	if (id >= vq->size || vq->head_state[id] == VQ_HEAD_FREE)
		return -1; /* not a chain we posted: the caller reports it */
	if (vq->head_state[id] == VQ_HEAD_DIRECT)
		for (d = id; vq->desc[d].flags & VRING_DESC_F_NEXT && n < vq->size; n++)
			d = vq->desc[d].next;
	else
		d = id;
	vq->head_state[id] = VQ_HEAD_FREE;
	vq->desc[d].next = vq->free_head; /* the chain id..d goes back onto the free list */
	vq->free_head = id;
	vq->num_free += n;
	vq->completions++;
	*len = e.len;
	*token = vq->token[id];
	return 1;
}

void vq_irq_enable(struct virtq *vq, int on)
{
	vq->irq_on = on;
	if (vq->event_idx) {
		vq->avail->flags = 0;
		if (on)
			*(volatile uint16_t *)used_event(vq) = vq->last_used;
	} else {
		*(volatile uint16_t *)&vq->avail->flags = on ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
	}
	vq_mb();
}
