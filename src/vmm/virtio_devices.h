/* Constructors of the virtio devices a VM can have. */
#ifndef BERTH_VIRTIO_DEVICES_H
#define BERTH_VIRTIO_DEVICES_H

struct vm;

int virtio_rng_create(struct vm *vm);

#endif
