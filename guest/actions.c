/* actions.c — run-ending actions: poweroff, reboots, triple fault, halt, ring-0 popcnt. */
#include "guest.h"
#include "x86.h"

void halt_forever(void)
{
	for (;;)
		__asm__ volatile("cli; hlt");
}

void action_poweroff(void)
{
	kprintf("berth-test poweroff PASS\n");
	acpi_poweroff();
}

void action_reboot_acpi(void)
{
	char reg[40];

	gas_describe(&acpi.reset_reg, reg, sizeof(reg));
	kprintf("berth-test reboot-acpi PASS reg=%s value=0x%x\n", reg, acpi.reset_value);
	if (acpi_reset() == 0)
		udelay(100000);
	kprintf("berth-guest: reboot failed\n");
	halt_forever();
}

void action_reboot_kbd(void)
{
	kprintf("berth-test reboot-kbd PASS\n");
	outb(0x64, 0xfe);
	udelay(100000);
	kprintf("berth-guest: reboot failed\n");
	halt_forever();
}

void action_triple_fault(void)
{
	static const struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty_idt = {0, 0};

	kprintf("berth-test triple-fault PASS\n");
	__asm__ volatile("lidt %0\n\tud2" : : "m"(empty_idt));
	kprintf("berth-guest: triple fault did not reset\n");
	halt_forever();
}

void action_halt(void)
{
	kprintf("berth-test halt PASS\n");
	halt_forever();
}

void action_ring0_popcnt(void)
{
	struct expect *ex = &this_cpu()->expect;
	uint64_t r;

	/* ring0_popcnt_probe (trap.S) is the one place the kernel executes a forbidden ring-0
	 * instruction, on purpose: it exercises the VMM's emulation-failure report. The disassembly
	 * test skips exactly it. */
	kprintf("berth-info ring0-popcnt executing popcnt at ring 0\n");
	expect_arm();
	r = ring0_popcnt_probe(0xf0f0);
	ex->armed = 0;
	if (ex->hit)
		kprintf("berth-test ring0-popcnt FAIL reason=\"exception vector=%lu\"\n",
			ex->vector);
	else
		kprintf("berth-test ring0-popcnt PASS result=%lu\n", r);
}
