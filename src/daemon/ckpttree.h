/* berthd's read-only view of a VM's checkpoint tree (berth-vmm's DIR/tree.json, see
 * checkpoints.md). */
#ifndef BERTH_DAEMON_CKPTTREE_H
#define BERTH_DAEMON_CKPTTREE_H

#include <jansson.h>
#include <stddef.h>

#define CKPT_NAME_MAX 64

/*
 * Load and check DIR/tree.json (format, version, node ids, parents, no cycles, layers as strings,
 * one chain per writable disk). *tree: a new reference. -ENOENT if there is none (a VM that never
 * ran with checkpoints), -EINVAL with a message naming the file and the defect, other -errno.
 */
int ckpt_tree_load(const char *dir, json_t **tree, char *err, size_t errlen);

/*
 * The checkpoints as berth-vmm's checkpoint-list gives them: {"checkpoints": [{id, name, parent,
 * created_ms, state, current, disks}], "current": id|null} (a new reference; hidden nodes left out,
 * parents skip them).
 */
json_t *ckpt_tree_list(const json_t *tree);

/* The number of writable disks the tree describes. */
size_t ckpt_tree_ndisks(const json_t *tree);
/* Writable disk k: the image the VM runs on now and its format ("raw" or "qcow2"), and the disk's
 * own file (the base of every chain). NULL if k is out of range. */
const char *ckpt_tree_current(const json_t *tree, size_t k, const char **format);
const char *ckpt_tree_base(const json_t *tree, size_t k);

/*
 * Point the writable disks of a berth-vmm configuration (vmmcfg_build) at the images the tree in
 * dir names as current, so a VM with checkpoints starts where it left off. 0 if there is no tree;
 * -EINVAL with a message if the tree is damaged or belongs to other disks.
 */
int ckpt_tree_apply_cfg(json_t *cfg, const char *dir, char *err, size_t errlen);

/*
 * A checkpoint-list result in the API's form: {"checkpoints": [{id, name, parent, created, kind,
 * current, disks}], "current"} (a new reference); list is berth-vmm's form (as above).
 */
json_t *ckpt_api_list(const json_t *list);
/* The entry of ref (id or name) in an API list, borrowed; NULL if none. */
json_t *ckpt_api_find(const json_t *api_list, const char *ref);

#endif
