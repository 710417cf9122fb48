/* query-stats: CPU time per vCPU thread and for the process, resident memory, device counters. */
#include "vmm/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "vmm/virtio_pci.h"
#include "vmm/vm.h"

static int64_t clock_ns(clockid_t id)
{
	struct timespec t;
	if (clock_gettime(id, &t) < 0)
		return -1;
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* Resident set size from /proc/self/statm (pages); -1 if it cannot be read. */
static int64_t rss_bytes(void)
{
	unsigned long size, resident;
	FILE *f = fopen("/proc/self/statm", "re");
	if (!f)
		return -1;
	int n = fscanf(f, "%lu %lu", &size, &resident);
	fclose(f);
	return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : -1;
}

static json_t *vcpu_times(struct vm *vm)
{
	json_t *a = json_array();
	for (unsigned i = 0; a && i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		clockid_t cid;
		int64_t ns = -1;
		if (v->thread_started && pthread_getcpuclockid(v->thread, &cid) == 0)
			ns = clock_ns(cid);
		json_array_append_new(a, json_pack("{s:i, s:I}", "id", (int)v->id, "cpu_time_ns",
						   (json_int_t)(ns < 0 ? 0 : ns)));
	}
	return a;
}

json_t *vm_stats(struct vm *vm)
{
	json_t *disks = json_array(), *nics = json_array();
	for (unsigned i = 0; disks && nics && i < vm->nvirtio; i++) {
		struct virtio_pci *vp = vm->virtio[i];
		if (!vp || !vp->ops->stats || !vp->dev)
			continue;
		json_t *to = vp->ops->device_id == 2   ? disks
			     : vp->ops->device_id == 1 ? nics
						       : NULL;
		json_t *s = to ? vp->ops->stats(vp) : NULL;
		if (!s)
			continue;
		json_object_set_new(s, "device", json_string(vp->tag));
		json_array_append_new(to, s);
	}
	int64_t cpu = clock_ns(CLOCK_PROCESS_CPUTIME_ID);
	return json_pack("{s:I, s:o, s:I, s:o, s:o}", "cpu_time_ns",
			 (json_int_t)(cpu < 0 ? 0 : cpu), "vcpus", vcpu_times(vm), "rss_bytes",
			 (json_int_t)rss_bytes(), "disks", disks ? disks : json_null(), "nics",
			 nics ? nics : json_null());
}
