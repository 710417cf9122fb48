/* Constructors of the virtio devices a VM can have. */
#ifndef BERTH_VIRTIO_DEVICES_H
#define BERTH_VIRTIO_DEVICES_H

#include "vmm/config.h"

struct vm;

int virtio_rng_create(struct vm *vm);
/* A virtio-blk disk with nqueues request queues (one per vCPU is usual). */
int virtio_blk_create(struct vm *vm, const struct disk_cfg *cfg, unsigned nqueues);
/* Checkpoints: is vp a virtio-blk disk, a writable one; switch it (quiesced) to a new qcow2
 * overlay at path whose backing file is the image it used so far. */
struct virtio_pci;
bool virtio_blk_is(const struct virtio_pci *vp);
bool virtio_blk_writable(const struct virtio_pci *vp);
int virtio_blk_push_overlay(struct virtio_pci *vp, const char *path, char *msg, size_t msglen);
/* The disk's image chain (top first), for reading its paths; valid until the next switch. */
const struct blk *virtio_blk_disk(const struct virtio_pci *vp);
/*
 * Reopen the disk at path (format fmt, its backing chain below it), calling between() after
 * the old image is closed and before the new one opens — the moment to rewrite headers of images
 * the device had open. The caller quiesced the device. On failure the old image is reopened.
 */
int virtio_blk_switch(struct virtio_pci *vp, const char *path, enum blk_format fmt,
		      int (*between)(void *arg, char *msg, size_t msglen), void *arg, char *msg,
		      size_t msglen);
/* A virtio-net NIC on a TAP (opened, created on a bridge, or passed in). */
int virtio_net_create(struct vm *vm, const struct nic_cfg *cfg, const char *vmname, unsigned idx);
/* A multiport virtio-console with n named ports, each a unix socket server on the host. */
int virtio_console_create(struct vm *vm, const struct console_port_cfg *ports, unsigned n);

#endif
