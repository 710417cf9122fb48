/* guest.h — shared constants, per-CPU state and cross-module declarations of the guest. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#define MAX_CPUS 64
#define KSTACK_SIZE 16384 /* per-CPU kernel stack; struct percpu lives at its lowest address */
#define USTACK_SIZE 16384
#define ISTACK_SIZE 4096

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS 0x28

#define VEC_TIMER 0x40	   /* LAPIC timer during the timer test */
#define VEC_WAKE 0x41	   /* IPI: work posted / work done / AP online */
#define VEC_TICK 0x42	   /* LAPIC timer used only to bound hlt waits */
#define VEC_UART 0x43	   /* 16550 interrupts through the IOAPIC (uart and echo tests) */
#define VEC_SCI 0x44	   /* the ACPI SCI through the IOAPIC (powerbutton test) */
#define VEC_MSIX_BASE 0x50 /* MSI-X vectors of PCI devices: VEC_MSIX_BASE + entry slot */
#define VEC_MSIX_COUNT 16
#define VEC_INTX_BASE 0x60 /* INTx through the I/O APIC: VEC_INTX_BASE + (GSI - 16) */
#define VEC_INTX_COUNT 8
#define VEC_SPURIOUS 0xff

/* Ring 3 -> ring 0 system calls: `ud2` (user_entry.S) with the number in rax, arguments in
 * rdi/rsi, result in rax. */
#define SYS_EXIT 0  /* rdi = value returned by user_call() */
#define SYS_WRITE 1 /* rdi = buffer, rsi = length: write to the serial console */

#define PROBE_MAGIC 0x600d

/* Offsets used by trap.S; checked by _Static_assert in cpu.c. */
#define PERCPU_KCTX_RSP 0
#define PERCPU_TSS_RSP0 20

#define TRAMP_BASE 0x8000 /* AP real-mode trampoline (SIPI vector 0x08) */

/* Test-only virtual region (PML4 slot 1): one read-only user page, then an unmapped page. */
#define TEST_VA_RO 0x8000000000ULL
#define TEST_VA_UNMAPPED 0x8000001000ULL

#ifndef __ASSEMBLER__
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct trap_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, err;
	uint64_t rip, cs, rflags, rsp, ss;
};

struct tss {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

/* An exception the current test is about to provoke; the handler records it and resumes. */
struct expect {
	volatile int armed;
	volatile int hit;
	uint64_t vector, err, cr2, rip, cs;
};

struct percpu {
	uint64_t kctx_rsp; /* kernel rsp saved by user_call() */
	uint64_t pad;
	struct tss tss;
	uint64_t gdt[7];
	uint32_t index;
	uint32_t apic_id;
	struct expect expect;
	volatile uint64_t timer_ticks;
	volatile int online;
	/* work dispatch: the BSP posts fn/arg and bumps work_seq; the CPU runs fn at ring 3 */
	volatile uint32_t work_seq, done_seq;
	uint64_t (*volatile work_fn)(uint64_t);
	volatile uint64_t work_arg, work_result;
};

static inline struct percpu *this_cpu(void)
{
	uint64_t rsp;

	__asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
	return (struct percpu *)(rsp & ~(uint64_t)(KSTACK_SIZE - 1));
}

struct mem_range {
	uint64_t start, end; /* [start, end) */
};

/* lib.c */
void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t parse_u64(const char *s, const char **end);

/* serial.c */
void serial_init(void);
void serial_write(const char *s, size_t n);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void serial_force_unlock(void);
void uart_setup(uint16_t base);

/* start.c: boot information copied out of the PVH start info */
#define MEMMAP_MAX 128
#define CMDLINE_MAX 1024
struct memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};
struct bootinfo {
	int magic_ok;
	uint32_t version;
	uint64_t start_info_paddr;
	uint64_t rsdp_paddr;
	char cmdline[CMDLINE_MAX];
	uint32_t nmemmap;
	struct memmap_entry memmap[MEMMAP_MAX];
};
extern struct bootinfo bootinfo;
const char *cmdline_value(const char *key, size_t *len); /* `key=value` word, or NULL */
uint64_t cmdline_u64(const char *key, uint64_t def);	 /* its number, or def */
int ram_contains(uint64_t start, uint64_t end);		 /* 1 if any part of [start,end) is RAM */

/* entry points called from assembly */
void kmain(uint32_t start_info);
void ap_main(uint64_t index);
void trap_dispatch(struct trap_frame *f);

/* cpu.c */
extern uint8_t cpu_stacks[MAX_CPUS][KSTACK_SIZE];
extern uint8_t user_stacks[MAX_CPUS][USTACK_SIZE];
struct percpu *cpu_percpu(unsigned int index);
void cpu_init(unsigned int index);
void pic_mask(void);
void expect_arm(void);
void fatal_exception(struct trap_frame *f) __attribute__((noreturn));
uint64_t user_run(uint64_t (*fn)(uint64_t), uint64_t arg);

/* trap.S */
extern const uint64_t trap_stubs[256];
uint64_t user_call(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t ustack_top);
void user_return(uint64_t value) __attribute__((noreturn));
uint64_t k_probe_read(uint64_t addr);
uint64_t k_probe_write(uint64_t addr);
uint64_t k_probe_ud2(uint64_t unused);
uint64_t ring0_popcnt_probe(uint64_t v);
extern const char k_probe_read_insn[], k_probe_write_insn[], k_probe_ud2_insn[];

/* paging.c */
void paging_init(void);
int paging_map_mmio(uint64_t addr, uint64_t size, int user);
extern uint64_t boot_pml4[512];

/* acpi.c */
struct gas {
	uint8_t space, bit_width, bit_offset, access_size;
	uint64_t address;
} __attribute__((packed));

struct acpi_info {
	int found;
	uint64_t rsdp;
	int revision;
	int errors;
	char error[64]; /* first problem found, e.g. "bad-checksum table=APIC" */
	uint32_t ncpus;
	uint32_t apic_ids[MAX_CPUS];
	uint64_t lapic_addr, ioapic_addr;
	uint32_t ioapic_gsi_base;
	struct {
		int overridden; /* a MADT Interrupt Source Override names this ISA IRQ */
		uint32_t gsi;
		uint16_t flags; /* MPS INTI flags: bits 1:0 polarity, 3:2 trigger mode */
	} isa_irq[16];
	int have_fadt;
	uint32_t fadt_flags;
	uint16_t sci_irq;    /* FADT SCI_INT: an ISA IRQ (MADT overrides apply) */
	uint8_t pm1_evt_len; /* PM1_EVT_LEN: status, then enable, each half of it */
	struct gas pm1a_evt, pm1a_cnt, pm1b_cnt, reset_reg, sleep_ctl;
	uint8_t reset_value;
	uint64_t dsdt;
	int have_s5;
	uint8_t slp_typa, slp_typb;
	int have_mcfg;
	uint64_t mcfg_base;
	uint32_t ntables;
	struct mem_range tables[32]; /* where the tables live (kept out of the mem test) */
};
extern struct acpi_info acpi;
void acpi_init(void);
void acpi_poweroff(void) __attribute__((noreturn));
int acpi_reset(void);
void gas_describe(const struct gas *g, char *buf, size_t n);

/* clock.c + lapic.c */
extern uint64_t tsc_khz, apic_khz;
extern const char *tsc_source;
void clock_init(void);
uint64_t tsc_after_us(uint64_t us);
void udelay(uint64_t us);
uint64_t apic_measure_khz(void);
void lapic_init_cpu(void);
uint32_t lapic_id(void);
void lapic_eoi(void);
int lapic_send_ipi(uint32_t apic_id, uint32_t icr_low);
void lapic_timer_periodic(uint8_t vector, uint32_t count);
void lapic_timer_stop(void);
int wait_until(volatile int *flag, uint64_t timeout_us);
int wait_seq(volatile uint32_t *seq, uint32_t want, uint64_t timeout_us);
int wait_count(volatile uint32_t *count, uint32_t min, uint64_t timeout_us);

/* ioapic.c */
int ioapic_route_isa(unsigned int irq, uint8_t vector, uint32_t apic_id, uint32_t *gsi);
void ioapic_mask(uint32_t gsi);
void ioapic_unmask(uint32_t gsi);
int ioapic_route_gsi(uint32_t gsi, uint8_t vector, uint32_t apic_id, int level, int active_low);
uint32_t ioapic_rte(uint32_t gsi); /* low dword of its redirection entry (0 if no pin) */

/* smp.c */
extern uint32_t smp_ncpus; /* CPUs online, BSP included */
extern char smp_error[64];
int smp_boot_aps(void);
void smp_post(unsigned int cpu, uint64_t (*fn)(uint64_t), uint64_t arg);
int smp_wait(unsigned int cpu, uint64_t timeout_us);

/* tests_*.c, actions.c: each prints its one result line */
void test_boot(void);
void test_acpi(void);
void test_smp(void);
void test_mem(void);
void test_timer(void);
void test_exceptions(void);
void test_uart(void);
void test_uart_ext(void);
void test_echo(void);
void uart_irq(void);
void test_pci(void);
void test_msix(void);
void test_rng(void);
void test_virtio_reset(void);
void test_virtio_features(void);
void test_blk(void);
void test_blk_ro(void);
void test_blk_verify(void);
void test_blk_fill(void);
void test_blk_reset(void);
void test_net(void);
void test_console(void);
void test_virtio_intx(void);
void test_powerbutton(void);
void sci_irq(void);
void test_ticker(void) __attribute__((noreturn));
void test_memwalk(void);
void intx_irq(unsigned int index);
int blk_bench(const char *name, size_t len); /* -1: no such benchmark */
int net_bench(const char *name, size_t len); /* bench_net.c; -1: no such benchmark */
void action_poweroff(void) __attribute__((noreturn));
void action_reboot_acpi(void) __attribute__((noreturn));
void action_reboot_kbd(void) __attribute__((noreturn));
void action_triple_fault(void) __attribute__((noreturn));
void action_halt(void) __attribute__((noreturn));
void action_ring0_popcnt(void);
void halt_forever(void) __attribute__((noreturn));

/* user_entry.S, user_work.c: ring-3 code (section .user.text) */
void user_entry(void);
uint64_t u_probe_ud2(uint64_t), u_probe_div0(uint64_t), u_probe_read(uint64_t),
    u_probe_write(uint64_t);
uint64_t u_probe_hlt(uint64_t), u_probe_cli(uint64_t), u_probe_int3(uint64_t), u_probe_in(uint64_t);
extern const char u_probe_ud2_insn[], u_probe_div0_insn[], u_probe_read_insn[],
    u_probe_write_insn[];
extern const char u_probe_hlt_insn[], u_probe_cli_insn[], u_probe_int3_insn[], u_probe_in_insn[];
uint64_t u_syscall(uint64_t nr, uint64_t a, uint64_t b);

struct count_job {
	uint64_t deadline;
	uint64_t count, first_tsc, last_tsc;
};
uint64_t u_count_loop(uint64_t job);

#define MEM_JOB_RANGES 64
struct mem_job {
	uint64_t nranges;
	struct mem_range r[MEM_JOB_RANGES];
	uint64_t seed;
	uint64_t bad_addr, bad_val, bad_expect;
	uint64_t tsc[4]; /* start, after write, after verify+invert, after final verify */
};
uint64_t u_mem_job(uint64_t job);
uint64_t u_spin_until(uint64_t tsc_deadline);

struct tick_job {
	uint64_t period_tsc; /* TSC ticks between two lines */
};
uint64_t u_ticker(uint64_t job);

/* `memwalk`: sweep `npages` pages from `base`, each page holding (sweep, page index, pattern). */
struct memwalk_job {
	uint64_t base, npages;
	uint64_t sweeps; /* stop after this many sweeps; 0: forever */
	uint64_t tsc_khz;
	uint64_t sweep; /* the sweep in progress (1, 2, ...) */
	uint64_t bad_page, bad_word, bad_val, bad_want;
};
uint64_t u_memwalk(uint64_t job);

#endif /* __ASSEMBLER__ */
#endif
