/* Split virtqueue device side: every guest-controlled field is checked; malformed chains are
 * rejected, never followed; what the device wrote is recorded while a pre-copy runs. */
#include "vmm/virtqueue.h"

#include <errno.h>
#include <string.h>

static bool is_pow2(unsigned v)
{
	return v && !(v & (v - 1));
}

int vq_init(struct virtqueue *vq, const struct guest_mem *mem, uint16_t size, uint64_t desc,
	    uint64_t avail, uint64_t used, bool indirect, bool event_idx)
{
	memset(vq, 0, sizeof(*vq));
	if (!is_pow2(size) || size > VQ_MAX_SIZE)
		return -EINVAL;
	/* Alignment: descriptors 16, available ring 2, used ring 4 (virtio 1.2, 2.7). */
	if ((desc & 15) || (avail & 1) || (used & 3))
		return -EINVAL;
	vq->desc = gpa_to_hva(mem, desc, 16ULL * size);
	vq->avail = gpa_to_hva(mem, avail, 6 + 2ULL * size);
	vq->used = gpa_to_hva(mem, used, 6 + 8ULL * size);
	if (!vq->desc || !vq->avail || !vq->used)
		return -EINVAL;
	vq->mem = mem;
	vq->size = size;
	vq->indirect = indirect;
	vq->event_idx = event_idx;
	return 0;
}

static uint16_t avail_idx(const struct virtqueue *vq)
{
	return __atomic_load_n(&vq->avail[1], __ATOMIC_ACQUIRE);
}

static uint16_t *used_idx_ptr(const struct virtqueue *vq)
{
	return (uint16_t *)(vq->used + 2);
}

static uint16_t *avail_event_ptr(const struct virtqueue *vq)
{
	return (uint16_t *)(vq->used + 4 + 8 * (size_t)vq->size);
}

/* Append one buffer to the element, checking direction order and guest-RAM bounds; without an
 * element, record a device-writable buffer as written (dirty tracking). */
static int add_buffer(struct virtqueue *vq, struct vq_elem *e, const struct vring_desc *d,
		      const char **why)
{
	if (d->len == 0)
		return 0; /* zero-length buffers carry nothing; allowed */
	void *p = gpa_to_hva(vq->mem, d->addr, d->len);
	if (!p) {
		*why = "buffer outside guest RAM";
		return -EINVAL;
	}
	if (!e) { /* vq_push: the device has written this chain's writable buffers */
		if (d->flags & VQ_DESC_F_WRITE)
			guest_mem_mark_dirty(vq->mem, p, d->len);
		return 0;
	}
	if (d->flags & VQ_DESC_F_WRITE) {
		if (e->in_num == VQ_MAX_SIZE) {
			*why = "chain too long";
			return -EINVAL;
		}
		e->in[e->in_num++] = (struct iovec){p, d->len};
		e->in_len += d->len;
	} else {
		if (e->in_num) {
			*why = "device-readable buffer after a writable one";
			return -EINVAL;
		}
		if (e->out_num == VQ_MAX_SIZE) {
			*why = "chain too long";
			return -EINVAL;
		}
		e->out[e->out_num++] = (struct iovec){p, d->len};
		e->out_len += d->len;
	}
	return 0;
}

/* Walk an indirect table (no nesting, no loops, within its own length). */
static int walk_indirect(struct virtqueue *vq, struct vq_elem *e, const struct vring_desc *id,
			 const char **why)
{
	if (!vq->indirect) {
		*why = "indirect descriptor without VIRTIO_F_RING_INDIRECT_DESC";
		return -EINVAL;
	}
	if (id->flags & VQ_DESC_F_NEXT) {
		*why = "descriptor with both INDIRECT and NEXT";
		return -EINVAL;
	}
	if (id->len == 0 || id->len % sizeof(struct vring_desc) ||
	    id->len / sizeof(struct vring_desc) > VQ_MAX_SIZE) {
		*why = "bad indirect table length";
		return -EINVAL;
	}
	unsigned n = id->len / sizeof(struct vring_desc);
	const struct vring_desc *t = gpa_to_hva(vq->mem, id->addr, id->len);
	if (!t || ((uintptr_t)t & 7)) {
		*why = t ? "misaligned indirect table" : "indirect table outside guest RAM";
		return -EINVAL;
	}
	unsigned i = 0;
	for (unsigned count = 0;; count++) {
		if (count == n) {
			*why = "loop in indirect descriptors";
			return -EINVAL;
		}
		struct vring_desc d;
		memcpy(&d, &t[i], sizeof(d)); /* one read: the guest may change it under us */
		if (d.flags & VQ_DESC_F_INDIRECT) {
			*why = "nested indirect descriptor";
			return -EINVAL;
		}
		if (add_buffer(vq, e, &d, why))
			return -EINVAL;
		if (!(d.flags & VQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n) {
			*why = "indirect next index out of range";
			return -EINVAL;
		}
		i = d.next;
	}
}

/* Walk the chain at head into e (NULL: mark its writable buffers dirty instead). */
static int walk_chain(struct virtqueue *vq, uint16_t head, struct vq_elem *e, const char **why)
{
	uint16_t i = head;
	for (unsigned count = 0;; count++) {
		if (count == vq->size) {
			*why = "loop in descriptor chain";
			return -EINVAL;
		}
		struct vring_desc d;
		memcpy(&d, &vq->desc[i], sizeof(d));
		if (d.flags & VQ_DESC_F_INDIRECT) {
			if (count != 0 || walk_indirect(vq, e, &d, why)) {
				if (count != 0)
					*why = "indirect descriptor inside a chain";
				return -EINVAL;
			}
			break;
		}
		if (add_buffer(vq, e, &d, why))
			return -EINVAL;
		if (!(d.flags & VQ_DESC_F_NEXT))
			break;
		if (d.next >= vq->size) {
			*why = "next index out of range";
			return -EINVAL;
		}
		i = d.next;
	}
	return 0;
}

int vq_pop(struct virtqueue *vq, struct vq_elem *e, const char **why)
{
	uint16_t idx = avail_idx(vq);
	if (idx == vq->last_avail)
		return 0;
	if ((uint16_t)(idx - vq->last_avail) > vq->size) {
		*why = "available index moved by more than the queue size";
		return -EINVAL;
	}
	uint16_t head =
	    __atomic_load_n(&vq->avail[2 + vq->last_avail % vq->size], __ATOMIC_RELAXED);
	if (head >= vq->size) {
		*why = "head index out of range";
		return -EINVAL;
	}
	e->head = head;
	e->out_num = e->in_num = 0;
	e->out_len = e->in_len = 0;
	if (walk_chain(vq, head, e, why))
		return -EINVAL;
	vq->last_avail++;
	return 1;
}

uint16_t vq_avail_idx(struct virtqueue *vq)
{
	return avail_idx(vq);
}

bool vq_has_avail(struct virtqueue *vq)
{
	return avail_idx(vq) != vq->last_avail;
}

void vq_push(struct virtqueue *vq, uint16_t head, uint32_t len)
{
	struct vring_used_elem *ring = (struct vring_used_elem *)(vq->used + 4);
	struct vring_used_elem u = {head, len};
	memcpy(&ring[vq->used_idx % vq->size], &u, sizeof(u));
	vq->used_idx++;
	/* The element must be visible before the index that publishes it. */
	__atomic_store_n(used_idx_ptr(vq), vq->used_idx, __ATOMIC_RELEASE);
	/* Every write of the VMM into a guest buffer comes before the push that returns it: while a
	 * pre-copy runs, record the chain's writable buffers and the used ring as written now, so a
	 * page copied before the device finished is copied again. */
	if (guest_mem_tracking(vq->mem)) {
		const char *why;
		walk_chain(vq, head, NULL,
			   &why); /* validated at pop; the guest owns it if it changed */
		guest_mem_mark_dirty(vq->mem, vq->used, 4 + 8ULL * vq->size);
	}
}

bool vq_need_interrupt(struct virtqueue *vq)
{
	/* Order our used-index store before reading the driver's suppression fields. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!vq->event_idx)
		return !(__atomic_load_n(&vq->avail[0], __ATOMIC_RELAXED) &
			 VQ_AVAIL_F_NO_INTERRUPT);
	uint16_t old = vq->signalled_used, new = vq->used_idx;
	bool valid = vq->signalled_valid;
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (!valid)
		return true;
	uint16_t used_event = __atomic_load_n(&vq->avail[2 + vq->size], __ATOMIC_RELAXED);
	/* vring_need_event: did new pass used_event since old? */
	return (uint16_t)(new - used_event - 1) < (uint16_t)(new - old);
}

bool vq_enable_notify(struct virtqueue *vq, bool enable)
{
	if (vq->event_idx) {
		if (enable) {
			__atomic_store_n(avail_event_ptr(vq), vq->last_avail, __ATOMIC_RELAXED);
			guest_mem_mark_dirty(vq->mem, avail_event_ptr(vq), 2);
		}
	} else {
		uint16_t *flags = (uint16_t *)vq->used;
		__atomic_store_n(flags, enable ? 0 : VQ_USED_F_NO_NOTIFY, __ATOMIC_RELAXED);
		guest_mem_mark_dirty(vq->mem, flags, 2);
	}
	if (!enable)
		return false;
	/* Publish the request before checking for buffers that raced with it. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return avail_idx(vq) != vq->last_avail;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t c = iov[i].iov_len - skip;
		if (c > len - done)
			c = len - done;
		memcpy((uint8_t *)buf + done, (uint8_t *)iov[i].iov_base + skip, c);
		done += c;
		skip = 0;
	}
	return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t skip, const void *buf, size_t len)
{
	size_t done = 0;
	for (unsigned i = 0; i < n && done < len; i++) {
		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		size_t c = iov[i].iov_len - skip;
		if (c > len - done)
			c = len - done;
		memcpy((uint8_t *)iov[i].iov_base + skip, (const uint8_t *)buf + done, c);
		done += c;
		skip = 0;
	}
	return done;
}
