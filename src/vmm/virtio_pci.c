/* virtio modern PCI transport: BAR 0 holds common config, ISR, device config, doorbells and the
 * MSI-X table. */
#include "vmm/virtio_pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "vmm/vm.h"

/* Capability types (virtio 1.2, 4.1.4). */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4, CAP_PCI_CFG = 5 };

/* Common configuration layout (4.1.4.3). */
enum {
	C_DFSELECT = 0x00,
	C_DF = 0x04,
	C_GFSELECT = 0x08,
	C_GF = 0x0c,
	C_MSIX = 0x10,
	C_NUMQ = 0x12,
	C_STATUS = 0x14,
	C_CFGGEN = 0x15,
	C_QSEL = 0x16,
	C_QSIZE = 0x18,
	C_QMSIX = 0x1a,
	C_QENABLE = 0x1c,
	C_QNOFF = 0x1e,
	C_QDESC = 0x20,
	C_QDRIVER = 0x28,
	C_QDEVICE = 0x30,
	C_QNDATA = 0x38,
	C_QRESET = 0x3a,
	C_END = 0x3c,
};

#define TRANSPORT_FEATURES                                                                         \
	(1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_RING_INDIRECT_DESC |                        \
	 1ULL << VIRTIO_F_RING_EVENT_IDX)

/*
 * INTA# of this slot (fixed by the DSDT's _PRT; the interrupt-line register is only a note for
 * software). Status bit 3 mirrors the line.
 */
static void set_intx(struct virtio_pci *vp, bool level)
{
	if (vp->intx_level == level)
		return;
	vp->intx_level = level;
	uint8_t *st = &vp->pci.cfg[PCI_STATUS];
	__atomic_store_n(st, (uint8_t)(level ? *st | PCI_STATUS_INTX : *st & ~PCI_STATUS_INTX),
			 __ATOMIC_RELAXED);
	vm_set_irq(vp->vm, vp->intx_gsi, level);
}

static void raise_intx(struct virtio_pci *vp)
{
	set_intx(vp, true);
}

static void lower_intx(struct virtio_pci *vp)
{
	set_intx(vp, false);
}

/* Deliver an interrupt: MSI-X vector if enabled, else INTx with the ISR bit (lock held). */
static void interrupt(struct virtio_pci *vp, uint16_t vector, uint8_t isr_bit)
{
	if (msix_enabled(&vp->msix)) {
		if (vector != MSIX_NO_VECTOR)
			msix_notify(&vp->msix, vector);
		return;
	}
	vp->isr |= isr_bit;
	if (!(pci_get16(&vp->pci, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE))
		raise_intx(vp);
}

void virtio_queue_interrupt(struct virtio_pci *vp, unsigned q)
{
	if (vq_need_interrupt(&vp->q[q].vq))
		interrupt(vp, vp->q[q].vector, 1);
}

void virtio_config_changed(struct virtio_pci *vp)
{
	vp->config_gen++;
	interrupt(vp, vp->config_vector, 2);
}

void virtio_needs_reset(struct virtio_pci *vp, const char *why)
{
	if (vp->broken)
		return;
	log_warn(vp->tag, "device needs reset: %s", why);
	vp->broken = true;
	vp->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (vp->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_config_changed(vp);
}

int virtio_pop(struct virtio_pci *vp, unsigned q, struct vq_elem *e)
{
	const char *why;
	int r = vq_pop(&vp->q[q].vq, e, &why);
	if (r < 0) {
		char msg[160];
		snprintf(msg, sizeof(msg), "queue %u: %s", q, why);
		virtio_needs_reset(vp, msg);
		return -1;
	}
	return r;
}

bool virtio_serve(struct virtio_pci *vp, unsigned q, struct vq_elem *e,
		  int64_t (*fn)(struct virtio_pci *vp, struct vq_elem *e, void *arg), void *arg)
{
	struct virtqueue *vq = &vp->q[q].vq;
	bool pushed = false, ok = true;
	do {
		vq_enable_notify(vq, false);
		int r;
		while ((r = virtio_pop(vp, q, e)) > 0) {
			int64_t len = fn(vp, e, arg);
			if (len < 0 || vp->broken) {
				if (len < 0)
					vq_unpop(vq, 1);
				goto out;
			}
			vq_push(vq, e->head, (uint32_t)len);
			pushed = true;
		}
		if (r < 0) {
			ok = false;
			goto out;
		}
	} while (vq_enable_notify(vq, true));
out:
	if (pushed && !vp->broken)
		virtio_queue_interrupt(vp, q);
	return ok && !vp->broken;
}

static void device_reset(struct virtio_pci *vp)
{
	if (vp->ops->reset)
		vp->ops->reset(vp);
	vp->status = 0;
	vp->guest_features = 0;
	vp->dfselect = vp->gfselect = 0;
	vp->isr = 0;
	vp->config_vector = MSIX_NO_VECTOR;
	vp->queue_sel = 0;
	vp->broken = false;
	for (unsigned i = 0; i < vp->ops->num_queues; i++) {
		struct virtio_queue_state *q = &vp->q[i];
		q->size = vp->ops->queue_max;
		q->vector = MSIX_NO_VECTOR;
		q->enabled = 0;
		q->ready = false;
		q->desc = q->driver = q->device = 0;
	}
	lower_intx(vp);
}

static struct virtio_queue_state *selected(struct virtio_pci *vp)
{
	return vp->queue_sel < vp->ops->num_queues ? &vp->q[vp->queue_sel] : NULL;
}

static void enable_queue(struct virtio_pci *vp, struct virtio_queue_state *q)
{
	if (q->enabled)
		return;
	q->enabled = 1;
	int r = vq_init(&q->vq, &vp->vm->mem, q->size, q->desc, q->driver, q->device,
			virtio_has(vp, VIRTIO_F_RING_INDIRECT_DESC),
			virtio_has(vp, VIRTIO_F_RING_EVENT_IDX));
	if (r) {
		char why[160];
		snprintf(why, sizeof(why),
			 "queue %u: size %u or ring addresses (0x%llx 0x%llx 0x%llx) are invalid",
			 (unsigned)(q - vp->q), q->size, (unsigned long long)q->desc,
			 (unsigned long long)q->driver, (unsigned long long)q->device);
		virtio_needs_reset(vp, why);
		return;
	}
	q->ready = true;
}

static void set_status(struct virtio_pci *vp, uint8_t v)
{
	if (v == 0) {
		device_reset(vp);
		return;
	}
	uint8_t old = vp->status;
	/* NEEDS_RESET is the device's to set; keep it until reset. */
	v = (uint8_t)((v & ~VIRTIO_STATUS_NEEDS_RESET) | (old & VIRTIO_STATUS_NEEDS_RESET));
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(old & VIRTIO_STATUS_FEATURES_OK)) {
		bool ok = !(vp->guest_features & ~vp->host_features) &&
			  virtio_has(vp, VIRTIO_F_VERSION_1);
		if (!ok)
			v &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK; /* the driver sees it did not
								     stick */
	}
	vp->status = v;
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(old & VIRTIO_STATUS_DRIVER_OK) && !vp->broken) {
		if (!(v & VIRTIO_STATUS_FEATURES_OK)) {
			virtio_needs_reset(vp, "DRIVER_OK without FEATURES_OK");
			return;
		}
		if (vp->ops->activate && vp->ops->activate(vp))
			virtio_needs_reset(vp, "the device could not start");
	}
}

static uint64_t common_read(struct virtio_pci *vp, unsigned off, unsigned size)
{
	struct virtio_queue_state *q = selected(vp);
	uint64_t v = 0;
	switch (off) {
	case C_DFSELECT:
		return vp->dfselect;
	case C_DF:
		return vp->dfselect < 2 ? (uint32_t)(vp->host_features >> (32 * vp->dfselect)) : 0;
	case C_GFSELECT:
		return vp->gfselect;
	case C_GF:
		return vp->gfselect < 2 ? (uint32_t)(vp->guest_features >> (32 * vp->gfselect)) : 0;
	case C_MSIX:
		return vp->config_vector;
	case C_NUMQ:
		return vp->ops->num_queues;
	case C_STATUS:
		return vp->status;
	case C_CFGGEN:
		return vp->config_gen;
	case C_QSEL:
		return vp->queue_sel;
	case C_QSIZE:
		return q ? q->size : 0;
	case C_QMSIX:
		return q ? q->vector : MSIX_NO_VECTOR;
	case C_QENABLE:
		return q ? q->enabled : 0;
	case C_QNOFF:
		return vp->queue_sel;
	case C_QDESC:
	case C_QDESC + 4:
		v = q ? q->desc : 0;
		break;
	case C_QDRIVER:
	case C_QDRIVER + 4:
		v = q ? q->driver : 0;
		break;
	case C_QDEVICE:
	case C_QDEVICE + 4:
		v = q ? q->device : 0;
		break;
	default:
		return 0;
	}
	if (off & 4)
		return v >> 32;
	return size == 8 ? v : (uint32_t)v;
}

static void set_half(uint64_t *field, unsigned off, unsigned size, uint64_t val)
{
	if (size == 8)
		*field = val;
	else if (off & 4)
		*field = (*field & 0xffffffffULL) | (val & 0xffffffffULL) << 32;
	else
		*field = (*field & ~0xffffffffULL) | (val & 0xffffffffULL);
}

static void common_write(struct virtio_pci *vp, unsigned off, unsigned size, uint64_t val)
{
	struct virtio_queue_state *q = selected(vp);
	switch (off) {
	case C_DFSELECT:
		vp->dfselect = (uint32_t)val;
		break;
	case C_GFSELECT:
		vp->gfselect = (uint32_t)val;
		break;
	case C_GF:
		if (vp->gfselect < 2 && !(vp->status & VIRTIO_STATUS_FEATURES_OK)) {
			unsigned sh = 32 * vp->gfselect;
			vp->guest_features = (vp->guest_features & ~(0xffffffffULL << sh)) |
					     (val & 0xffffffffULL) << sh;
		}
		break;
	case C_MSIX:
		vp->config_vector = val < vp->msix.nvec ? (uint16_t)val : MSIX_NO_VECTOR;
		break;
	case C_STATUS:
		set_status(vp, (uint8_t)val);
		break;
	case C_QSEL:
		vp->queue_sel = (uint16_t)val;
		break;
	case C_QSIZE:
		if (q && !q->enabled)
			q->size = (uint16_t)val;
		break;
	case C_QMSIX:
		if (q)
			q->vector = val < vp->msix.nvec ? (uint16_t)val : MSIX_NO_VECTOR;
		break;
	case C_QENABLE:
		if (q && (val & 1))
			enable_queue(vp, q);
		break;
	case C_QDESC:
	case C_QDESC + 4:
		if (q && !q->enabled)
			set_half(&q->desc, off, size, val);
		break;
	case C_QDRIVER:
	case C_QDRIVER + 4:
		if (q && !q->enabled)
			set_half(&q->driver, off, size, val);
		break;
	case C_QDEVICE:
	case C_QDEVICE + 4:
		if (q && !q->enabled)
			set_half(&q->device, off, size, val);
		break;
	default:
		break; /* read-only or reserved */
	}
}

static void kick(struct virtio_pci *vp, unsigned qi)
{
	if (qi < vp->ops->num_queues) {
		uint64_t one = 1;
		if (write(vp->q[qi].kick_fd, &one, sizeof(one)) < 0)
			log_debug(vp->tag, "kick queue %u: %s", qi, strerror(errno));
	}
}

uint64_t virtio_pci_bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct virtio_pci *vp = opaque;
	uint64_t v = 0;
	if (off >= VIRTIO_MSIX_TABLE_OFF && off < VIRTIO_MSIX_PBA_OFF)
		return msix_table_read(&vp->msix, off - VIRTIO_MSIX_TABLE_OFF, size);
	if (off >= VIRTIO_MSIX_PBA_OFF && off < VIRTIO_BAR_SIZE)
		return msix_pba_read(&vp->msix, off - VIRTIO_MSIX_PBA_OFF, size);
	pthread_mutex_lock(&vp->lock);
	if (off < C_END) {
		v = common_read(vp, (unsigned)off, size);
		v &= size >= 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
	} else if (off == VIRTIO_ISR_OFF) {
		v = vp->isr; /* reading acknowledges */
		vp->isr = 0;
		lower_intx(vp);
	} else if (off >= VIRTIO_DEVCFG_OFF && off < VIRTIO_DEVCFG_OFF + vp->ops->config_size) {
		uint32_t o = (uint32_t)(off - VIRTIO_DEVCFG_OFF);
		uint8_t buf[8] = {0};
		uint32_t n = size;
		if (o + n > vp->ops->config_size)
			n = vp->ops->config_size - o;
		if (vp->ops->config_read)
			vp->ops->config_read(vp, o, buf, n);
		memcpy(&v, buf, sizeof(v));
	}
	pthread_mutex_unlock(&vp->lock);
	return v;
}

void virtio_pci_bar_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct virtio_pci *vp = opaque;
	if (off >= VIRTIO_MSIX_TABLE_OFF && off < VIRTIO_MSIX_PBA_OFF) {
		msix_table_write(&vp->msix, off - VIRTIO_MSIX_TABLE_OFF, size, val);
		return;
	}
	if (off >= VIRTIO_NOTIFY_OFF && off < VIRTIO_MSIX_TABLE_OFF) {
		/* Only when no ioeventfd caught the doorbell (e.g. an unusual access size). */
		kick(vp, (unsigned)((off - VIRTIO_NOTIFY_OFF) / VIRTIO_NOTIFY_MULT));
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (off < C_END) {
		common_write(vp, (unsigned)off, size, val);
	} else if (off >= VIRTIO_DEVCFG_OFF && off < VIRTIO_DEVCFG_OFF + vp->ops->config_size) {
		uint32_t o = (uint32_t)(off - VIRTIO_DEVCFG_OFF);
		uint8_t buf[8];
		uint32_t n = size;
		memcpy(buf, &val, sizeof(buf));
		if (o + n > vp->ops->config_size)
			n = vp->ops->config_size - o;
		if (vp->ops->config_write)
			vp->ops->config_write(vp, o, buf, n);
	}
	pthread_mutex_unlock(&vp->lock);
}

static const struct bus_ops bar_ops = {virtio_pci_bar_read, virtio_pci_bar_write};

/* Doorbells: an ioeventfd per queue at its notify address, moved with the BAR. */
static void set_doorbells(struct virtio_pci *vp, uint64_t base)
{
	for (unsigned i = 0; i < vp->ops->num_queues; i++) {
		uint64_t a = VIRTIO_NOTIFY_OFF + VIRTIO_NOTIFY_MULT * i;
		if (vp->notify_base)
			vm_ioeventfd(vp->vm, vp->q[i].kick_fd, vp->notify_base + a,
				     vp->ioeventfd_len, false);
		if (base &&
		    vm_ioeventfd(vp->vm, vp->q[i].kick_fd, base + a, vp->ioeventfd_len, true))
			log_warn(vp->tag, "queue %u: no ioeventfd; doorbells exit to the VMM", i);
	}
	vp->notify_base = base;
}

static void bar_moved(struct pci_device *d, unsigned bar, uint64_t old, uint64_t new)
{
	struct virtio_pci *vp = d->opaque;
	(void)old;
	if (bar == 0)
		set_doorbells(vp, new);
}

/* The VIRTIO_PCI_CAP_PCI_CFG window: config-space access to BAR 0 at (offset, length). */
static bool pcicfg_window(struct virtio_pci *vp, unsigned off, unsigned size, uint32_t *boff,
			  unsigned *len)
{
	unsigned cap = vp->pcicfg_cap, data = cap + 16;
	if (off + size <= data || off >= data + 4)
		return false;
	*boff = pci_get32(&vp->pci, cap + 8);
	*len = pci_get32(&vp->pci, cap + 12);
	return vp->pci.cfg[cap + 4] == 0 && (*len == 1 || *len == 2 || *len == 4) &&
	       *boff % *len == 0 && *boff < VIRTIO_BAR_SIZE;
}

static void cfg_reading(struct pci_device *d, unsigned off, unsigned size)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff;
	unsigned len;
	if (pcicfg_window(vp, off, size, &boff, &len))
		pci_put32(d, vp->pcicfg_cap + 16, (uint32_t)virtio_pci_bar_read(vp, boff, len));
}

static void cfg_written(struct pci_device *d, unsigned off, unsigned size)
{
	struct virtio_pci *vp = d->opaque;
	uint32_t boff;
	unsigned len;
	msix_cfg_written(&vp->msix, off, size);
	if (pcicfg_window(vp, off, size, &boff, &len))
		virtio_pci_bar_write(vp, boff, len, pci_get32(d, vp->pcicfg_cap + 16));
	if (off <= PCI_COMMAND + 1 && off + size > PCI_COMMAND) {
		/* INTx disable masks the line; clearing it re-asserts a pending interrupt. */
		pthread_mutex_lock(&vp->lock);
		if (pci_get16(d, PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE)
			lower_intx(vp);
		else if (vp->isr && !msix_enabled(&vp->msix))
			raise_intx(vp);
		pthread_mutex_unlock(&vp->lock);
	}
}

static int add_vcap(struct pci_device *d, uint8_t type, uint32_t off, uint32_t len, unsigned extra)
{
	int c = pci_add_cap(d, PCI_CAP_ID_VNDR, 16 + extra);
	if (c < 0)
		return c;
	d->cfg[c + 2] = (uint8_t)(16 + extra); /* cap_len */
	d->cfg[c + 3] = type;
	d->cfg[c + 4] = 0; /* BAR 0 */
	pci_put32(d, (unsigned)c + 8, off);
	pci_put32(d, (unsigned)c + 12, len);
	return c;
}

/*
 * A driver usually adds several requests back to back: wait until the available index has been
 * still for settle_ns (at most 4x that), so they are taken — and can be merged — together.
 */
static void settle(struct virtqueue *vq, unsigned settle_ns)
{
	uint64_t start = mono_ns(), last = start;
	uint16_t idx = vq_avail_idx(vq);
	while (mono_ns() - last < settle_ns && mono_ns() - start < 4ULL * settle_ns) {
		uint16_t now = vq_avail_idx(vq);
		if (now != idx) {
			idx = now;
			last = mono_ns();
		}
		__builtin_ia32_pause();
	}
}

/* One polling pass over the queues and the device's own poll hook; true if work was found. */
static bool poll_once(struct virtio_pci *vp)
{
	bool work = false;
	pthread_mutex_lock(&vp->lock);
	if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && !vp->broken) {
		for (unsigned q = 0; q < vp->ops->num_queues; q++) {
			if (vp->q[q].ready && vq_has_avail(&vp->q[q].vq)) {
				if (vp->ops->settle_ns)
					settle(&vp->q[q].vq, vp->ops->settle_ns);
				vp->ops->queue_notify(vp, q);
				work = true;
			}
		}
		if (vp->ops->poll && vp->ops->poll(vp))
			work = true;
	}
	pthread_mutex_unlock(&vp->lock);
	return work;
}

/* Before sleeping: ask for doorbells again; true if requests slipped in meanwhile. */
static bool rearm(struct virtio_pci *vp)
{
	bool pending = false;
	pthread_mutex_lock(&vp->lock);
	if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && !vp->broken)
		for (unsigned q = 0; q < vp->ops->num_queues; q++)
			if (vp->q[q].ready && vq_enable_notify(&vp->q[q].vq, true))
				pending = true;
	pthread_mutex_unlock(&vp->lock);
	return pending;
}

/*
 * While polling, doorbells stay off (the driver adds requests without an exit, and they arrive
 * in batches that can be merged); they are re-armed before the thread sleeps.
 */
static void busy_poll(struct virtio_pci *vp)
{
	/*
	 * The window adapts, like QEMU's: it doubles (up to 4x poll_us) when polling found the next
	 * piece of work, and halves (down to poll_us / 8) when it ran out without finding any.
	 */
	uint64_t base = (uint64_t)vp->ops->poll_us * 1000;
	if (!vp->poll_ns)
		vp->poll_ns = base;
	do {
		uint64_t start = mono_ns();
		bool found = false;
		while (mono_ns() - start < vp->poll_ns) {
			if (poll_once(vp)) {
				found = true;
				start = mono_ns(); /* busy: keep going */
			} else {
				__builtin_ia32_pause();
			}
		}
		if (found && vp->poll_ns < 4 * base)
			vp->poll_ns *= 2;
		else if (!found && vp->poll_ns > base / 8)
			vp->poll_ns /= 2;
	} while (rearm(vp));
}

static void *io_thread(void *arg)
{
	struct virtio_pci *vp = arg;
	struct epoll_event evs[32];
	char name[16];
	snprintf(name, sizeof(name), "io-%s", vp->tag + strlen("virtio-"));
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		int n = epoll_wait(vp->epfd, evs, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err(vp->tag, "epoll_wait: %s", strerror(errno));
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			uint32_t qi = evs[i].data.u32;
			if (qi == VIRTIO_MAX_QUEUES)
				return NULL; /* stop */
			if (qi > VIRTIO_MAX_QUEUES) {
				unsigned a = qi - VIRTIO_MAX_QUEUES - 1;
				pthread_mutex_lock(&vp->lock);
				if (vp->aux[a].fd >= 0) /* not unwatched by an earlier event */
					vp->aux[a].cb(vp, vp->aux[a].arg);
				pthread_mutex_unlock(&vp->lock);
				continue;
			}
			uint64_t cnt;
			if (read(vp->q[qi].kick_fd, &cnt, sizeof(cnt)) < 0)
				continue;
			pthread_mutex_lock(&vp->lock);
			if ((vp->status & VIRTIO_STATUS_DRIVER_OK) && !vp->broken &&
			    vp->q[qi].ready)
				vp->ops->queue_notify(vp, qi);
			pthread_mutex_unlock(&vp->lock);
		}
		if (vp->ops->poll_us)
			busy_poll(vp);
	}
}

int virtio_pci_watch(struct virtio_pci *vp, int fd, void (*cb)(struct virtio_pci *vp, void *arg),
		     void *arg)
{
	for (unsigned i = 0; i < VIRTIO_MAX_AUX; i++) {
		if (vp->aux[i].fd >= 0)
			continue;
		vp->aux[i].cb = cb;
		vp->aux[i].arg = arg;
		vp->aux[i].fd = fd;
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = VIRTIO_MAX_QUEUES + 1 + i};
		if (epoll_ctl(vp->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			vp->aux[i].fd = -1;
			return -errno;
		}
		return 0;
	}
	return -ENOSPC;
}

void virtio_pci_unwatch(struct virtio_pci *vp, int fd)
{
	for (unsigned i = 0; i < VIRTIO_MAX_AUX; i++) {
		if (vp->aux[i].fd == fd) {
			epoll_ctl(vp->epfd, EPOLL_CTL_DEL, fd, NULL);
			vp->aux[i].fd = -1;
		}
	}
}

int virtio_pci_create(struct vm *vm, const struct virtio_device_ops *ops, void *dev,
		      struct virtio_pci **out)
{
	int r;
	if (ops->num_queues == 0 || ops->num_queues > VIRTIO_MAX_QUEUES ||
	    ops->config_size > 0x1000)
		return -EINVAL;
	struct virtio_pci *vp = calloc(1, sizeof(*vp));
	if (!vp)
		return -ENOMEM;
	vp->vm = vm;
	vp->ops = ops;
	vp->dev = dev;
	vp->epfd = vp->stopfd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vp->q[i].kick_fd = -1;
	for (unsigned i = 0; i < VIRTIO_MAX_AUX; i++)
		vp->aux[i].fd = -1;
	snprintf(vp->tag, sizeof(vp->tag), "%s%u", ops->name, vm->nvirtio);
	pthread_mutex_init(&vp->lock, NULL);
	vp->host_features = ops->features | TRANSPORT_FEATURES;
	vp->ioeventfd_len =
	    ioctl(vm->host->fd, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD_ANY_LENGTH) > 0 ? 0 : 2;

	struct pci_device *d = &vp->pci;
	pci_device_init(d, vp->tag, 0x1af4, (uint16_t)(0x1040 + ops->device_id), ops->pci_class, 1,
			0x1af4, 0x1100);
	d->opaque = vp;
	d->cfg_reading = cfg_reading;
	d->cfg_written = cfg_written;
	d->bar_moved = bar_moved;
	if ((r = pci_set_bar(d, 0, VIRTIO_BAR_SIZE, true, false, &bar_ops, vp)))
		goto fail;
	/* One vector for configuration changes plus one per queue. */
	unsigned nvec = ops->num_queues + 1u; /* config changes + one per queue, if that many fit */
	if (nvec > MSIX_MAX_VECTORS)
		nvec = MSIX_MAX_VECTORS;
	if ((r = msix_init(&vp->msix, d, vm, nvec, 0, VIRTIO_MSIX_TABLE_OFF, VIRTIO_MSIX_PBA_OFF)))
		goto fail;
	if ((r = add_vcap(d, CAP_COMMON, VIRTIO_COMMON_OFF, C_END, 0)) < 0 ||
	    (r = add_vcap(d, CAP_NOTIFY, VIRTIO_NOTIFY_OFF, VIRTIO_NOTIFY_MULT * ops->num_queues,
			  4)) < 0)
		goto fail;
	pci_put32(d, (unsigned)r + 16, VIRTIO_NOTIFY_MULT);
	if ((r = add_vcap(d, CAP_ISR, VIRTIO_ISR_OFF, 4, 0)) < 0 ||
	    (ops->config_size &&
	     (r = add_vcap(d, CAP_DEVICE, VIRTIO_DEVCFG_OFF, ops->config_size, 0)) < 0) ||
	    (r = add_vcap(d, CAP_PCI_CFG, 0, 0, 4)) < 0)
		goto fail;
	vp->pcicfg_cap = (unsigned)r;
	/* The PCI_CFG window's bar, offset, length and data are the driver's to write. */
	d->wmask[r + 4] = 0xff;
	memset(d->wmask + r + 8, 0xff, 12);

	vp->epfd = epoll_create1(EPOLL_CLOEXEC);
	vp->stopfd = eventfd(0, EFD_CLOEXEC);
	if (vp->epfd < 0 || vp->stopfd < 0) {
		r = -errno;
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = VIRTIO_MAX_QUEUES};
	epoll_ctl(vp->epfd, EPOLL_CTL_ADD, vp->stopfd, &ev);
	for (unsigned i = 0; i < ops->num_queues; i++) {
		vp->q[i].kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vp->q[i].kick_fd < 0) {
			r = -errno;
			goto fail;
		}
		ev = (struct epoll_event){.events = EPOLLIN, .data.u32 = i};
		epoll_ctl(vp->epfd, EPOLL_CTL_ADD, vp->q[i].kick_fd, &ev);
	}
	device_reset(vp);
	if ((r = pci_bus_add(&vm->pci, d)))
		goto fail;
	vp->intx_gsi = PCI_INTX_GSI_BASE + d->slot % 4;
	if ((r = -pthread_create(&vp->thread, NULL, io_thread, vp)))
		goto fail;
	vp->thread_started = true;
	vm->virtio[vm->nvirtio++] = vp;
	vp->dev_ops_owned = true; /* from now on the device frees an owned ops table */
	log_debug(vp->tag, "PCI 00:%02x.0, BAR0 at 0x%llx", d->slot,
		  (unsigned long long)d->bar[0].mapped_at);
	*out = vp;
	return 0;
fail:
	log_err(vp->tag, "cannot create the device: %s", strerror(-r));
	vp->dev = NULL; /* still the caller's */
	virtio_pci_destroy(vp);
	return r;
}

void virtio_pci_destroy(struct virtio_pci *vp)
{
	if (!vp)
		return;
	if (vp->thread_started) {
		uint64_t one = 1;
		if (write(vp->stopfd, &one, sizeof(one)) == sizeof(one))
			pthread_join(vp->thread, NULL);
	}
	if (vp->notify_base)
		set_doorbells(vp, 0);
	if (vp->ops->destroy && vp->dev)
		vp->ops->destroy(vp);
	if (vp->ops->owns_ops && vp->dev_ops_owned)
		free((void *)vp->ops);
	msix_destroy(&vp->msix);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		if (vp->q[i].kick_fd >= 0)
			close(vp->q[i].kick_fd);
	if (vp->epfd >= 0)
		close(vp->epfd);
	if (vp->stopfd >= 0)
		close(vp->stopfd);
	pthread_mutex_destroy(&vp->lock);
	free(vp);
}

/* ---- save/restore ---- */

void virtio_pci_quiesce(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	if (vp->ops->quiesce)
		vp->ops->quiesce(vp);
}

void virtio_pci_unquiesce(struct virtio_pci *vp)
{
	pthread_mutex_unlock(&vp->lock);
}

void virtio_pci_reset_quiet(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	if (vp->ops->quiesce)
		vp->ops->quiesce(vp);
	device_reset(vp);
	pthread_mutex_unlock(&vp->lock);
}

json_t *virtio_pci_save(struct virtio_pci *vp)
{
	json_t *queues = json_array();
	for (unsigned i = 0; queues && i < vp->ops->num_queues; i++) {
		const struct virtio_queue_state *q = &vp->q[i];
		json_array_append_new(
		    queues,
		    json_pack("{s:i,s:i,s:i,s:I,s:I,s:I,s:i,s:i,s:i,s:b}", "size", q->size,
			      "vector", q->vector, "enabled", q->enabled, "desc",
			      (json_int_t)q->desc, "driver", (json_int_t)q->driver, "device",
			      (json_int_t)q->device, "last_avail", q->vq.last_avail, "used_idx",
			      q->vq.used_idx, "signalled_used", q->vq.signalled_used,
			      "signalled_valid", q->vq.signalled_valid));
	}
	json_t *t = json_pack("{s:s,s:i,s:i,s:I,s:i,s:i,s:i,s:i,s:i,s:b,s:b,s:o}", "device",
			      vp->ops->name, "dfselect", vp->dfselect, "gfselect", vp->gfselect,
			      "guest_features", (json_int_t)vp->guest_features, "status",
			      vp->status, "config_gen", vp->config_gen, "isr", vp->isr,
			      "config_vector", vp->config_vector, "queue_sel", vp->queue_sel,
			      "broken", vp->broken, "intx_level", vp->intx_level, "queues", queues);
	json_t *o = json_pack("{s:o,s:o,s:o}", "pci", pci_device_save(&vp->pci), "msix",
			      msix_save(&vp->msix), "transport", t);
	if (o && vp->ops->save) {
		json_t *d = vp->ops->save(vp);
		if (!d || json_object_set_new(o, "state", d)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static int get_int(json_t *o, const char *k, int64_t lo, int64_t hi, int64_t *out)
{
	json_t *v = json_object_get(o, k);
	if (!json_is_integer(v) && !json_is_boolean(v))
		return -EINVAL;
	*out = json_is_boolean(v) ? json_is_true(v) : json_integer_value(v);
	return *out < lo || *out > hi ? -EINVAL : 0;
}

#define GET(obj, key, lo, hi, dst)                                                                 \
	do {                                                                                       \
		int64_t v_;                                                                        \
		if (get_int(obj, key, lo, hi, &v_)) {                                              \
			snprintf(msg, msglen, "%s: field '%s': missing or out of range", vp->tag,  \
				 key);                                                             \
			return -EINVAL;                                                            \
		}                                                                                  \
		dst = v_;                                                                          \
	} while (0)

int virtio_pci_load(struct virtio_pci *vp, json_t *o, char *msg, size_t msglen)
{
	json_t *t = json_object_get(o, "transport"), *queues = json_object_get(t, "queues");
	const char *name = json_string_value(json_object_get(t, "device"));
	if (!json_is_object(t) || !name || strcmp(name, vp->ops->name) || !json_is_array(queues) ||
	    json_array_size(queues) != vp->ops->num_queues) {
		snprintf(msg, msglen, "%s: saved state is for another device or queue count",
			 vp->tag);
		return -EINVAL;
	}
	int r;
	if ((r = pci_device_load(&vp->pci, json_object_get(o, "pci"), msg, msglen)) ||
	    (r = msix_load(&vp->msix, json_object_get(o, "msix"), msg, msglen)))
		return r;
	pthread_mutex_lock(&vp->lock);
	uint64_t gf;
	int64_t status, broken, intx;
	GET(t, "dfselect", 0, 1, vp->dfselect);
	GET(t, "gfselect", 0, 1, vp->gfselect);
	GET(t, "guest_features", INT64_MIN, INT64_MAX, gf);
	GET(t, "status", 0, 255, status);
	GET(t, "config_gen", 0, 255, vp->config_gen);
	GET(t, "isr", 0, 3, vp->isr);
	GET(t, "config_vector", 0, 0xffff, vp->config_vector);
	GET(t, "queue_sel", 0, 0xffff, vp->queue_sel);
	GET(t, "broken", 0, 1, broken);
	GET(t, "intx_level", 0, 1, intx);
	if (gf & ~vp->host_features) {
		pthread_mutex_unlock(&vp->lock);
		snprintf(msg, msglen, "%s: saved features 0x%llx are not all offered here (0x%llx)",
			 vp->tag, (unsigned long long)gf, (unsigned long long)vp->host_features);
		return -EINVAL;
	}
	vp->guest_features = gf;
	vp->broken = broken;
	for (unsigned i = 0; i < vp->ops->num_queues; i++) {
		json_t *j = json_array_get(queues, i);
		struct virtio_queue_state *q = &vp->q[i];
		int64_t en, la, ui, su, sv;
		GET(j, "size", 0, vp->ops->queue_max, q->size);
		GET(j, "vector", 0, 0xffff, q->vector);
		GET(j, "enabled", 0, 1, en);
		GET(j, "desc", INT64_MIN, INT64_MAX, q->desc);
		GET(j, "driver", INT64_MIN, INT64_MAX, q->driver);
		GET(j, "device", INT64_MIN, INT64_MAX, q->device);
		GET(j, "last_avail", 0, 0xffff, la);
		GET(j, "used_idx", 0, 0xffff, ui);
		GET(j, "signalled_used", 0, 0xffff, su);
		GET(j, "signalled_valid", 0, 1, sv);
		q->enabled = 0;
		q->ready = false;
		if (en && !vp->broken) {
			enable_queue(vp, q);
			q->vq.last_avail = (uint16_t)la;
			q->vq.used_idx = (uint16_t)ui;
			q->vq.signalled_used = (uint16_t)su;
			q->vq.signalled_valid = sv;
		}
	}
	vp->status = (uint8_t)(status & ~VIRTIO_STATUS_DRIVER_OK);
	pthread_mutex_unlock(&vp->lock);
	if (vp->ops->load && (r = vp->ops->load(vp, json_object_get(o, "state"), msg, msglen)))
		return r;
	pthread_mutex_lock(&vp->lock);
	set_status(vp, (uint8_t)status); /* DRIVER_OK again: the device starts serving */
	set_intx(vp, intx);
	/* An interrupt raised just before the save may not have reached the saved LAPIC: signal
	 * every live queue once (a spurious interrupt is harmless to a virtio driver). */
	for (unsigned i = 0; i < vp->ops->num_queues && (status & VIRTIO_STATUS_DRIVER_OK); i++)
		if (vp->q[i].ready)
			interrupt(vp, vp->q[i].vector, 1);
	pthread_mutex_unlock(&vp->lock);
	/* A doorbell rung just before the save went to the old process: ring every live queue once
	 * so buffers the driver made available are served (an extra kick finds nothing to do). */
	for (unsigned i = 0; i < vp->ops->num_queues && (status & VIRTIO_STATUS_DRIVER_OK); i++)
		if (vp->q[i].ready)
			kick(vp, i);
	return 0;
}
