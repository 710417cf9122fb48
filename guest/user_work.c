/* user_work.c — ring-3 workloads (.user.text): SMP counter loop, memory patterns, spin. */
#include "guest.h"

static inline uint64_t u_rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* Count loop iterations until the TSC deadline; record when this CPU started and stopped. */
uint64_t u_count_loop(uint64_t arg)
{
	struct count_job *job = (struct count_job *)arg;
	uint64_t now = u_rdtsc(), count = 0;
	volatile uint64_t sink = 0;

	job->first_tsc = now;
	while (now < job->deadline) {
		for (int i = 0; i < 1000; i++)
			sink = sink + 1;
		count += 1000;
		now = u_rdtsc();
	}
	job->last_tsc = now;
	job->count = count;
	return 0;
}

uint64_t u_spin_until(uint64_t deadline)
{
	uint64_t n = 0;

	while (u_rdtsc() < deadline)
		n++;
	return n;
}

static inline uint64_t pattern(uint64_t addr, uint64_t seed)
{
	return (addr * 0x9e3779b97f4a7c15ULL) ^ seed;
}

static uint64_t mem_fail(struct mem_job *job, volatile uint64_t *p, uint64_t want)
{
	job->bad_addr = (uint64_t)p;
	job->bad_val = *p;
	job->bad_expect = want;
	return 1;
}

/* Three passes over every range: write pattern; verify and write its inverse; verify the inverse.
 */
uint64_t u_mem_job(uint64_t arg)
{
	struct mem_job *job = (struct mem_job *)arg;
	uint64_t seed = job->seed;

	job->tsc[0] = u_rdtsc();
	for (uint64_t i = 0; i < job->nranges; i++) {
		uint64_t *p = (uint64_t *)job->r[i].start, *e = (uint64_t *)job->r[i].end;

		for (; p < e; p++)
			*p = pattern((uint64_t)p, seed);
	}
	job->tsc[1] = u_rdtsc();
	for (uint64_t i = 0; i < job->nranges; i++) {
		uint64_t *p = (uint64_t *)job->r[i].start, *e = (uint64_t *)job->r[i].end;

		for (; p < e; p++) {
			uint64_t want = pattern((uint64_t)p, seed);

			if (*p != want)
				return mem_fail(job, p, want);
			*p = ~want;
		}
	}
	job->tsc[2] = u_rdtsc();
	for (uint64_t i = 0; i < job->nranges; i++) {
		uint64_t *p = (uint64_t *)job->r[i].start, *e = (uint64_t *)job->r[i].end;

		for (; p < e; p++) {
			uint64_t want = ~pattern((uint64_t)p, seed);

			if (*p != want)
				return mem_fail(job, p, want);
		}
	}
	job->tsc[3] = u_rdtsc();
	return 0;
}

/* `ticker`: print "berth-tick N" through the write system call, then spin (ring 3, no interrupts)
 * until a period has passed; forever. The next line is timed from the previous one, so a paused VM
 * resumes with N+1 rather than a burst of missed ticks. */
uint64_t u_ticker(uint64_t arg)
{
	const struct tick_job *job = (const struct tick_job *)arg;
	static const char prefix[] = "berth-tick ";
	char line[40];

	for (uint64_t n = 1;; n++) {
		uint64_t next = u_rdtsc() + job->period_tsc;
		char digits[24];
		uint32_t nd = 0, len = 0;

		for (uint64_t v = n; v || !nd; v /= 10)
			digits[nd++] = (char)('0' + v % 10);
		for (uint32_t i = 0; prefix[i]; i++)
			line[len++] = prefix[i];
		while (nd)
			line[len++] = digits[--nd];
		line[len++] = '\n';
		u_syscall(SYS_WRITE, (uint64_t)line, len);
		while (u_rdtsc() < next)
			;
	}
	return 0;
}
