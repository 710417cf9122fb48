/* virtio.h — virtio 1.2 modern PCI transport and split virtqueues (rings shared with ring 3). */
#ifndef GUEST_VIRTIO_H
#define GUEST_VIRTIO_H

#include <stdint.h>

#include "pci.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_PCI_MODERN_BASE 0x1040 /* device id = 0x1040 + virtio device type */
#define VIRTIO_TYPE_NET 1
#define VIRTIO_TYPE_BLK 2
#define VIRTIO_TYPE_CONSOLE 3
#define VIRTIO_TYPE_RNG 4

/* device_status */
#define VIRTIO_S_ACKNOWLEDGE 1
#define VIRTIO_S_DRIVER 2
#define VIRTIO_S_DRIVER_OK 4
#define VIRTIO_S_FEATURES_OK 8
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED 0x80

/* feature bits */
#define VIRTIO_F_INDIRECT_DESC (1ULL << 28)
#define VIRTIO_F_EVENT_IDX (1ULL << 29)
#define VIRTIO_F_VERSION_1 (1ULL << 32)

#define VIRTIO_NO_VECTOR 0xffff

/* split ring layout (virtio 1.2 section 2.7) */
#define VRING_DESC_F_NEXT 1
#define VRING_DESC_F_WRITE 2
#define VRING_DESC_F_INDIRECT 4
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vring_avail {
	uint16_t flags, idx;
	uint16_t ring[]; /* size entries, then used_event */
};

struct vring_used_elem {
	uint32_t id, len;
};

struct vring_used {
	uint16_t flags, idx;
	struct vring_used_elem ring[]; /* size entries, then avail_event */
};

#define VQ_MAX_SIZE 256
#define VQ_INDIRECT_MAX 16 /* descriptors per indirect table */
#define VQ_SLOTS 8	   /* virtqueues that can exist at once (all devices) */

/* One split virtqueue. Lives in identity-mapped, user-accessible RAM: ring-3 code adds buffers,
 * notifies (the notify BAR is user-mapped) and polls the used ring without entering the kernel. */
struct virtq {
	uint16_t index, size;
	uint16_t free_head, num_free;
	uint16_t avail_idx;	     /* our copy of avail->idx */
	uint16_t last_used;	     /* next used->ring entry to consume */
	uint16_t kicked_idx;	     /* avail_idx when the device was last told (event-idx test) */
	uint8_t event_idx, indirect; /* negotiated ring features */
	uint8_t irq_on;		     /* keep used_event current (event idx) */
	struct vring_desc *desc;
	struct vring_avail *avail;
	struct vring_used *used;
	struct vring_desc (*itab)[VQ_INDIRECT_MAX]; /* one indirect table per head */
	volatile uint16_t *notify;
	uint64_t token[VQ_MAX_SIZE];
	uint8_t head_state[VQ_MAX_SIZE]; /* VQ_HEAD_FREE / _DIRECT / _INDIRECT */
	uint64_t kicks, kicks_suppressed, completions;
};

#define VQ_HEAD_FREE 0
#define VQ_HEAD_DIRECT 1
#define VQ_HEAD_INDIRECT 2

/* One buffer of a request: `write` = device-writable. */
struct vq_buf {
	uint64_t addr;
	uint32_t len;
	uint32_t write;
};

/* user_virtq.c: the data path, callable from ring 3 (and ring 0: built with the kernel's flags).
 * vq_add returns the head index, or -1 if the queue has no room (or the request is malformed). */
int vq_add(struct virtq *vq, const struct vq_buf *bufs, unsigned int n, int use_indirect,
	   uint64_t token);
int vq_kick(struct virtq *vq); /* publish avail->idx; notify unless suppressed; 1 if notified */
int vq_get(struct virtq *vq, uint32_t *len, uint64_t *token); /* 1 if a used entry was consumed */
void vq_irq_enable(struct virtq *vq, int on); /* request (or not) an interrupt on the next use */
uint64_t vq_rdtsc(void);

/* user_virtio.c: ring-3 workloads */
struct irq_job {
	struct virtq *vq;
	volatile uint32_t *counter; /* MSI-X delivery count to watch */
	uint32_t before;
	uint64_t deadline, token, spins;
	uint8_t buf[16];
};
uint64_t u_irq_wait(uint64_t job); /* post one rng request, spin until *counter moves: 0 = seen */

#define RNG_SLOTS 16
#define RNG_SLOT_SIZE 8192 /* a request's buffer (<= 4096) and a canary after it */
#define RNG_CANARY 0xa5
struct rng_job {
	struct virtq *vq;
	uint64_t want_bytes, deadline;
	uint32_t indirect, depth;
	uint8_t *buf; /* RNG_SLOTS * RNG_SLOT_SIZE */
	/* results */
	uint64_t bytes, requests, ones, short_reads;
	uint64_t by_size[4]; /* requests completed per size class */
	uint32_t first, differ;
	uint32_t fail; /* 0 or a RNG_FAIL_* code */
	uint64_t fail_len, fail_cap, fail_token;
};
#define RNG_FAIL_TIMEOUT 1
#define RNG_FAIL_LEN 2
#define RNG_FAIL_TOKEN 3
#define RNG_FAIL_CANARY 4
#define RNG_FAIL_RING 5
#define RNG_FAIL_ADD 6
uint64_t u_rng_job(uint64_t job);

/* virtio.c: transport, device setup (ring 0) */
#define VIRTIO_MAX_QUEUES 68 /* queue indices we can address (virtio-console: 32 ports) */

struct virtio_dev {
	struct pci_dev *pci;
	uint64_t common, isr, devcfg, notify_base;
	uint32_t notify_mult, notify_len, devcfg_len;
	uint64_t offered, features;
	uint16_t num_queues;
	struct virtq *vq[VIRTIO_MAX_QUEUES];
	char error[96];
};

int virtio_find(struct virtio_dev *v, unsigned int type, unsigned int nth);
int virtio_open(struct virtio_dev *v, struct pci_dev *p);
int virtio_reset(struct virtio_dev *v);
uint8_t virtio_status(const struct virtio_dev *v);
void virtio_set_status(const struct virtio_dev *v, uint8_t s);
uint64_t virtio_read_features(const struct virtio_dev *v);
int virtio_negotiate(struct virtio_dev *v, uint64_t want, uint64_t required);
int virtio_setup_queue(struct virtio_dev *v, unsigned int index, unsigned int size,
		       uint16_t msix_vector);
int virtio_driver_ok(struct virtio_dev *v);
int virtio_fail(struct virtio_dev *v, const char *what);
void virtio_set_config_vector(const struct virtio_dev *v, uint16_t vec, uint16_t *readback);
uint16_t virtio_queue_read16(const struct virtio_dev *v, unsigned int q, unsigned int off);

/* virtio_blk.c: DMA memory for buffers (RAM above the kernel, user-accessible, not cleared) */
void *dma_alloc(uint64_t size);
void dma_reset(void);

/* common configuration structure offsets */
#define VCOMMON_DFSELECT 0
#define VCOMMON_DF 4
#define VCOMMON_GFSELECT 8
#define VCOMMON_GF 12
#define VCOMMON_MSIX 16
#define VCOMMON_NUMQ 18
#define VCOMMON_STATUS 20
#define VCOMMON_CFGGEN 21
#define VCOMMON_Q_SELECT 22
#define VCOMMON_Q_SIZE 24
#define VCOMMON_Q_MSIX 26
#define VCOMMON_Q_ENABLE 28
#define VCOMMON_Q_NOFF 30
#define VCOMMON_Q_DESCLO 32
#define VCOMMON_Q_DESCHI 36
#define VCOMMON_Q_AVAILLO 40
#define VCOMMON_Q_AVAILHI 44
#define VCOMMON_Q_USEDLO 48
#define VCOMMON_Q_USEDHI 52

#endif
