/* pci.h — PCI enumeration (mechanism #1 and ECAM), config access, BARs, capabilities, MSI-X. */
#ifndef GUEST_PCI_H
#define GUEST_PCI_H

#include <stdint.h>

#define PCI_MAX_DEVS 64
#define PCI_MAX_BUS 32 /* buses scanned at most (bus 0 and bridges behind it) */

/* Configuration space registers */
#define PCI_VENDOR 0x00
#define PCI_DEVICE 0x02
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_REVISION 0x08
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_SECONDARY_BUS 0x19
#define PCI_SUBORDINATE_BUS 0x1a
#define PCI_CAP_PTR 0x34

#define PCI_CMD_IO 0x1
#define PCI_CMD_MEM 0x2
#define PCI_CMD_MASTER 0x4
#define PCI_STATUS_CAP_LIST 0x10

#define PCI_CAP_MSIX 0x11
#define PCI_CAP_VENDOR 0x09

/* Memory BARs left at 0 by firmware/VMM are assigned from berth's 32-bit window. */
#define PCI_ALLOC_BASE 0xc0000000ULL
#define PCI_ALLOC_END 0xe0000000ULL

struct pci_bar {
	uint64_t addr, size; /* size 0: BAR not implemented (or upper half of a 64-bit BAR) */
	uint8_t io, is64, prefetch, assigned; /* assigned: we placed it (it was 0) */
};

struct pci_dev {
	uint8_t bus, dev, fn, hdr_type;
	uint16_t vendor, device;
	uint32_t class; /* base << 16 | sub << 8 | prog-if */
	uint8_t revision, secondary;
	struct pci_bar bar[6];
	int map_error; /* a BAR could not be mapped */
};

extern struct pci_dev pci_devs[PCI_MAX_DEVS];
extern unsigned int pci_ndevs;
extern int pci_have_ecam;
extern char pci_error[96];

int pci_init(void); /* enumerate once; returns the number of functions or -1 (pci_error) */

/* Raw accessors by address, through one mechanism. */
uint32_t pci_cf8_read32(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off);
uint32_t pci_ecam_read32(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off);

/* Accessors used by drivers: ECAM when the MCFG names it, else mechanism #1. */
uint32_t pci_read32(const struct pci_dev *d, unsigned int off);
uint16_t pci_read16(const struct pci_dev *d, unsigned int off);
uint8_t pci_read8(const struct pci_dev *d, unsigned int off);
void pci_write32(const struct pci_dev *d, unsigned int off, uint32_t v);
void pci_write16(const struct pci_dev *d, unsigned int off, uint16_t v);

/* Offset of the first capability `id` after `after` (0: from the start), or 0. */
unsigned int pci_find_cap(const struct pci_dev *d, uint8_t id, unsigned int after);
struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned int nth);
void pci_enable(const struct pci_dev *d); /* memory space + bus master */

/* msix.c */
struct msix {
	const struct pci_dev *pci;
	unsigned int cap;
	unsigned int nvec;
	uint64_t table, pba; /* identity-mapped addresses */
};

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000

extern volatile uint32_t msix_irqs[VEC_MSIX_COUNT];
int msix_init(struct msix *m, const struct pci_dev *d);
void msix_control(const struct msix *m, int enable, int fmask);
void msix_route(const struct msix *m, unsigned int entry, unsigned int slot, uint32_t apic_id);
void msix_mask(const struct msix *m, unsigned int entry, int masked);
int msix_pending(const struct msix *m, unsigned int entry);
void msix_irq(unsigned int slot);

#endif
