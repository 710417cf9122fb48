/* A saved state's memory file: written whole from a paused VM, or pre-copied while the guest runs
 * (KVM dirty log + the VMM's own writes) so that the pause only writes what changed since. */
#ifndef BERTH_VMSTATE_MEM_H
#define BERTH_VMSTATE_MEM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

/* Pre-copy stops iterating at this many rounds or this long after its first pass, whichever first
 * (the control socket waits meanwhile), or once what is left takes about PRECOPY_TARGET_US to
 * write (at the rate measured so far) or is at most PRECOPY_SMALL_BYTES. */
#define PRECOPY_MAX_ROUNDS 30
#define PRECOPY_MAX_MS 2000
#define PRECOPY_TARGET_US 10000
#define PRECOPY_SMALL_BYTES (2u << 20)

struct vmstate_mem_stats {
	bool precopy;	       /* the guest ran while most of RAM was written */
	unsigned rounds;       /* dirty-page rounds after the first pass */
	uint64_t live_bytes;   /* written while the guest ran */
	uint64_t live_ms;      /* how long that took */
	uint64_t paused_bytes; /* written while the guest was paused */
	uint64_t paused_us;    /* how long that took (with the file's fsync) */
};

struct vmstate_mem;

/*
 * Start a save's memory file DIR/memory (DIR is created here and must not exist). With live (the
 * vCPUs run), pre-copy: dirty logging on, every resident page written, then rounds of dirty pages
 * (bounded, see above); if KVM refuses dirty logging, everything is left for the pause. Sets
 * vm->precopy, which vmstate_save/vmstate_checkpoint then use for the memory. Main thread; -errno
 * with a message (nothing is left behind).
 */
int vmstate_mem_begin(struct vm *vm, const char *dir, bool live, struct vmstate_mem **out,
		      char *msg, size_t msglen);
/* Paused, devices quiesced: write what changed since (everything without pre-copy), fsync. */
int vmstate_mem_finish(struct vmstate_mem *s, const char *dir, char *msg, size_t msglen);
/* Dirty logging off, vm->precopy cleared, freed. Unless keep, DIR/memory and DIR are removed if
 * the memory file is incomplete (a failed save). Also on every error path after
 * vmstate_mem_begin. */
void vmstate_mem_end(struct vmstate_mem *s, bool keep);
const struct vmstate_mem_stats *vmstate_mem_stats(const struct vmstate_mem *s);
/* {"precopy": bool, "rounds": n, "live_bytes": n, "live_ms": n, "paused_bytes": n} */
json_t *vmstate_mem_report(const struct vmstate_mem *s);

/* All of a paused VM's RAM into a new sparse file at path (no pre-copy). -errno. */
int vmstate_mem_write(struct vm *vm, const char *path);

#endif
