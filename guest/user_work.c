/* user_work.c — ring-3 workloads (.user.text): SMP counter loop, memory patterns, spin, ticker,
 * memwalk. */
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

/* Append the decimal digits of v to line at *len. */
static void u_put_u64(char *line, uint32_t *len, uint64_t v)
{
	char digits[24];
	uint32_t nd = 0;

	for (; v || !nd; v /= 10)
		digits[nd++] = (char)('0' + v % 10);
	while (nd)
		line[(*len)++] = digits[--nd];
}

static void u_put_str(char *line, uint32_t *len, const char *s)
{
	while (*s)
		line[(*len)++] = *s++;
}

/* Word k of page i written by sweep g (words 0 and 1 hold g and i). */
static inline uint64_t walk_word(uint64_t g, uint64_t i, uint64_t k)
{
	return (g * 0x9e3779b97f4a7c15ULL) ^ (i * 0xc2b2ae3d27d4eb4fULL) ^ (k * 0x100000001b3ULL);
}

/* `memwalk`: sweep after sweep over every page, first checking that the page holds what the
 * previous sweep wrote there (sweep g-1, its own index, the pattern), then writing sweep g's
 * contents. At any moment pages before the sweep position hold g and the others g-1, so a page
 * that a save/restore brought back older (or torn) fails the check when the sweep reaches it:
 * within one sweep after a restore for pages ahead of the position, two for those behind it.
 * One line per sweep; returns 1 with bad_* set on a mismatch, 0 after `sweeps` sweeps. */
uint64_t u_memwalk(uint64_t arg)
{
	struct memwalk_job *job = (struct memwalk_job *)arg;

	for (;;) {
		uint64_t g = ++job->sweep, t0 = u_rdtsc();
		char line[96];
		uint32_t len = 0;

		for (uint64_t i = 0; i < job->npages; i++) {
			volatile uint64_t *p = (volatile uint64_t *)(job->base + i * 4096);

			if (g > 1) {
				for (uint64_t k = 0; k < 512; k++) {
					uint64_t want = k == 0	 ? g - 1
							: k == 1 ? i
								 : walk_word(g - 1, i, k);

					if (p[k] != want) {
						job->bad_page = i;
						job->bad_word = k;
						job->bad_val = p[k];
						job->bad_want = want;
						return 1;
					}
				}
			}
			p[0] = g;
			p[1] = i;
			for (uint64_t k = 2; k < 512; k++)
				p[k] = walk_word(g, i, k);
		}
		u_put_str(line, &len, "berth-info memwalk sweep=");
		u_put_u64(line, &len, g);
		u_put_str(line, &len, " ms=");
		u_put_u64(line, &len, (u_rdtsc() - t0) / job->tsc_khz);
		line[len++] = '\n';
		u_syscall(SYS_WRITE, (uint64_t)line, len);
		if (job->sweeps && g == job->sweeps)
			return 0;
	}
}
