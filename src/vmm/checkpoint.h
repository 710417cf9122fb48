/* A VM's checkpoint tree in a directory: create, list, apply and delete checkpoints of the running
 * VM, merging disk layers while it runs (docs/checkpoints.md). */
#ifndef BERTH_CHECKPOINT_H
#define BERTH_CHECKPOINT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "vmm/vm.h"

#define CKPT_FORMAT "berth-checkpoints"
#define CKPT_VERSION 1
#define CKPT_NAME_MAX 64

struct ckpt_store;

/* How the store stops and restarts the vCPUs (the control socket's pause logic). */
struct ckpt_hooks {
	/* Stop every vCPU at a moment fit for saving state; -errno with a message. */
	int (*pause)(void *opaque, char *msg, size_t msglen);
	void (*resume)(void *opaque);
	/* Progress of a long disk merge (may be NULL); non-zero cancels it (the tree stays as it
	 * was before that merge step). */
	int (*progress)(void *opaque, const char *what, uint64_t done, uint64_t total);
	void *opaque;
};

/*
 * Open (or start) the tree in dir for the running VM: the directory is created if missing; an
 * existing tree must describe the VM's writable disks as they are now. -errno with a message.
 */
int ckpt_open(struct ckpt_store **out, const char *dir, struct vm *vm, char *msg, size_t msglen);
void ckpt_close(struct ckpt_store *s);

/* Is there a checkpoint with this id or name? */
bool ckpt_find(struct ckpt_store *s, const char *ref);
/* {"checkpoints": [{id, name, parent, created_ms, state, current, disks}...], "current": id|null,
 * "dir"}: disks names, per writable disk, the image that reads as the checkpoint's disk. */
json_t *ckpt_list(struct ckpt_store *s);
/* Take a checkpoint named name (NULL: a default name), with the VM's memory and device state
 * unless disk_only. *result: {id, name, paused_us}. */
int ckpt_create(struct ckpt_store *s, const struct ckpt_hooks *h, const char *name, bool disk_only,
		json_t **result, char *msg, size_t msglen);
/* Revert the running VM to checkpoint ref (id or name): its memory, devices and disks; what the
 * VM did since its last checkpoint is discarded. *result: {id, name, paused_us}. A failure after
 * the VM's state was touched returns -EIO: the VM must stop. fresh: no vCPU of this VM has run
 * yet (--start-paused, not restored), so a disk-only checkpoint applies too: only the disks
 * switch, and the VM boots on them. */
int ckpt_apply(struct ckpt_store *s, const struct ckpt_hooks *h, const char *ref, bool fresh,
	       json_t **result, char *msg, size_t msglen);
/* Delete checkpoint ref; its disk layers merge into the neighbouring layer while the VM runs.
 * *result: {id, name, merged_bytes, paused_us}. */
int ckpt_delete(struct ckpt_store *s, const struct ckpt_hooks *h, const char *ref, json_t **result,
		char *msg, size_t msglen);

#endif
