/* virtio-rng (entropy device, virtio 1.2 5.4): fills the driver's buffers from getrandom(). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "common/log.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"

#define RNG_QUEUE_SIZE 256
#define RNG_MAX_PER_REQUEST (64 * 1024) /* bound the work one request can ask for */

struct virtio_rng {
	struct vq_elem elem;
};

static void fill(struct iovec *iov, unsigned n, size_t *total)
{
	for (unsigned i = 0; i < n && *total < RNG_MAX_PER_REQUEST; i++) {
		size_t want = iov[i].iov_len;
		if (want > RNG_MAX_PER_REQUEST - *total)
			want = RNG_MAX_PER_REQUEST - *total;
		size_t got = 0;
		while (got < want) {
			ssize_t r = getrandom((uint8_t *)iov[i].iov_base + got, want - got, 0);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				return;
			}
			got += (size_t)r;
		}
		*total += got;
	}
}

static int64_t rng_fill(struct virtio_pci *vp, struct vq_elem *e, void *arg)
{
	size_t total = 0;
	(void)vp, (void)arg;
	fill(e->in, e->in_num, &total);
	return (int64_t)total;
}

static void rng_notify(struct virtio_pci *vp, unsigned qi)
{
	struct virtio_rng *rng = vp->dev;
	virtio_serve(vp, qi, &rng->elem, rng_fill, NULL);
}

static void rng_destroy(struct virtio_pci *vp)
{
	free(vp->dev);
	vp->dev = NULL;
}

static const struct virtio_device_ops rng_ops = {
    .name = "virtio-rng",
    .device_id = 4,
    .pci_class = 0x00ff00,
    .num_queues = 1,
    .queue_max = RNG_QUEUE_SIZE,
    .features = 0,
    .config_size = 0,
    .queue_notify = rng_notify,
    .destroy = rng_destroy,
};

int virtio_rng_create(struct vm *vm)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	struct virtio_pci *vp;
	if (!rng)
		return -ENOMEM;
	int r = virtio_pci_create(vm, &rng_ops, rng, &vp);
	if (r)
		free(rng); /* a failed create leaves the device state to the caller */
	return r;
}
