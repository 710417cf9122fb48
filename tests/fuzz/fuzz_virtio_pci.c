/* libFuzzer target: a guest driving a virtio-pci device (virtio-rng) with arbitrary BAR,
 * config-space and RAM writes. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"
#include "vmm/vm.h"

/*
 * KVM is not available to a fuzzer: the VM's interrupt and doorbell plumbing is replaced by
 * these no-ops (doorbells still reach the device through the BAR's notify region).
 */
static int next_gsi;
int vm_alloc_gsi(struct vm *vm)
{
	(void)vm;
	return next_gsi++;
}
int vm_set_msi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	(void)vm, (void)gsi, (void)addr, (void)data;
	return 0;
}
int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign)
{
	(void)vm, (void)efd, (void)gsi, (void)assign;
	return 0;
}
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool assign)
{
	(void)vm, (void)efd, (void)addr, (void)len, (void)assign;
	return -1; /* as if KVM had none: every doorbell exits to the device model */
}
void vm_set_irq(void *opaque, unsigned gsi, int level)
{
	(void)opaque, (void)gsi, (void)level;
}

#define RAM_SIZE (1u << 20)
#define MAX_OPS 256

/*
 * Input: 12-byte operations
 *   byte 0: bits 0-1 op (0 BAR read, 1 BAR write, 2 config write, 3 RAM write), bits 2-3 size 1<<n
 *   bytes 1-3: offset (BAR: & 0x7fff; config: & 0xfff; RAM: & (RAM_SIZE - 8))
 *   bytes 4-11: value
 */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *ram;
	static struct kvm_host host = {.fd = -1};
	if (!ram)
		ram = aligned_alloc(4096, RAM_SIZE);
	log_set_level(LOG_ERROR + 0);
	memset(ram, 0, RAM_SIZE);
	next_gsi = 24;

	struct vm *vm = calloc(1, sizeof(*vm));
	vm->host = &host;
	vm->fd = -1;
	vm->mem.layout.ram_bytes = vm->mem.layout.low_ram = RAM_SIZE;
	vm->mem.regions[0] = (struct mem_region){0, RAM_SIZE, 0, ram};
	vm->mem.nregions = 1;
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	if (pci_bus_init(&vm->pci, &vm->pio, &vm->mmio, 1ULL << 32, 1ULL << 30) ||
	    virtio_rng_create(vm))
		abort();
	struct virtio_pci *vp = vm->virtio[0];

	for (size_t i = 0; i + 12 <= size && i / 12 < MAX_OPS; i += 12) {
		const uint8_t *op = data + i;
		unsigned kind = op[0] & 3, sz = 1u << ((op[0] >> 2) & 3);
		uint32_t off = (uint32_t)op[1] | (uint32_t)op[2] << 8 | (uint32_t)op[3] << 16;
		uint64_t val;
		memcpy(&val, op + 4, 8);
		switch (kind) {
		case 0:
			virtio_pci_bar_read(vp, off & 0x7fff, sz);
			break;
		case 1:
			virtio_pci_bar_write(vp, off & 0x7fff, sz, val);
			break;
		case 2:
			pci_cfg_write(&vm->pci, 0, vp->pci.slot << 3, off & 0xfff, sz > 4 ? 4 : sz,
				      (uint32_t)val);
			break;
		case 3:
			memcpy(ram + (off & (RAM_SIZE - 8)), &val, 8);
			break;
		}
		/* Invariants of the transport. */
		pthread_mutex_lock(&vp->lock);
		if ((vp->status & VIRTIO_STATUS_FEATURES_OK) &&
		    (!(vp->guest_features >> VIRTIO_F_VERSION_1 & 1) ||
		     (vp->guest_features & ~vp->host_features)))
			abort();
		for (unsigned q = 0; q < vp->ops->num_queues; q++) {
			struct virtqueue *vq = &vp->q[q].vq;
			if (vp->q[q].ready &&
			    ((uint8_t *)vq->desc < ram ||
			     (uint8_t *)vq->desc + 16u * vq->size > ram + RAM_SIZE ||
			     vq->used + 6 + 8u * vq->size > ram + RAM_SIZE))
				abort();
		}
		pthread_mutex_unlock(&vp->lock);
	}
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_destroy(vm->virtio[i]);
	pci_bus_destroy(&vm->pci);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	free(vm);
	return 0;
}
