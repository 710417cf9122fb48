/* Constructors of the virtio devices a VM can have. */
#ifndef BERTH_VIRTIO_DEVICES_H
#define BERTH_VIRTIO_DEVICES_H

#include "vmm/config.h"

struct vm;

int virtio_rng_create(struct vm *vm);
/* A virtio-blk disk with nqueues request queues (one per vCPU is usual). */
int virtio_blk_create(struct vm *vm, const struct disk_cfg *cfg, unsigned nqueues);
/* A virtio-net NIC on a TAP (opened, created on a bridge, or passed in). */
int virtio_net_create(struct vm *vm, const struct nic_cfg *cfg, const char *vmname, unsigned idx);
/* A multiport virtio-console with n named ports, each a unix socket server on the host. */
int virtio_console_create(struct vm *vm, const struct console_port_cfg *ports, unsigned n);

#endif
