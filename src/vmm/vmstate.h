/* Saved VM state (save to a directory, read and validate it, apply it to a freshly created VM). */
#ifndef BERTH_VMSTATE_H
#define BERTH_VMSTATE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/vm.h"

#define VMSTATE_FORMAT "berth-vm-state"
#define VMSTATE_VERSION 1

struct vmstate {
	json_t *doc;	 /* the whole state.json */
	json_t *machine; /* borrowed from doc: the checksummed part */
	uint64_t ram_bytes;
	char memory_path[4200];
};

/*
 * Save a paused VM (the caller holds a vm_pause_vcpus) into dir, which must not exist: devices
 * are quiesced, RAM is written sparse, config.json and state.json last. -errno with a message.
 */
int vmstate_save(struct vm *vm, const char *dir, char *msg, size_t msglen);
/*
 * A checkpoint of a paused VM: with dir, its state (as vmstate_save, the VM keeps running); then
 * every writable disk switches to a new qcow2 overlay (overlays: one path per writable disk, in
 * order), so the images used until now stay as they were at this moment. *disks lists
 * {"image": overlay, "backing": frozen image}. Devices are quiesced throughout.
 */
int vmstate_checkpoint(struct vm *vm, const char *dir, json_t *overlays, json_t **disks,
		       char *msg, size_t msglen);
/* The VM's k-th writable disk now uses path (its configuration says so, for later saves). */
void vmstate_set_disk_path(struct vm *vm, unsigned k, const char *path, enum blk_format fmt);
/* Write dir/name atomically (temporary file, fsync, rename). -errno. */
int vmstate_write_json(const char *dir, const char *name, json_t *o);
/* Read dir/state.json: format, version, checksum and the memory file's size are checked. */
int vmstate_read(const char *dir, struct vmstate **out, char *msg, size_t msglen);
void vmstate_free(struct vmstate *s);
/* After vm_create (RAM mapped from the memory file), instead of vm_load: irqchip, vCPUs, UARTs,
 * PM, devices, clock. */
int vmstate_apply(struct vm *vm, const struct vmstate *s, char *msg, size_t msglen);

#endif
