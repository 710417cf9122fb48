/* Guest RAM (anonymous, THP) and the one checked accessor from guest-physical address to host
 * pointer. */
#ifndef BERTH_MEMORY_H
#define BERTH_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/layout.h"

struct mem_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t file_offset; /* offset from the start of RAM */
	uint8_t *host;
};

struct guest_mem {
	struct mem_layout layout;
	int fd; /* -1, or the file RAM is mapped from; low part first */
	uint8_t *base;
	struct mem_region regions[2];
	unsigned nregions;
	/* The VMM's own writes to RAM (device buffers, used rings) while a pre-copy runs: one bit
	 * per 4 KiB page of RAM (offset from base), set atomically from any thread. Allocated by
	 * the first guest_mem_track(true), freed with the memory (device threads may still hold
	 * it). */
	uint64_t *dirty;
	int tracking; /* guest_mem_mark_dirty records while set */
};

/* Map anonymous RAM for the layout. -errno. */
int guest_mem_init(struct guest_mem *m, const struct mem_layout *l);
/* Map RAM copy-on-write from a saved memory file (restore): pages load on first touch, the file
 * never changes. -errno; -EINVAL if its size is not the layout's. */
int guest_mem_init_file(struct guest_mem *m, const struct mem_layout *l, const char *path);
/* Replace all of RAM, in place, with a copy-on-write mapping of a saved memory file of the same
 * size (checkpoint apply; the vCPUs are stopped and no device touches RAM). -errno; on failure
 * RAM is unchanged. */
int guest_mem_replace_file(struct guest_mem *m, const char *path);
void guest_mem_destroy(struct guest_mem *m);

/*
 * The only way to turn a guest-physical range into a host pointer: returns NULL unless
 * [gpa, gpa+len) lies entirely inside one RAM region (overflow-checked). len 0 is treated as 1.
 */
void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy to/from guest memory through gpa_to_hva; -EFAULT if the range is not RAM. */
int guest_write(const struct guest_mem *m, uint64_t gpa, const void *src, size_t len);
int guest_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len);
int guest_zero(const struct guest_mem *m, uint64_t gpa, size_t len);

/* Start (clearing the bitmap) or stop recording the VMM's writes to guest RAM. -ENOMEM. */
int guest_mem_track(struct guest_mem *m, bool on);
/* The VMM wrote [hva, hva+len) of guest RAM (call after the write): record the pages while
 * tracking. Any thread; a full fence orders the write before the check of m->tracking. */
void guest_mem_mark_dirty(const struct guest_mem *m, const void *hva, size_t len);
/* Is a pre-copy recording the VMM's writes? Call after the writes (full fence first). */
static inline bool guest_mem_tracking(const struct guest_mem *m)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return __atomic_load_n(&m->tracking, __ATOMIC_ACQUIRE);
}
/* OR the recorded pages into bitmap (one bit per page of RAM) and clear them. */
void guest_mem_take_dirty(struct guest_mem *m, uint64_t *bitmap);

#endif
