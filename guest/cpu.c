/* cpu.c — per-CPU GDT/TSS/IDT, CR0/CR4, PIC masking, trap dispatch (faults, IRQs, syscalls) */
#include "guest.h"
#include "pci.h"
#include "x86.h"

_Static_assert(__builtin_offsetof(struct percpu, kctx_rsp) == PERCPU_KCTX_RSP, "trap.S offset");
_Static_assert(__builtin_offsetof(struct percpu, tss) + 4 == PERCPU_TSS_RSP0, "trap.S offset");
_Static_assert(sizeof(struct tss) == 104, "tss size");

uint8_t cpu_stacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(KSTACK_SIZE)));
uint8_t user_stacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(4096)));
static uint8_t ist_stacks[MAX_CPUS][ISTACK_SIZE] __attribute__((aligned(4096)));

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type;
	uint16_t off_mid;
	uint32_t off_hi, reserved;
} __attribute__((packed));

/* One IDT per CPU (same gates everywhere; separate tables keep each CPU's state self-contained). */
static struct idt_gate idts[MAX_CPUS][256] __attribute__((aligned(4096)));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

struct percpu *cpu_percpu(unsigned int index)
{
	return (struct percpu *)cpu_stacks[index];
}

static void idt_build(struct idt_gate *idt)
{
	for (int v = 0; v < 256; v++) {
		uint64_t a = trap_stubs[v];
		struct idt_gate *g = &idt[v];

		g->off_lo = a & 0xffff;
		g->sel = SEL_KCODE;
		g->ist = v == 8 ? 1 : 0;	/* #DF on its own stack */
		g->type = v == 3 ? 0xee : 0x8e; /* interrupt gates; int3 callable from ring 3 */
		g->off_mid = (a >> 16) & 0xffff;
		g->off_hi = a >> 32;
		g->reserved = 0;
	}
}

void pic_mask(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

/* Load this CPU's GDT (with its TSS) and IDT, and set CR0/CR4 bits. Runs on the CPU's kernel stack.
 */
void cpu_init(unsigned int index)
{
	struct percpu *pc = cpu_percpu(index);
	uint64_t tss = (uint64_t)&pc->tss, cr0, cr4;
	struct desc_ptr gdtr, idtr;

	idt_build(idts[index]);
	pc->index = index;
	memset(&pc->tss, 0, sizeof(pc->tss));
	pc->tss.rsp0 = (uint64_t)cpu_stacks[index] + KSTACK_SIZE;
	pc->tss.ist[0] = (uint64_t)ist_stacks[index] + ISTACK_SIZE;
	pc->tss.iomap_base = sizeof(struct tss); /* no I/O bitmap: all ports denied at ring 3 */

	pc->gdt[0] = 0;
	pc->gdt[1] = 0x00af9a000000ffffULL; /* 0x08 kernel code 64 */
	pc->gdt[2] = 0x00cf92000000ffffULL; /* 0x10 kernel data */
	pc->gdt[3] = 0x00cff2000000ffffULL; /* 0x18 user data */
	pc->gdt[4] = 0x00affa000000ffffULL; /* 0x20 user code 64 */
	pc->gdt[5] = (sizeof(struct tss) - 1) | ((tss & 0xffffff) << 16) | (0x89ULL << 40) |
		     (((tss >> 24) & 0xff) << 56); /* 0x28 TSS, available */
	pc->gdt[6] = tss >> 32;

	gdtr.limit = sizeof(pc->gdt) - 1;
	gdtr.base = (uint64_t)pc->gdt;
	idtr.limit = sizeof(idts[index]) - 1;
	idtr.base = (uint64_t)idts[index];
	__asm__ volatile("lgdt %0\n\t"
			 "pushq %1\n\t"
			 "lea 1f(%%rip), %%rax\n\t"
			 "pushq %%rax\n\t"
			 "lretq\n"
			 "1:\n\t"
			 "mov %2, %%eax\n\t"
			 "mov %%eax, %%ds\n\t"
			 "mov %%eax, %%es\n\t"
			 "mov %%eax, %%ss\n\t"
			 "xor %%eax, %%eax\n\t"
			 "mov %%eax, %%fs\n\t"
			 "mov %%eax, %%gs\n\t"
			 "mov %3, %%eax\n\t"
			 "ltr %%ax\n\t"
			 "lidt %4"
			 :
			 : "m"(gdtr), "i"(SEL_KCODE), "i"(SEL_KDATA), "i"(SEL_TSS), "m"(idtr)
			 : "rax", "memory");

	/* CR0: WP (ring-0 writes honour read-only pages), MP, no EM; CR4: OSFXSR/OSXMMEXCPT so
	 * ring-3 workloads may use SSE. The kernel itself never touches SSE state. */
	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	cr0 = (cr0 | (1u << 16) | (1u << 1)) & ~(uint64_t)(1u << 2);
	__asm__ volatile("mov %0, %%cr0" : : "r"(cr0));
	__asm__ volatile("mov %%cr4, %0" : "=r"(cr4));
	cr4 |= (1u << 9) | (1u << 10);
	__asm__ volatile("mov %0, %%cr4" : : "r"(cr4));
}

uint64_t user_run(uint64_t (*fn)(uint64_t), uint64_t arg)
{
	struct percpu *pc = this_cpu();

	return user_call(fn, arg, (uint64_t)user_stacks[pc->index] + USTACK_SIZE);
}

void expect_arm(void)
{
	struct percpu *pc = this_cpu();

	pc->expect.hit = 0;
	pc->expect.vector = pc->expect.err = pc->expect.cr2 = pc->expect.rip = pc->expect.cs =
	    ~0ULL;
	barrier();
	pc->expect.armed = 1;
}

void fatal_exception(struct trap_frame *f)
{
	serial_force_unlock();
	kprintf(
	    "berth-guest: unexpected exception vector=%lu rip=0x%lx err=0x%lx cr2=0x%lx cs=0x%lx "
	    "rsp=0x%lx\n",
	    f->vector, f->rip, f->err, read_cr2(), f->cs, f->rsp);
	acpi_poweroff();
}

static void do_syscall(struct trap_frame *f)
{
	switch (f->rax) {
	case SYS_EXIT:
		user_return(f->rdi);
	case SYS_WRITE:
		if (f->rsi > 4096) {
			f->rax = ~0ULL;
			break;
		}
		serial_write((const char *)f->rdi, f->rsi);
		f->rax = f->rsi;
		break;
	default:
		f->rax = ~0ULL;
		break;
	}
}

void trap_dispatch(struct trap_frame *f)
{
	uint64_t v = f->vector;
	struct percpu *pc;

	if (v == 8)
		fatal_exception(f); /* on the IST stack: this_cpu() is not valid here */
	pc = this_cpu();
	if (v < 32) {
		int from_user = (f->cs & 3) == 3;

		/* a system call: `ud2` from ring 3 outside a probe; step over it */
		if (v == 6 && from_user && !pc->expect.armed &&
		    *(const volatile uint16_t *)f->rip == 0x0b0f) {
			f->rip += 2;
			do_syscall(f);
			return;
		}
		if (!pc->expect.armed)
			fatal_exception(f);
		pc->expect.vector = v;
		pc->expect.err = f->err;
		pc->expect.cr2 = read_cr2();
		pc->expect.rip = f->rip;
		pc->expect.cs = f->cs;
		pc->expect.armed = 0;
		pc->expect.hit = 1;
		/* Resume at the probe's return address: emulate its `ret`. */
		f->rip = *(uint64_t *)f->rsp;
		f->rsp += 8;
		return;
	}
	switch (v) {
	case VEC_TIMER:
		pc->timer_ticks++;
		lapic_eoi();
		break;
	case VEC_WAKE:
	case VEC_TICK:
		lapic_eoi();
		break;
	case VEC_UART:
		uart_irq(); /* EOIs */
		break;
	case VEC_SCI:
		sci_irq(); /* EOIs */
		break;
	case VEC_SPURIOUS:
		break; /* no EOI for spurious interrupts */
	default:
		if (v >= VEC_MSIX_BASE && v < VEC_MSIX_BASE + VEC_MSIX_COUNT) {
			msix_irq(v - VEC_MSIX_BASE); /* EOIs */
			break;
		}
		if (v >= VEC_INTX_BASE && v < VEC_INTX_BASE + VEC_INTX_COUNT) {
			intx_irq(v - VEC_INTX_BASE); /* EOIs */
			break;
		}
		kprintf("berth-guest: unexpected interrupt vector=%lu cpu=%u\n", v, pc->index);
		lapic_eoi();
		break;
	}
}
