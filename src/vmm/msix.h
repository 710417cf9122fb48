/* MSI-X for PCI devices: capability, table and PBA in a BAR, delivered through KVM GSI routes and
 * irqfds. */
#ifndef BERTH_MSIX_H
#define BERTH_MSIX_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/pci.h"

#define MSIX_MAX_VECTORS 64
#define MSIX_NO_VECTOR 0xffff

struct vm;

struct msix {
	struct pci_device *pci;
	struct vm *vm;
	unsigned nvec;
	unsigned cap; /* config-space offset of the capability */
	pthread_mutex_t lock;
	bool enabled, fmask;
	uint8_t table[MSIX_MAX_VECTORS * 16];
	uint64_t pba;
	unsigned gsi[MSIX_MAX_VECTORS];
	int efd[MSIX_MAX_VECTORS]; /* irqfd: a write injects the vector's MSI */
	uint64_t routed_addr[MSIX_MAX_VECTORS];
	uint32_t routed_data[MSIX_MAX_VECTORS];
	bool routed[MSIX_MAX_VECTORS];
};

/* Add the capability (table at table_off, PBA at pba_off in BAR bar) and an irqfd per vector. */
int msix_init(struct msix *m, struct pci_device *pci, struct vm *vm, unsigned nvec, unsigned bar,
	      uint32_t table_off, uint32_t pba_off);
void msix_destroy(struct msix *m);

/* Save/restore the table, pending bits and enable/mask state; loading re-routes every vector. */
json_t *msix_save(struct msix *m);
int msix_load(struct msix *m, json_t *o, char *msg, size_t msglen);

/* BAR accesses to the table and the PBA (offsets relative to each). */
uint64_t msix_table_read(struct msix *m, uint64_t off, unsigned size);
void msix_table_write(struct msix *m, uint64_t off, unsigned size, uint64_t val);
uint64_t msix_pba_read(struct msix *m, uint64_t off, unsigned size);
/* The guest wrote config space at [off, off+size) (bus lock held): track enable/function mask. */
void msix_cfg_written(struct msix *m, unsigned off, unsigned size);

/*
 * Signal vector vec from any thread. Returns false if MSI-X is disabled (the caller falls back
 * to INTx). A masked vector becomes pending and fires when unmasked.
 */
bool msix_notify(struct msix *m, unsigned vec);
bool msix_enabled(struct msix *m);

#endif
