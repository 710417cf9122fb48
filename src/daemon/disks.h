/* Managed disks: berthd's storage pool (a directory), the image files in it, and VM specs that
 * refer to them. */
#ifndef BERTH_DAEMON_DISKS_H
#define BERTH_DAEMON_DISKS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "daemon/vmspec.h"

struct db;
struct db_disk;
struct vmm_user;

#define DISK_SIZE_MAX (1ULL << 46) /* 64 TiB */

/* The pool: where images are created, and who owns them (the VMM user, if any). */
struct disk_pool {
	char dir[4096]; /* absolute, without a trailing '/' */
	bool chown;
	uid_t uid;
	gid_t gid;
};

/* Make the pool directory if missing (0700; 0711 when the VMMs run as u, so they can reach the
 * images but not list them). -errno with err set. */
int disks_pool_init(struct disk_pool *p, const char *dir, const struct vmm_user *u, char *err,
		    size_t errlen);
/* Whether path names a file directly inside the pool directory. */
bool disks_in_pool(const struct disk_pool *p, const char *path);

/* Create the image file of d (d->path, d->format, d->size; backing: the path and format of the
 * managed disk below it, or NULL). The file is 0600, the VMM user's. -errno with err set. */
int disks_create_image(const struct disk_pool *p, const struct db_disk *d, const char *backing_path,
		       const char *backing_fmt, char *err, size_t errlen);

/* Grow the image (format "raw" or "qcow2") to size bytes; the caller made sure nothing has it
 * open. Shrinking is -EINVAL. -errno with err set. */
int disks_resize_image(const char *path, const char *format, uint64_t size, char *err,
		       size_t errlen);

/* Whether the VM has checkpoints (disk layers in <state>/vms/<uuid>/checkpoints/layers). */
bool disks_vm_has_checkpoints(const char *state_dir, const char *run_dir, const char *vm_uuid);

/* After a VM's disks changed (the VM off, without checkpoints): berth-vmm's empty checkpoint
 * tree records the disks it was made for, so it goes (the VMM makes a new one at start). */
void disks_reset_empty_tree(const char *state_dir, const char *run_dir, const char *vm_uuid);

/*
 * Inside a transaction, for a normalized spec about to be stored: every disks[].disk names a
 * managed disk (its UUID is stored, path and format filled in from it); a plain path that is a
 * managed disk's image is bound to that disk the same way; no image twice. -EINVAL with err
 * naming the field; -EIO, -ENOMEM (code "internal").
 */
int disks_resolve(struct db *db, json_t *spec, struct spec_error *err);

#endif
