/* lapic.c — local APIC (xAPIC MMIO): enable, IPIs, timer, rate measurement, bounded waits. */
#include "guest.h"
#include "x86.h"

#define MSR_APIC_BASE 0x1b
#define LAPIC_ID 0x20
#define LAPIC_TPR 0x80
#define LAPIC_EOI 0xb0
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INIT 0x380
#define LAPIC_TIMER_CUR 0x390
#define LAPIC_TIMER_DIV 0x3e0
#define LVT_MASKED (1u << 16)
#define LVT_PERIODIC (1u << 17)
#define ICR_BUSY (1u << 12)

static uint64_t lapic_base = 0xfee00000;

static inline uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(lapic_base + reg);
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(lapic_base + reg, v);
}

void lapic_init_cpu(void)
{
	uint64_t msr = rdmsr(MSR_APIC_BASE);

	if (!(msr & (1u << 11)))
		wrmsr(MSR_APIC_BASE, msr | (1u << 11));
	lapic_base = msr & 0xfffff000ULL;
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
	lapic_write(LAPIC_TPR, 0);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_DIV, 0xb); /* divide by 1 */
}

uint32_t lapic_id(void)
{
	return lapic_read(LAPIC_ID) >> 24;
}

void lapic_eoi(void)
{
	lapic_write(LAPIC_EOI, 0);
}

int lapic_send_ipi(uint32_t apic_id, uint32_t icr_low)
{
	unsigned int spins = 0;

	while (lapic_read(LAPIC_ICR_LO) & ICR_BUSY)
		if (++spins > 100000)
			return -1;
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr_low);
	spins = 0;
	while (lapic_read(LAPIC_ICR_LO) & ICR_BUSY)
		if (++spins > 100000)
			return -1;
	return 0;
}

void lapic_timer_periodic(uint8_t vector, uint32_t count)
{
	lapic_write(LAPIC_TIMER_DIV, 0xb);
	lapic_write(LAPIC_LVT_TIMER, vector | LVT_PERIODIC);
	lapic_write(LAPIC_TIMER_INIT, count);
}

void lapic_timer_stop(void)
{
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_INIT, 0);
}

/* Count rate of the (masked, one-shot) timer at divide-by-1 over 20 ms of TSC time. */
uint64_t apic_measure_khz(void)
{
	uint64_t t0, t1, end;
	uint32_t c0, c1;

	lapic_write(LAPIC_TIMER_DIV, 0xb);
	lapic_write(LAPIC_LVT_TIMER, LVT_MASKED);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffff);
	c0 = lapic_read(LAPIC_TIMER_CUR);
	t0 = rdtsc();
	end = t0 + 20 * tsc_khz;
	while (rdtsc() < end)
		cpu_relax();
	c1 = lapic_read(LAPIC_TIMER_CUR);
	t1 = rdtsc();
	lapic_write(LAPIC_TIMER_INIT, 0);
	if (t1 <= t0 || c1 >= c0)
		return 0;
	return (uint64_t)(c0 - c1) * tsc_khz / (t1 - t0);
}

/* What a bounded wait waits for. */
enum wait_kind { WAIT_FLAG, WAIT_SEQ_EQ, WAIT_COUNT_GE };

/* Sleep in `sti; hlt` until the condition holds or the timeout passes. A 10 ms tick bounds each
 * sleep, so a CPU that never sends its wake-up IPI (or a device that never interrupts) cannot hang
 * us. Interrupts stay off outside the hlt. */
static int wait_cond(enum wait_kind kind, volatile int *flag, volatile uint32_t *seq, uint32_t want,
		     uint64_t timeout_us)
{
	uint64_t end = tsc_after_us(timeout_us);
	uint32_t tick = apic_khz ? apic_khz * 10 : 10000000;
	int ok;

	lapic_timer_periodic(VEC_TICK, tick);
	for (;;) {
		cli();
		ok = kind == WAIT_FLAG	   ? *flag != 0
		     : kind == WAIT_SEQ_EQ ? *seq == want
					   : (int32_t)(*seq - want) >= 0;
		if (ok || rdtsc() >= end)
			break;
		sti_hlt();
	}
	cli();
	lapic_timer_stop();
	return ok ? 0 : -1;
}

int wait_until(volatile int *flag, uint64_t timeout_us)
{
	return wait_cond(WAIT_FLAG, flag, NULL, 0, timeout_us);
}

int wait_seq(volatile uint32_t *seq, uint32_t want, uint64_t timeout_us)
{
	return wait_cond(WAIT_SEQ_EQ, NULL, seq, want, timeout_us);
}

/* Wait until an event counter reaches at least `min` (wrap-safe). */
int wait_count(volatile uint32_t *count, uint32_t min, uint64_t timeout_us)
{
	return wait_cond(WAIT_COUNT_GE, NULL, count, min, timeout_us);
}
