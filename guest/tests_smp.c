/* tests_smp.c — `smp`: start all MADT CPUs, run a ring-3 counter loop on each at once. */
#include "guest.h"
#include "x86.h"

#define RUN_US 200000
#define MIN_COUNT 100000 /* iterations in 200 ms: far below native (~10^8), above a stalled vCPU   \
			  */

static struct count_job jobs[MAX_CPUS];

void test_smp(void)
{
	uint64_t start, max_first = 0, min_last = ~0ULL;

	if (smp_boot_aps() < 0) {
		kprintf("berth-test smp FAIL reason=\"%s\"\n", smp_error);
		return;
	}
	/* Everyone counts until the same deadline; the APs start as their wake-up IPI lands. */
	start = rdtsc();
	for (uint32_t c = 0; c < smp_ncpus; c++) {
		jobs[c].deadline = start + RUN_US * tsc_khz / 1000;
		jobs[c].count = jobs[c].first_tsc = jobs[c].last_tsc = 0;
	}
	for (uint32_t c = 1; c < smp_ncpus; c++)
		smp_post(c, u_count_loop, (uint64_t)&jobs[c]);
	user_run(u_count_loop, (uint64_t)&jobs[0]);
	for (uint32_t c = 1; c < smp_ncpus; c++) {
		if (smp_wait(c, 5000000) < 0) {
			kprintf("berth-test smp FAIL reason=\"work-timeout apic_id=%u\"\n",
				cpu_percpu(c)->apic_id);
			return;
		}
	}
	for (uint32_t c = 0; c < smp_ncpus; c++) {
		struct count_job *j = &jobs[c];

		kprintf("berth-info smp cpu=%u apic_id=%u count=%lu start_us=%lu end_us=%lu\n", c,
			cpu_percpu(c)->apic_id, j->count, (j->first_tsc - start) * 1000 / tsc_khz,
			(j->last_tsc - start) * 1000 / tsc_khz);
		if (j->count < MIN_COUNT) {
			kprintf("berth-test smp FAIL reason=\"no-progress apic_id=%u count=%lu\"\n",
				cpu_percpu(c)->apic_id, j->count);
			return;
		}
		if (j->first_tsc > max_first)
			max_first = j->first_tsc;
		if (j->last_tsc < min_last)
			min_last = j->last_tsc;
	}
	if (max_first >= min_last) {
		kprintf("berth-test smp FAIL reason=no-overlap\n");
		return;
	}
	kprintf("berth-test smp PASS cpus=%u overlap_us=%lu\n", smp_ncpus,
		(min_last - max_first) * 1000 / tsc_khz);
}
