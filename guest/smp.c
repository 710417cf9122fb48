/* smp.c — AP bring-up (INIT/SIPI/SIPI via LAPIC ICR, trampoline below 1 MiB), work dispatch */
#include "guest.h"
#include "x86.h"

extern char tramp_start[], tramp_end[], tramp_cr3[], tramp_rsp[], tramp_arg[], tramp_entry[];

uint32_t smp_ncpus = 1;
char smp_error[64];
static int smp_tried;
static uint32_t bsp_apic_id;

#define TRAMP_FIELD(sym) ((volatile uint64_t *)(TRAMP_BASE + ((sym)-tramp_start)))

/* AP: runs on its own kernel stack. Loads its GDT/TSS/IDT, enables its LAPIC, then waits for work
 * in `sti; hlt` (ring-0 spinning is emulated instruction by instruction on our hosts: avoid it). */
void ap_main(uint64_t index)
{
	struct percpu *pc = cpu_percpu(index);

	cpu_init(index);
	lapic_init_cpu();
	pc->apic_id = lapic_id();
	barrier();
	pc->online = 1;
	lapic_send_ipi(bsp_apic_id, VEC_WAKE);
	for (;;) {
		uint32_t seq;

		cli();
		seq = pc->work_seq;
		if (seq == pc->done_seq) {
			sti_hlt();
			continue;
		}
		pc->work_result = user_run(pc->work_fn, pc->work_arg);
		barrier();
		pc->done_seq = seq;
		lapic_send_ipi(bsp_apic_id, VEC_WAKE);
	}
}

static int boot_one(unsigned int index, uint32_t apic_id)
{
	struct percpu *pc = cpu_percpu(index);

	pc->index = index;
	pc->apic_id = apic_id;
	pc->online = 0;
	pc->work_seq = pc->done_seq = 0;
	*TRAMP_FIELD(tramp_cr3) = read_cr3();
	*TRAMP_FIELD(tramp_rsp) = (uint64_t)cpu_stacks[index] + KSTACK_SIZE;
	*TRAMP_FIELD(tramp_arg) = index;
	*TRAMP_FIELD(tramp_entry) = (uint64_t)ap_main;
	barrier();

	if (lapic_send_ipi(apic_id, 0x4500) < 0) /* INIT, level assert */
		return -1;
	udelay(10000);
	if (lapic_send_ipi(apic_id, 0x4600 | (TRAMP_BASE >> 12)) < 0) /* STARTUP */
		return -1;
	udelay(200);
	if (!pc->online)
		lapic_send_ipi(apic_id, 0x4600 | (TRAMP_BASE >> 12));
	return wait_until(&pc->online, 2000000);
}

/* Start every enabled CPU from the MADT once. Returns 0, or -1 with smp_error naming the first
 * failure. */
int smp_boot_aps(void)
{
	uint32_t self;

	if (smp_tried)
		return smp_error[0] ? -1 : 0;
	smp_tried = 1;
	bsp_apic_id = self = lapic_id();
	if (!acpi.ncpus) {
		snprintf(smp_error, sizeof(smp_error), "no-madt");
		return -1;
	}
	if (!ram_contains(TRAMP_BASE, TRAMP_BASE + 4096)) {
		snprintf(smp_error, sizeof(smp_error), "no-trampoline-ram");
		return -1;
	}
	memcpy((void *)TRAMP_BASE, tramp_start, tramp_end - tramp_start);
	for (uint32_t i = 0; i < acpi.ncpus; i++) {
		uint32_t id = acpi.apic_ids[i];

		if (id == self)
			continue;
		if (boot_one(smp_ncpus, id) < 0) {
			snprintf(smp_error, sizeof(smp_error), "ap-timeout apic_id=%u", id);
			return -1;
		}
		smp_ncpus++;
	}
	return 0;
}

void smp_post(unsigned int cpu, uint64_t (*fn)(uint64_t), uint64_t arg)
{
	struct percpu *pc = cpu_percpu(cpu);

	pc->work_fn = fn;
	pc->work_arg = arg;
	barrier();
	pc->work_seq = pc->done_seq + 1;
	lapic_send_ipi(pc->apic_id, VEC_WAKE);
}

int smp_wait(unsigned int cpu, uint64_t timeout_us)
{
	struct percpu *pc = cpu_percpu(cpu);

	return wait_seq(&pc->done_seq, pc->work_seq, timeout_us);
}
