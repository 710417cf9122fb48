/* PCI bus 0: host bridge, configuration mechanism #1 and ECAM, config-space emulation, BAR
 * placement and moves. */
#ifndef BERTH_PCI_H
#define BERTH_PCI_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"

#define PCI_CFG_SIZE 4096
#define PCI_MAX_SLOTS 32
#define PCI_NUM_BARS 6
#define PCI_INTX_GSI_BASE 16 /* INTA# of slot s is GSI 16 + s % 4 (the DSDT's _PRT says so) */

/* Config-space offsets and bits used by berth. */
#define PCI_VENDOR_ID 0x00
#define PCI_DEVICE_ID 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_CLASS_PROG 0x09
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SUBSYS_VENDOR 0x2c
#define PCI_SUBSYS_ID 0x2e
#define PCI_CAP_PTR 0x34
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_COMMAND_INTX_DISABLE 0x0400
#define PCI_STATUS_INTX 0x0008
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_CAP_ID_MSIX 0x11
#define PCI_CAP_ID_VNDR 0x09

struct pci_device;

struct pci_bar {
	uint64_t size; /* 0: unused; else a power of two >= 4 KiB */
	bool is64;
	bool prefetch;
	const struct bus_ops *ops;
	void *opaque;
	uint64_t mapped_at; /* current address on the MMIO bus, 0 if not mapped */
};

struct pci_device {
	struct pci_bus *bus;
	unsigned slot;
	char name[24];
	uint8_t cfg[PCI_CFG_SIZE];
	uint8_t wmask[PCI_CFG_SIZE]; /* writable bits */
	uint8_t w1c[PCI_CFG_SIZE];   /* write-one-to-clear bits */
	struct pci_bar bar[PCI_NUM_BARS];
	unsigned cap_next; /* where the next capability goes */
	unsigned cap_last; /* offset of the last capability's next pointer, 0 if none */
	/* Called after the guest wrote config space (with the bus lock held). */
	void (*cfg_written)(struct pci_device *d, unsigned off, unsigned size);
	/* Called before a config read, so a device can refresh the bytes (bus lock held). */
	void (*cfg_reading)(struct pci_device *d, unsigned off, unsigned size);
	/* Called when a BAR's mapping changed (old or new may be 0 = unmapped). */
	void (*bar_moved)(struct pci_device *d, unsigned bar, uint64_t old, uint64_t new);
	void *opaque;
};

struct pci_bus {
	pthread_mutex_t lock; /* config space of every device, and the CF8 latch */
	struct bus *mmio;
	uint32_t cf8;
	struct pci_device *slot[PCI_MAX_SLOTS];
	struct pci_device host_bridge;
	uint64_t mmio32_next, mmio32_end;
	uint64_t mmio64_next, mmio64_end;
};

/* Register CF8/CFC on pio and ECAM on mmio, and put the host bridge at 00:00.0. */
int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio64_base,
		 uint64_t mmio64_size);
void pci_bus_destroy(struct pci_bus *pb);

/* Fill the standard header of a type-0 function. class is 24 bits (base, sub, prog-if). */
void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id);
/* Declare a memory BAR (before pci_bus_add). size: power of two >= 4096. -EINVAL otherwise. */
int pci_set_bar(struct pci_device *d, unsigned idx, uint64_t size, bool is64, bool prefetch,
		const struct bus_ops *ops, void *opaque);
/* Add a capability of len bytes (id and next pointer filled in); returns its offset or -ENOSPC. */
int pci_add_cap(struct pci_device *d, uint8_t id, unsigned len);
/* Give the device a slot, place its BARs in the windows and map them (memory decoding on). */
int pci_bus_add(struct pci_bus *pb, struct pci_device *d);

/* Save/restore a device's config space; loading maps BARs as the saved config says and refuses
 * state whose read-only bytes (IDs, class, capabilities) differ from this device's. */
json_t *pci_device_save(struct pci_device *d);
int pci_device_load(struct pci_device *d, json_t *o, char *msg, size_t msglen);

/* Config access from the guest (also used by tests and fuzzers). Absent functions read all-ones. */
uint32_t pci_cfg_read(struct pci_bus *pb, unsigned bus, unsigned devfn, unsigned off,
		      unsigned size);
void pci_cfg_write(struct pci_bus *pb, unsigned bus, unsigned devfn, unsigned off, unsigned size,
		   uint32_t val);

/* Little-endian config-space helpers for device code. */
static inline void pci_put16(struct pci_device *d, unsigned off, uint16_t v)
{
	d->cfg[off] = (uint8_t)v;
	d->cfg[off + 1] = (uint8_t)(v >> 8);
}
static inline void pci_put32(struct pci_device *d, unsigned off, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		d->cfg[off + i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t pci_get16(const struct pci_device *d, unsigned off)
{
	return (uint16_t)(d->cfg[off] | d->cfg[off + 1] << 8);
}
static inline uint32_t pci_get32(const struct pci_device *d, unsigned off)
{
	return (uint32_t)d->cfg[off] | (uint32_t)d->cfg[off + 1] << 8 |
	       (uint32_t)d->cfg[off + 2] << 16 | (uint32_t)d->cfg[off + 3] << 24;
}

#endif
