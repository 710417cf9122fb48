/* clock.c — TSC frequency from kvmclock (pvclock mul/shift) or PIT channel 2; delays. */
#include "guest.h"
#include "x86.h"

#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)

struct pvclock_vcpu_time_info {
	volatile uint32_t version;
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags;
	uint8_t pad[2];
} __attribute__((packed));

static struct pvclock_vcpu_time_info pvclock __attribute__((aligned(64)));

uint64_t tsc_khz, apic_khz;
const char *tsc_source = "none";

/* KVM's leaves sit at 0x40000000 or, next to other hypervisors' leaves, at a multiple of 0x100
 * above it. */
static uint32_t kvm_cpuid_base(void)
{
	for (uint32_t base = 0x40000000; base < 0x40010000; base += 0x100) {
		uint32_t r[4];

		cpuid(base, 0, r);
		if (r[1] == 0x4b4d564b && r[2] == 0x564b4d56 && r[3] == 0x4d && r[0] >= base + 1)
			return base; /* "KVMKVMKVM\0\0\0" */
	}
	return 0;
}

static uint64_t kvmclock_khz(void)
{
	uint32_t base = kvm_cpuid_base(), r[4], mul, version;
	int8_t shift;
	uint64_t khz;

	if (!base)
		return 0;
	cpuid(base + 1, 0, r);
	if (!(r[0] & KVM_FEATURE_CLOCKSOURCE2))
		return 0;
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)&pvclock | 1);
	for (int tries = 0; tries < 1000; tries++) {
		version = pvclock.version;
		barrier();
		mul = pvclock.tsc_to_system_mul;
		shift = pvclock.tsc_shift;
		barrier();
		if (!(version & 1) && version == pvclock.version && mul)
			break;
		mul = 0;
	}
	wrmsr(MSR_KVM_SYSTEM_TIME_NEW, 0);
	if (!mul)
		return 0;
	/* ns = ((tsc << shift) * mul) >> 32  =>  kHz = 10^6 * 2^32 / mul / 2^shift */
	khz = (1000000ULL << 32) / mul;
	if (shift < 0)
		khz <<= -shift;
	else
		khz >>= shift;
	return khz;
}

/* PIT channel 2, mode 0, gate via port 0x61: count 50 ms of 1.193182 MHz ticks against the TSC. */
static uint64_t pit_khz(void)
{
	const uint32_t ticks = 59659; /* 50 ms */
	uint64_t t0, t1;
	unsigned long spins = 0;

	outb(0x61, (inb(0x61) & ~0x02) | 0x01); /* speaker off, gate on */
	outb(0x43, 0xb0);			/* channel 2, lobyte/hibyte, mode 0, binary */
	outb(0x42, ticks & 0xff);
	outb(0x42, ticks >> 8);
	t0 = rdtsc();
	while (!(inb(0x61) & 0x20)) {
		if (++spins > 100000000UL)
			return 0;
	}
	t1 = rdtsc();
	return (t1 - t0) / 50;
}

void clock_init(void)
{
	tsc_khz = kvmclock_khz();
	if (tsc_khz) {
		tsc_source = "kvmclock";
	} else {
		tsc_khz = pit_khz();
		tsc_source = "pit";
	}
	if (!tsc_khz) {
		tsc_khz = 1000000; /* keep delays finite; reported by the timer test */
		tsc_source = "guess";
	}
	apic_khz = apic_measure_khz();
	kprintf("berth-info clock tsc_khz=%lu source=%s apic_khz=%lu\n", tsc_khz, tsc_source,
		apic_khz);
}

uint64_t tsc_after_us(uint64_t us)
{
	return rdtsc() + us * tsc_khz / 1000;
}

void udelay(uint64_t us)
{
	uint64_t end = tsc_after_us(us);

	while (rdtsc() < end)
		cpu_relax();
}
