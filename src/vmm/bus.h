/* The PIO and MMIO buses: devices register address ranges; vCPU exits dispatch through them. */
#ifndef BERTH_BUS_H
#define BERTH_BUS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* Accesses are 1, 2, 4 or 8 bytes; data is little-endian in the low bytes of *val. */
struct bus_ops {
	uint64_t (*read)(void *opaque, uint64_t offset, unsigned size);
	void (*write)(void *opaque, uint64_t offset, unsigned size, uint64_t val);
};

struct bus_range {
	uint64_t base;
	uint64_t len;
	const struct bus_ops *ops;
	void *opaque;
	const char *name;
};

struct bus {
	const char *name;	  /* "pio" or "mmio" */
	pthread_rwlock_t lock;	  /* ranges change at run time (PCI BARs move) */
	struct bus_range *ranges; /* sorted by base, non-overlapping */
	unsigned count, cap;
	uint64_t unhandled; /* accesses that hit nothing */
};

void bus_init(struct bus *b, const char *name);
void bus_destroy(struct bus *b);
/* -EEXIST if the range overlaps one already registered, -EINVAL if empty or wrapping, -ENOMEM. */
int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name);
/* Remove the range registered at exactly base with this opaque; -ENOENT if there is none. */
int bus_unregister(struct bus *b, uint64_t base, void *opaque);
/* Copy of the range containing addr; false if none. */
bool bus_find(struct bus *b, uint64_t addr, struct bus_range *out);

/*
 * Dispatch one access (the device is called without the bus lock held, so it may (un)register
 * ranges itself). Reads of unclaimed addresses return all-ones (like a master abort);
 * writes to them are dropped. Returns true if a device claimed the address.
 */
bool bus_access(struct bus *b, uint64_t addr, unsigned size, bool is_write, uint64_t *val);

#endif
