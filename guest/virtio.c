/* virtio.c — virtio-pci modern transport: capabilities, status, features, queue setup (ring 0). */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define VIRTIO_PCI_CAP_COMMON 1
#define VIRTIO_PCI_CAP_NOTIFY 2
#define VIRTIO_PCI_CAP_ISR 3
#define VIRTIO_PCI_CAP_DEVICE 4

#define RESET_TIMEOUT_US 1000000

/* Ring memory for every virtqueue, identity-mapped and user-accessible (it is RAM). */
struct vq_mem {
	struct vring_desc desc[VQ_MAX_SIZE];
	uint8_t avail[4096];
	uint8_t used[4096];
	struct vring_desc itab[VQ_MAX_SIZE][VQ_INDIRECT_MAX];
	struct virtq q;
	const struct virtio_dev *owner;
};
_Static_assert(sizeof(struct vring_avail) + (VQ_MAX_SIZE + 1) * 2 <= 4096, "avail page");
_Static_assert(sizeof(struct vring_used) + VQ_MAX_SIZE * 8 + 2 <= 4096, "used page");

static struct vq_mem vq_pool[VQ_SLOTS] __attribute__((aligned(4096)));

static uint8_t c_rd8(const struct virtio_dev *v, unsigned int off)
{
	return *(volatile uint8_t *)(v->common + off);
}

static uint16_t c_rd16(const struct virtio_dev *v, unsigned int off)
{
	return *(volatile uint16_t *)(v->common + off);
}

static uint32_t c_rd32(const struct virtio_dev *v, unsigned int off)
{
	return *(volatile uint32_t *)(v->common + off);
}

static void c_wr8(const struct virtio_dev *v, unsigned int off, uint8_t x)
{
	*(volatile uint8_t *)(v->common + off) = x;
}

static void c_wr16(const struct virtio_dev *v, unsigned int off, uint16_t x)
{
	*(volatile uint16_t *)(v->common + off) = x;
}

static void c_wr32(const struct virtio_dev *v, unsigned int off, uint32_t x)
{
	*(volatile uint32_t *)(v->common + off) = x;
}

uint8_t virtio_status(const struct virtio_dev *v)
{
	return c_rd8(v, VCOMMON_STATUS);
}

void virtio_set_status(const struct virtio_dev *v, uint8_t s)
{
	c_wr8(v, VCOMMON_STATUS, s);
}

/* Record the first failure with the device status (NEEDS_RESET shows there); returns -1. */
int virtio_fail(struct virtio_dev *v, const char *what)
{
	uint8_t s = v->common ? virtio_status(v) : 0;

	if (!v->error[0])
		snprintf(v->error, sizeof(v->error), "%s status=0x%02x%s", what, s,
			 (s & VIRTIO_S_NEEDS_RESET) ? " needs-reset" : "");
	return -1;
}

/* The nth function of virtio device type `type` (modern id 0x1040+type). */
int virtio_find(struct virtio_dev *v, unsigned int type, unsigned int nth)
{
	struct pci_dev *p;

	memset(v, 0, sizeof(*v));
	if (pci_init() < 0) {
		snprintf(v->error, sizeof(v->error), "pci %s", pci_error);
		return -1;
	}
	p = pci_find(VIRTIO_VENDOR, VIRTIO_PCI_MODERN_BASE + type, nth);
	if (!p) {
		snprintf(v->error, sizeof(v->error), "no-device id=%04x:%04x", VIRTIO_VENDOR,
			 VIRTIO_PCI_MODERN_BASE + type);
		return -1;
	}
	return virtio_open(v, p);
}

/* Locate the vendor capabilities. The first structure of each type the driver can use wins
 * (virtio 1.2, 4.1.4). Each must lie inside a memory BAR. */
int virtio_open(struct virtio_dev *v, struct pci_dev *p)
{
	unsigned int off = 0;

	memset(v, 0, sizeof(*v));
	v->pci = p;
	while ((off = pci_find_cap(p, PCI_CAP_VENDOR, off)) != 0) {
		uint8_t len = pci_read8(p, off + 2), type = pci_read8(p, off + 3);
		uint8_t bar = pci_read8(p, off + 4);
		uint32_t start = pci_read32(p, off + 8), length = pci_read32(p, off + 12);
		const struct pci_bar *b;
		uint64_t addr;

		if (len < 16 || bar > 5 || type < VIRTIO_PCI_CAP_COMMON ||
		    type > VIRTIO_PCI_CAP_DEVICE)
			continue;
		b = &p->bar[bar];
		if (b->io || !b->addr || (uint64_t)start + length > b->size)
			continue;
		addr = b->addr + start;
		if (type == VIRTIO_PCI_CAP_COMMON && !v->common && length >= 56) {
			v->common = addr;
		} else if (type == VIRTIO_PCI_CAP_NOTIFY && !v->notify_base && len >= 20) {
			v->notify_base = addr;
			v->notify_len = length;
			v->notify_mult = pci_read32(p, off + 16);
		} else if (type == VIRTIO_PCI_CAP_ISR && !v->isr) {
			v->isr = addr;
		} else if (type == VIRTIO_PCI_CAP_DEVICE && !v->devcfg) {
			v->devcfg = addr;
			v->devcfg_len = length;
		}
	}
	if (!v->common || !v->notify_base || !v->isr) {
		snprintf(v->error, sizeof(v->error), "missing-cap common=%d notify=%d isr=%d",
			 !!v->common, !!v->notify_base, !!v->isr);
		return -1;
	}
	if (p->map_error) {
		snprintf(v->error, sizeof(v->error), "bar-unmapped");
		return -1;
	}
	pci_enable(p);
	return 0;
}

static void release_queues(struct virtio_dev *v)
{
	for (unsigned int i = 0; i < VQ_SLOTS; i++)
		if (vq_pool[i].owner == v)
			vq_pool[i].owner = NULL;
	memset(v->vq, 0, sizeof(v->vq));
}

/* Write 0 and wait until the device reads back 0 (virtio 1.2, 4.1.4.3.2). Its queues are gone
 * afterwards; their memory is free again. */
int virtio_reset(struct virtio_dev *v)
{
	uint64_t end = tsc_after_us(RESET_TIMEOUT_US);

	virtio_set_status(v, 0);
	while (virtio_status(v) != 0) {
		if (rdtsc() > end)
			return virtio_fail(v, "reset-timeout");
		cpu_relax();
	}
	release_queues(v);
	v->features = 0;
	return 0;
}

uint64_t virtio_read_features(const struct virtio_dev *v)
{
	uint64_t f;

	c_wr32(v, VCOMMON_DFSELECT, 0);
	f = c_rd32(v, VCOMMON_DF);
	c_wr32(v, VCOMMON_DFSELECT, 1);
	return f | (uint64_t)c_rd32(v, VCOMMON_DF) << 32;
}

static void write_features(const struct virtio_dev *v, uint64_t f)
{
	c_wr32(v, VCOMMON_GFSELECT, 0);
	c_wr32(v, VCOMMON_GF, (uint32_t)f);
	c_wr32(v, VCOMMON_GFSELECT, 1);
	c_wr32(v, VCOMMON_GF, (uint32_t)(f >> 32));
}

/* Reset, ACKNOWLEDGE, DRIVER, accept offered & want (everything in `required` must be offered),
 * FEATURES_OK and check that it stuck (virtio 1.2, 3.1.1). */
int virtio_negotiate(struct virtio_dev *v, uint64_t want, uint64_t required)
{
	if (virtio_reset(v) < 0)
		return -1;
	v->num_queues = c_rd16(v, VCOMMON_NUMQ);
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE);
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER);
	v->offered = virtio_read_features(v);
	if ((v->offered & required) != required) {
		virtio_set_status(v, virtio_status(v) | VIRTIO_S_FAILED);
		snprintf(v->error, sizeof(v->error), "feature-missing offered=0x%lx required=0x%lx",
			 v->offered, required);
		return -1;
	}
	v->features = v->offered & want;
	write_features(v, v->features);
	virtio_set_status(v, VIRTIO_S_ACKNOWLEDGE | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(virtio_status(v) & VIRTIO_S_FEATURES_OK)) {
		virtio_fail(v, "features-refused");
		virtio_set_status(v, virtio_status(v) | VIRTIO_S_FAILED);
		return -1;
	}
	return 0;
}

uint16_t virtio_queue_read16(const struct virtio_dev *v, unsigned int q, unsigned int off)
{
	c_wr16(v, VCOMMON_Q_SELECT, q);
	return c_rd16(v, off);
}

void virtio_set_config_vector(const struct virtio_dev *v, uint16_t vec, uint16_t *readback)
{
	c_wr16(v, VCOMMON_MSIX, vec);
	if (readback)
		*readback = c_rd16(v, VCOMMON_MSIX);
}

static struct vq_mem *alloc_slot(const struct virtio_dev *v)
{
	for (unsigned int i = 0; i < VQ_SLOTS; i++) {
		if (!vq_pool[i].owner) {
			vq_pool[i].owner = v;
			return &vq_pool[i];
		}
	}
	return NULL;
}

/* Set up queue `index` with at most `size` entries (the device's maximum may be smaller), MSI-X
 * vector `msix_vector` (VIRTIO_NO_VECTOR: none; read back to check the device took it), then
 * enable it. */
int virtio_setup_queue(struct virtio_dev *v, unsigned int index, unsigned int size,
		       uint16_t msix_vector)
{
	struct vq_mem *m;
	struct virtq *q;
	uint16_t max, noff;
	uint64_t notify_off;

	if (index >= v->num_queues || index >= VIRTIO_MAX_QUEUES)
		return virtio_fail(v, "queue-index");
	c_wr16(v, VCOMMON_Q_SELECT, index);
	max = c_rd16(v, VCOMMON_Q_SIZE);
	if (!max)
		return virtio_fail(v, "queue-unavailable");
	if (c_rd16(v, VCOMMON_Q_ENABLE))
		return virtio_fail(v, "queue-already-enabled");
	if (size > max)
		size = max;
	if (size > VQ_MAX_SIZE)
		size = VQ_MAX_SIZE;
	while (size & (size - 1))
		size &= size - 1; /* power of two, so ring positions are idx & (size - 1) */
	m = alloc_slot(v);
	if (!m)
		return virtio_fail(v, "no-queue-slot");
	memset(m->desc, 0, sizeof(m->desc));
	memset(m->avail, 0, sizeof(m->avail));
	memset(m->used, 0, sizeof(m->used));
	q = &m->q;
	memset(q, 0, sizeof(*q));
	q->index = index;
	q->size = size;
	q->num_free = size;
	for (unsigned int i = 0; i + 1 < size; i++)
		m->desc[i].next = i + 1;
	q->desc = m->desc;
	q->avail = (struct vring_avail *)m->avail;
	q->used = (struct vring_used *)m->used;
	q->itab = m->itab;
	q->event_idx = !!(v->features & VIRTIO_F_EVENT_IDX);
	q->indirect = !!(v->features & VIRTIO_F_INDIRECT_DESC);

	c_wr16(v, VCOMMON_Q_SIZE, size);
	c_wr32(v, VCOMMON_Q_DESCLO, (uint32_t)(uint64_t)q->desc);
	c_wr32(v, VCOMMON_Q_DESCHI, (uint32_t)((uint64_t)q->desc >> 32));
	c_wr32(v, VCOMMON_Q_AVAILLO, (uint32_t)(uint64_t)q->avail);
	c_wr32(v, VCOMMON_Q_AVAILHI, (uint32_t)((uint64_t)q->avail >> 32));
	c_wr32(v, VCOMMON_Q_USEDLO, (uint32_t)(uint64_t)q->used);
	c_wr32(v, VCOMMON_Q_USEDHI, (uint32_t)((uint64_t)q->used >> 32));
	c_wr16(v, VCOMMON_Q_MSIX, msix_vector);
	if (c_rd16(v, VCOMMON_Q_MSIX) != msix_vector) {
		m->owner = NULL;
		return virtio_fail(v, "queue-msix-vector-rejected");
	}
	if (c_rd16(v, VCOMMON_Q_SIZE) != size) {
		m->owner = NULL;
		return virtio_fail(v, "queue-size-not-kept");
	}
	noff = c_rd16(v, VCOMMON_Q_NOFF);
	notify_off = (uint64_t)noff * v->notify_mult;
	if (notify_off + 2 > v->notify_len) {
		m->owner = NULL;
		return virtio_fail(v, "notify-outside-cap");
	}
	q->notify = (volatile uint16_t *)(v->notify_base + notify_off);
	c_wr16(v, VCOMMON_Q_ENABLE, 1);
	if (c_rd16(v, VCOMMON_Q_ENABLE) != 1) {
		m->owner = NULL;
		return virtio_fail(v, "queue-enable-not-kept");
	}
	vq_irq_enable(q, 1);
	v->vq[index] = q;
	return 0;
}

int virtio_driver_ok(struct virtio_dev *v)
{
	uint8_t s;

	virtio_set_status(v, virtio_status(v) | VIRTIO_S_DRIVER_OK);
	s = virtio_status(v);
	if (!(s & VIRTIO_S_DRIVER_OK) || (s & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED)))
		return virtio_fail(v, "driver-ok-not-kept");
	return 0;
}
