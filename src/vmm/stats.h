/* The VM's counters for the control socket's query-stats: vCPU and process CPU time, RSS, and
 * each device's own counters. */
#ifndef BERTH_STATS_H
#define BERTH_STATS_H

#include <jansson.h>

struct vm;

/* {"cpu_time_ns", "vcpus": [{"id", "cpu_time_ns"}], "rss_bytes", "disks": [...], "nics": [...]};
 * NULL if out of memory. Main thread (devices are not created or destroyed meanwhile). */
json_t *vm_stats(struct vm *vm);

#endif
