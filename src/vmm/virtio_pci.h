/* virtio 1.2 modern PCI transport (4.1): capabilities, common config, ISR, notify via ioeventfd,
 * MSI-X; one I/O thread per device. */
#ifndef BERTH_VIRTIO_PCI_H
#define BERTH_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/msix.h"
#include "vmm/pci.h"
#include "vmm/virtqueue.h"

#define VIRTIO_MAX_QUEUES 64
#define VIRTIO_MAX_AUX 40 /* extra fds a device's I/O thread watches */

/* Feature bits the transport handles. */
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

/* Device status bits. */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* BAR 0 layout. */
#define VIRTIO_BAR_SIZE 0x8000
#define VIRTIO_COMMON_OFF 0x0000
#define VIRTIO_ISR_OFF 0x1000
#define VIRTIO_DEVCFG_OFF 0x2000
#define VIRTIO_NOTIFY_OFF 0x3000
#define VIRTIO_NOTIFY_MULT 4
#define VIRTIO_MSIX_TABLE_OFF 0x4000
#define VIRTIO_MSIX_PBA_OFF 0x5000

struct virtio_pci;
struct vm;

/* What a device (virtio_rng.c, virtio_blk.c, ...) provides. */
struct virtio_device_ops {
	const char *name;   /* "virtio-rng" */
	uint16_t device_id; /* virtio device ID: 4 = entropy */
	uint32_t pci_class; /* e.g. 0x00ff00 */
	uint16_t num_queues;
	uint16_t queue_max;
	uint64_t features; /* device-specific features offered */
	uint32_t config_size;
	void (*config_read)(struct virtio_pci *vp, uint32_t off, uint8_t *buf, uint32_t len);
	void (*config_write)(struct virtio_pci *vp, uint32_t off, const uint8_t *buf, uint32_t len);
	/* DRIVER_OK was set: start serving. Non-zero: the device goes to NEEDS_RESET. */
	int (*activate)(struct virtio_pci *vp);
	/* The driver reset the device: forget everything (no queue is processed meanwhile). */
	void (*reset)(struct virtio_pci *vp);
	/* The driver kicked queue q (called on the I/O thread with vp->lock held). */
	void (*queue_notify)(struct virtio_pci *vp, unsigned q);
	void (*destroy)(struct virtio_pci *vp);
	bool owns_ops; /* this table was allocated for one device: free it with the device */
	/*
	 * Adaptive polling: after handling events, the I/O thread keeps checking the queues (and
	 * poll(), e.g. for completions) for up to poll_us before sleeping — this saves a doorbell
	 * exit and a wake-up per request under load. 0 = never poll.
	 */
	unsigned poll_us;
	unsigned settle_ns; /* when polling finds requests, wait this long for more (batching) */
	bool (*poll)(struct virtio_pci *vp); /* lock held; true if it found work */
	/* Save/restore (all optional, lock held for quiesce): finish in-flight work that writes
	 * guest memory; device-specific state to JSON and back (before DRIVER_OK is set again). */
	void (*quiesce)(struct virtio_pci *vp);
	json_t *(*save)(struct virtio_pci *vp);
	int (*load)(struct virtio_pci *vp, json_t *state, char *msg, size_t msglen);
	/* Counters for the control socket's query-stats (optional): a JSON object built from
	 * atomics the I/O thread updates, so any thread may call it while the device lives. */
	json_t *(*stats)(struct virtio_pci *vp);
};

struct virtio_queue_state {
	uint16_t size, vector, enabled;
	uint64_t desc, driver, device;
	int kick_fd;
	bool ready; /* enabled with valid rings */
	struct virtqueue vq;
};

struct virtio_pci {
	struct pci_device pci;
	struct msix msix;
	struct vm *vm;
	const struct virtio_device_ops *ops;
	void *dev; /* the device's own state */
	char tag[24];

	pthread_mutex_t lock; /* transport state; held while a queue is processed */
	uint32_t dfselect, gfselect;
	uint64_t host_features, guest_features;
	uint8_t status, config_gen, isr;
	uint16_t config_vector, queue_sel;
	bool broken; /* NEEDS_RESET: no queue is processed until reset */
	bool intx_level;
	unsigned intx_gsi; /* INTA# of the slot: PCI_INTX_GSI_BASE + slot % 4 */
	uint64_t poll_ns;  /* current adaptive polling window */
	struct virtio_queue_state q[VIRTIO_MAX_QUEUES];
	uint64_t notify_base; /* where the doorbells' ioeventfds are registered, 0 if not */
	unsigned ioeventfd_len;
	unsigned pcicfg_cap; /* offset of the VIRTIO_PCI_CAP_PCI_CFG capability */
	bool dev_ops_owned;  /* created: an owns_ops table is freed with the device */

	pthread_t thread;
	bool thread_started;
	int epfd, stopfd;
	/* Extra fds the device watches on its I/O thread (e.g. io_uring completions). */
	struct {
		int fd;					      /* -1: free slot */
		void (*cb)(struct virtio_pci *vp, void *arg); /* called with vp->lock held */
		void *arg;
	} aux[VIRTIO_MAX_AUX];
};

/* Create the PCI function, its MSI-X vectors and I/O thread, and put it on the VM's PCI bus. */
int virtio_pci_create(struct vm *vm, const struct virtio_device_ops *ops, void *dev,
		      struct virtio_pci **out);
void virtio_pci_destroy(struct virtio_pci *vp);

/* For devices: negotiated features, interrupts, and the error path for malformed guest input. */
static inline bool virtio_has(const struct virtio_pci *vp, unsigned bit)
{
	return vp->guest_features >> bit & 1;
}
/* Interrupt the driver about queue q if the ring's suppression settings ask for it. */
void virtio_queue_interrupt(struct virtio_pci *vp, unsigned q);
/*
 * Take the next chain of queue q: 1 = got one, 0 = none; a malformed chain puts the device in
 * NEEDS_RESET and returns -1.
 */
int virtio_pop(struct virtio_pci *vp, unsigned q, struct vq_elem *e);
/*
 * Serve every available chain of queue q: fn handles one and returns how many bytes it wrote into
 * the chain's writable buffers (the used length), or -1 to give the chain back and stop. Doorbells
 * are suppressed meanwhile; the driver is interrupted once at the end if the ring asks for it.
 * Returns false if the device went to NEEDS_RESET.
 */
bool virtio_serve(struct virtio_pci *vp, unsigned q, struct vq_elem *e,
		  int64_t (*fn)(struct virtio_pci *vp, struct vq_elem *e, void *arg), void *arg);
/* Put the device in NEEDS_RESET with one log line (lock held). The VM keeps running. */
void virtio_needs_reset(struct virtio_pci *vp, const char *why);
/* The device changed its configuration space: bump the generation and interrupt. */
void virtio_config_changed(struct virtio_pci *vp);

/* Watch fd on the device's I/O thread; cb runs there with vp->lock held. */
int virtio_pci_watch(struct virtio_pci *vp, int fd, void (*cb)(struct virtio_pci *vp, void *arg),
		     void *arg);
/* Stop watching fd (call with vp->lock held, e.g. from a callback). */
void virtio_pci_unwatch(struct virtio_pci *vp, int fd);

/* Save/restore. quiesce takes the device lock (the I/O thread stops) and finishes in-flight
 * work; unquiesce releases it. load runs before the vCPUs and brings the device back live. */
void virtio_pci_quiesce(struct virtio_pci *vp);
void virtio_pci_unquiesce(struct virtio_pci *vp);
/* Finish what is in flight and reset the device as if its driver wrote status 0, without
 * telling the guest (before virtio_pci_load replaces its state: checkpoint apply). */
void virtio_pci_reset_quiet(struct virtio_pci *vp);
json_t *virtio_pci_save(struct virtio_pci *vp);
int virtio_pci_load(struct virtio_pci *vp, json_t *o, char *msg, size_t msglen);

/* Register access on BAR 0 (exposed for tests and fuzzing). */
uint64_t virtio_pci_bar_read(void *opaque, uint64_t off, unsigned size);
void virtio_pci_bar_write(void *opaque, uint64_t off, unsigned size, uint64_t val);

#endif
