/* tests_mem.c — `mem`: ring-3 pattern write/verify of all RAM but the guest and low 1 MiB;
 * `memwalk`: a ring-3 writer that keeps dirtying RAM and detects stale pages (save/restore). */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define MAX_RANGES 256
#define LOW_LIMIT (1ULL << 20)
#define HIGH_LIMIT (64ULL << 30) /* what paging.c maps */

extern char __kernel_start[], __kernel_end[];

static struct mem_range ranges[MAX_RANGES];
static uint32_t nranges;
static struct mem_job jobs[MAX_CPUS];
static uint64_t result[MAX_CPUS];

static void add_range(uint64_t s, uint64_t e)
{
	if (e > s && nranges < MAX_RANGES)
		ranges[nranges++] = (struct mem_range){s, e};
}

/* Remove [s, e) from every range, splitting where needed. */
static void exclude(uint64_t s, uint64_t e)
{
	uint32_t n = nranges;

	for (uint32_t i = 0; i < n; i++) {
		struct mem_range r = ranges[i];

		if (e <= r.start || s >= r.end)
			continue;
		ranges[i].end = ranges[i].start; /* emptied; pieces re-added */
		add_range(r.start, s < r.start ? r.start : s);
		add_range(e > r.end ? r.end : e, r.end);
	}
}

static uint64_t build_ranges(void)
{
	uint64_t total = 0;
	uint32_t j = 0;

	nranges = 0;
	for (uint32_t i = 0; i < bootinfo.nmemmap; i++) {
		const struct memmap_entry *m = &bootinfo.memmap[i];
		uint64_t s = (m->addr + 4095) & ~4095ULL, e = (m->addr + m->size) & ~4095ULL;

		if (m->type != 1)
			continue;
		if (s < LOW_LIMIT)
			s = LOW_LIMIT;
		if (e > HIGH_LIMIT)
			e = HIGH_LIMIT;
		add_range(s, e);
	}
	exclude((uint64_t)__kernel_start & ~4095ULL, ((uint64_t)__kernel_end + 4095) & ~4095ULL);
	for (uint32_t i = 0; i < acpi.ntables; i++)
		exclude(acpi.tables[i].start, acpi.tables[i].end);
	for (uint32_t i = 0; i < nranges; i++) {
		if (ranges[i].end > ranges[i].start) {
			ranges[j++] = ranges[i];
			total += ranges[i].end - ranges[i].start;
		}
	}
	nranges = j;
	return total;
}

/* Give each CPU a contiguous, page-aligned share of the ranges. */
static int split(uint64_t total, uint32_t ncpus)
{
	uint64_t share = (total / ncpus + 4095) & ~4095ULL;
	uint32_t c = 0, i = 0;
	uint64_t pos, left = share;

	for (uint32_t k = 0; k < ncpus; k++)
		jobs[k] = (struct mem_job){.seed = 0xa5a5c3c35a5a3c3cULL ^ k};
	pos = nranges ? ranges[0].start : 0;
	while (i < nranges) {
		uint64_t end = ranges[i].end, take = end - pos;
		struct mem_job *job = &jobs[c];

		if (take > left && c + 1 < ncpus)
			take = left;
		if (job->nranges >= MEM_JOB_RANGES)
			return -1;
		job->r[job->nranges++] = (struct mem_range){pos, pos + take};
		pos += take;
		left -= take < left ? take : left;
		if (!left && c + 1 < ncpus) {
			c++;
			left = share;
		}
		if (pos >= end && ++i < nranges)
			pos = ranges[i].start;
	}
	return 0;
}

void test_mem(void)
{
	uint64_t total, above4g = 0, t0, ms;
	uint32_t ncpus;

	smp_boot_aps(); /* use whatever CPUs are available; `smp` reports bring-up problems */
	ncpus = smp_ncpus;
	total = build_ranges();
	if (!total) {
		kprintf("berth-test mem FAIL reason=no-testable-ram\n");
		return;
	}
	for (uint32_t i = 0; i < nranges; i++)
		if (ranges[i].end > (4ULL << 30))
			above4g += ranges[i].end - (ranges[i].start > (4ULL << 30) ? ranges[i].start
										   : (4ULL << 30));
	if (split(total, ncpus) < 0) {
		kprintf("berth-test mem FAIL reason=too-many-ranges\n");
		return;
	}
	t0 = rdtsc();
	for (uint32_t c = 1; c < ncpus; c++)
		smp_post(c, u_mem_job, (uint64_t)&jobs[c]);
	result[0] = user_run(u_mem_job, (uint64_t)&jobs[0]);
	for (uint32_t c = 1; c < ncpus; c++) {
		if (smp_wait(c, 60000000 + total / ncpus / 20) < 0) {
			kprintf("berth-test mem FAIL reason=\"timeout cpu=%u\"\n", c);
			return;
		}
		result[c] = cpu_percpu(c)->work_result;
	}
	ms = (rdtsc() - t0) / tsc_khz;
	for (uint32_t c = 0; c < ncpus; c++) {
		if (result[c]) {
			kprintf("berth-test mem FAIL reason=\"mismatch addr=0x%lx got=0x%lx "
				"want=0x%lx\"\n",
				jobs[c].bad_addr, jobs[c].bad_val, jobs[c].bad_expect);
			return;
		}
	}
	/* CPU 0's passes: the first includes the host's first-touch cost of every guest page. */
	kprintf("berth-test mem PASS bytes=%lu above4g=%lu ranges=%u cpus=%u ms=%lu "
		"pass_ms=%lu/%lu/%lu\n",
		total, above4g, nranges, ncpus, ms, (jobs[0].tsc[1] - jobs[0].tsc[0]) / tsc_khz,
		(jobs[0].tsc[2] - jobs[0].tsc[1]) / tsc_khz,
		(jobs[0].tsc[3] - jobs[0].tsc[2]) / tsc_khz);
}

static struct memwalk_job walk;

/* `memwalk mib=N sweeps=S`: N MiB (0: as much as fits) swept S times (0: forever). */
void test_memwalk(void)
{
	uint64_t mib = cmdline_u64("mib", 64), ram = 0;
	uint8_t *p = NULL;

	for (uint32_t i = 0; i < bootinfo.nmemmap; i++)
		if (bootinfo.memmap[i].type == 1)
			ram += bootinfo.memmap[i].size;
	if (!mib)
		for (mib = ram >> 20; mib && !(p = dma_alloc(mib << 20)); mib -= mib > 4 ? 4 : mib)
			;
	else
		p = dma_alloc(mib << 20);
	if (!p) {
		kprintf("berth-test memwalk FAIL reason=no-ram mib=%lu\n", mib);
		return;
	}
	walk = (struct memwalk_job){.base = (uint64_t)p,
				    .npages = (mib << 20) / 4096,
				    .sweeps = cmdline_u64("sweeps", 0),
				    .tsc_khz = tsc_khz};
	kprintf("berth-test memwalk READY mib=%lu base=0x%lx sweeps=%lu\n", mib, (uint64_t)p,
		walk.sweeps);
	if (user_run(u_memwalk, (uint64_t)&walk))
		kprintf("berth-test memwalk FAIL reason=stale-page sweep=%lu page=%lu word=%lu "
			"got=0x%lx want=0x%lx\n",
			walk.sweep, walk.bad_page, walk.bad_word, walk.bad_val, walk.bad_want);
	else
		kprintf("berth-test memwalk PASS mib=%lu sweeps=%lu\n", mib, walk.sweeps);
}
