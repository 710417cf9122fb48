/* tests_timer.c — `timer`: LAPIC timer rate vs TSC, then 1 ms periodic interrupts counted at ring 3 and in hlt. */
#include "guest.h"
#include "x86.h"

#define USER_US 200000
#define HALT_US 100000

static int in_range(uint64_t hz)
{
	return hz >= 850 && hz <= 1150;
}

void test_timer(void)
{
	struct percpu *pc = this_cpu();
	uint64_t khz = apic_measure_khz(), t0, t1, t2, n0, n1, n2, hz_user, hz_halt, hz, end;

	if (!khz || khz > 0xffffffffULL / 2) {
		kprintf("berth-test timer FAIL reason=\"apic-rate apic_khz=%lu\"\n", khz);
		return;
	}
	apic_khz = khz;
	n0 = pc->timer_ticks;
	lapic_timer_periodic(VEC_TIMER, (uint32_t)khz); /* divide-by-1: khz counts = 1 ms */
	t0 = rdtsc();
	user_run(u_spin_until, t0 + USER_US * tsc_khz / 1000);
	t1 = rdtsc();
	n1 = pc->timer_ticks;
	end = t1 + HALT_US * tsc_khz / 1000;
	while (rdtsc() < end) {
		sti_hlt();
		cli();
	}
	t2 = rdtsc();
	n2 = pc->timer_ticks;
	lapic_timer_stop();

	hz_user = (n1 - n0) * tsc_khz * 1000 / (t1 - t0);
	hz_halt = (n2 - n1) * tsc_khz * 1000 / (t2 - t1);
	hz = (n2 - n0) * tsc_khz * 1000 / (t2 - t0);
	if (!in_range(hz_user) || !in_range(hz_halt)) {
		kprintf("berth-test timer FAIL reason=\"rate hz=%lu hz_user=%lu hz_halt=%lu tsc_khz=%lu apic_khz=%lu\"\n",
			hz, hz_user, hz_halt, tsc_khz, khz);
		return;
	}
	kprintf("berth-test timer PASS hz=%lu tsc_khz=%lu apic_khz=%lu hz_user=%lu hz_halt=%lu tsc_source=%s\n", hz,
		tsc_khz, khz, hz_user, hz_halt, tsc_source);
}
