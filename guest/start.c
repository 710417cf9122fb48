/* start.c — kmain(): copy the PVH start info, bring up the BSP, parse the cmdline, run tests */
#include "guest.h"
#include "x86.h"

#define HVM_START_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct bootinfo bootinfo;

/* Copy everything out of the start info first: the mem test may overwrite wherever the loader put
 * it. */
static void bootinfo_copy(uint32_t paddr)
{
	const struct hvm_start_info *si = (const struct hvm_start_info *)(uint64_t)paddr;

	bootinfo.start_info_paddr = paddr;
	if (!paddr || si->magic != HVM_START_MAGIC)
		return;
	bootinfo.magic_ok = 1;
	bootinfo.version = si->version;
	bootinfo.rsdp_paddr = si->rsdp_paddr;
	if (si->cmdline_paddr) {
		const char *c = (const char *)si->cmdline_paddr;
		size_t n = 0;

		while (n < CMDLINE_MAX - 1 && c[n]) {
			bootinfo.cmdline[n] = c[n];
			n++;
		}
		bootinfo.cmdline[n] = 0;
	}
	if (si->version >= 1 && si->memmap_paddr) {
		uint32_t n = si->memmap_entries < MEMMAP_MAX ? si->memmap_entries : MEMMAP_MAX;

		memcpy(bootinfo.memmap, (const void *)si->memmap_paddr,
		       n * sizeof(struct memmap_entry));
		bootinfo.nmemmap = n;
	}
}

struct test {
	const char *name;
	void (*run)(void);
};

static const struct test tests[] = {
    {"boot", test_boot},
    {"acpi", test_acpi},
    {"smp", test_smp},
    {"mem", test_mem},
    {"memwalk", test_memwalk},
    {"timer", test_timer},
    {"exceptions", test_exceptions},
    {"uart", test_uart},
    {"uart-ext", test_uart_ext},
    {"echo", test_echo},
    {"pci", test_pci},
    {"msix", test_msix},
    {"rng", test_rng},
    {"virtio-reset", test_virtio_reset},
    {"virtio-features", test_virtio_features},
    {"blk", test_blk},
    {"blk-ro", test_blk_ro},
    {"blk-verify", test_blk_verify},
    {"blk-fill", test_blk_fill},
    {"blk-reset", test_blk_reset},
    {"net", test_net},
    {"console", test_console},
    {"virtio-intx", test_virtio_intx},
    {"powerbutton", test_powerbutton},
    {"ticker", test_ticker},
    {"poweroff", action_poweroff},
    {"reboot-acpi", action_reboot_acpi},
    {"reboot-kbd", action_reboot_kbd},
    {"triple-fault", action_triple_fault},
    {"halt", action_halt},
    {"ring0-popcnt", action_ring0_popcnt},
};

static void run_test(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (strlen(tests[i].name) == len && !strncmp(tests[i].name, name, len)) {
			tests[i].run();
			return;
		}
	}
	char buf[64];

	if (len > sizeof(buf) - 1)
		len = sizeof(buf) - 1;
	memcpy(buf, name, len);
	buf[len] = 0;
	kprintf("berth-test %s FAIL reason=unknown-test\n", buf);
}

/* Find `key=` as a whole word of the command line; returns the value and its length (up to a
 * space). */
const char *cmdline_value(const char *key, size_t *len)
{
	const char *c = bootinfo.cmdline;
	size_t kl = strlen(key);

	while (*c) {
		while (*c == ' ')
			c++;
		if (!strncmp(c, key, kl) && c[kl] == '=') {
			const char *v = c + kl + 1, *e = v;

			while (*e && *e != ' ')
				e++;
			*len = e - v;
			return v;
		}
		while (*c && *c != ' ')
			c++;
	}
	return NULL;
}

uint64_t cmdline_u64(const char *key, uint64_t def)
{
	size_t len;
	const char *v = cmdline_value(key, &len), *end;
	uint64_t x;

	if (!v || !len)
		return def;
	x = parse_u64(v, &end);
	return end == v + len ? x : def;
}

/* `bench=a,b,…`: workloads that print `berth-bench` lines; they run before the tests. */
static int run_benches(void)
{
	size_t len;
	const char *v = cmdline_value("bench", &len), *end;

	if (!v)
		return 0;
	end = v + len;
	while (v < end) {
		const char *comma = v;

		while (comma < end && *comma != ',')
			comma++;
		if (comma > v && blk_bench(v, comma - v) < 0 && net_bench(v, comma - v) < 0) {
			char buf[64];
			size_t n = comma - v < 63 ? (size_t)(comma - v) : 63;

			memcpy(buf, v, n);
			buf[n] = 0;
			kprintf("berth-bench %s FAIL reason=unknown-bench\n", buf);
		}
		v = comma + 1;
	}
	return 1;
}

static void run_tests(void)
{
	static const char defaults[] = "boot,smp,mem,timer,exceptions";
	size_t len;
	int benched = run_benches();
	const char *v = cmdline_value("test", &len), *end;

	if (!v && benched)
		return; /* only benchmarks asked for: no default tests */
	if (!v) {
		v = defaults;
		len = sizeof(defaults) - 1;
	}
	end = v + len;
	while (v < end) {
		const char *comma = v;

		while (comma < end && *comma != ',')
			comma++;
		if (comma > v)
			run_test(v, comma - v);
		v = comma + 1;
	}
}

void kmain(uint32_t start_info)
{
	pic_mask();
	serial_init();
	kprintf("berth-guest: start\n");
	cpu_init(0);
	bootinfo_copy(start_info);
	kprintf("berth-guest: cmdline=\"%s\"\n", bootinfo.cmdline);
	paging_init();
	acpi_init();
	lapic_init_cpu();
	cpu_percpu(0)->apic_id = lapic_id();
	cpu_percpu(0)->online = 1;
	clock_init();
	run_tests();
	kprintf("berth-guest: tests done, powering off\n");
	acpi_poweroff();
}
