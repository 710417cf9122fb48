/* acpi.c — RSDP/XSDT/RSDT, MADT/FADT/MCFG, _S5_ from DSDT AML, S5 power-off, ACPI reset. */
#include "guest.h"
#include "x86.h"

struct acpi_info acpi;

struct sdt_header {
	char sig[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

#define FADT_FLAG_RESET_REG_SUP (1u << 10)
#define FADT_FLAG_HW_REDUCED (1u << 20)

static uint8_t sum8(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

static uint8_t rd8(const void *p, size_t off)
{
	return ((const uint8_t *)p)[off];
}

static uint32_t rd32(const void *p, size_t off)
{
	uint32_t v;

	memcpy(&v, (const uint8_t *)p + off, 4);
	return v;
}

static uint64_t rd64(const void *p, size_t off)
{
	uint64_t v;

	memcpy(&v, (const uint8_t *)p + off, 8);
	return v;
}

static void acpi_error(const char *what, const char *sig, uint64_t addr)
{
	char sigs[5] = {0};

	if (sig)
		memcpy(sigs, sig, 4);
	if (!acpi.errors)
		snprintf(acpi.error, sizeof(acpi.error), "%s%s%s", what, sig ? " table=" : "",
			 sigs);
	acpi.errors++;
	kprintf("berth-guest: acpi %s%s%s addr=0x%lx\n", what, sig ? " table=" : "", sigs, addr);
}

/* Validate a table's header and checksum; remember where it lives. A bad checksum is reported and
 * the table still used (as Linux does), so the rest of the guest keeps working. */
static const struct sdt_header *table_at(uint64_t addr)
{
	const struct sdt_header *h = (const struct sdt_header *)addr;

	if (!addr || addr >= (64ULL << 30))
		return NULL;
	if (h->length < sizeof(*h) || h->length > (16u << 20)) {
		acpi_error("bad-length", h->sig, addr);
		return NULL;
	}
	if (sum8(h, h->length))
		acpi_error("bad-checksum", h->sig, addr);
	if (acpi.ntables < sizeof(acpi.tables) / sizeof(acpi.tables[0])) {
		acpi.tables[acpi.ntables].start = addr & ~4095ULL;
		acpi.tables[acpi.ntables].end = (addr + h->length + 4095) & ~4095ULL;
		acpi.ntables++;
	}
	return h;
}

static uint64_t rsdp_valid(uint64_t addr)
{
	const uint8_t *p = (const uint8_t *)addr;

	if (memcmp(p, "RSD PTR ", 8) || sum8(p, 20))
		return 0;
	if (p[15] >= 2 && sum8(p, rd32(p, 20) < 36 ? 36 : rd32(p, 20)))
		return 0;
	return addr;
}

static uint64_t rsdp_find(void)
{
	if (bootinfo.rsdp_paddr) {
		if (rsdp_valid(bootinfo.rsdp_paddr))
			return bootinfo.rsdp_paddr;
		acpi_error("bad-rsdp", NULL, bootinfo.rsdp_paddr);
	}
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (rsdp_valid(a))
			return a;
	return 0;
}

static void parse_madt(const struct sdt_header *h)
{
	const uint8_t *p = (const uint8_t *)h, *end = p + h->length;

	acpi.lapic_addr = rd32(p, 36);
	for (p += 44; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
		uint32_t id, flags;

		switch (p[0]) {
		case 0: /* Processor Local APIC */
			if (p[1] < 8)
				break;
			id = p[3];
			flags = rd32(p, 4);
			goto cpu;
		case 9: /* Processor Local x2APIC: only IDs the xAPIC ICR can address */
			if (p[1] < 16)
				break;
			id = rd32(p, 4);
			flags = rd32(p, 8);
			if (id > 254)
				break;
		cpu:
			if ((flags & 1) && acpi.ncpus < MAX_CPUS)
				acpi.apic_ids[acpi.ncpus++] = id;
			break;
		case 1: /* I/O APIC */
			if (p[1] >= 12 && !acpi.ioapic_addr) {
				acpi.ioapic_addr = rd32(p, 4);
				acpi.ioapic_gsi_base = rd32(p, 8);
			}
			break;
		case 2: /* Interrupt Source Override: ISA IRQ p[3] is GSI rd32(p, 4), MPS flags */
			if (p[1] >= 10 && p[2] == 0 && p[3] < 16) {
				acpi.isa_irq[p[3]].overridden = 1;
				acpi.isa_irq[p[3]].gsi = rd32(p, 4);
				acpi.isa_irq[p[3]].flags = (uint16_t)(p[8] | p[9] << 8);
			}
			break;
		case 5: /* Local APIC address override */
			if (p[1] >= 12)
				acpi.lapic_addr = rd64(p, 4);
			break;
		}
	}
}

/* AML PkgLength: lead byte bits 7:6 = count of following bytes. Returns bytes consumed. */
static size_t aml_pkglen(const uint8_t *p, size_t avail)
{
	size_t n = (p[0] >> 6) + 1;

	return n <= avail ? n : 0;
}

/* One integer element: ZeroOp, OneOp, BytePrefix nn, WordPrefix, DWordPrefix. Returns bytes
 * consumed. */
static size_t aml_int(const uint8_t *p, size_t avail, uint8_t *out)
{
	if (!avail)
		return 0;
	switch (p[0]) {
	case 0x00:
	case 0x01:
		*out = p[0];
		return 1;
	case 0x0a:
		if (avail < 2)
			return 0;
		*out = p[1];
		return 2;
	case 0x0b:
		if (avail < 3)
			return 0;
		*out = p[1];
		return 3;
	case 0x0c:
		if (avail < 5)
			return 0;
		*out = p[1];
		return 5;
	default:
		return 0;
	}
}

/* Find `Name(_S5_, Package(){a, b, ...})` in the DSDT: NameOp (0x08), optional root prefix '\',
 * "_S5_", PackageOp (0x12), PkgLength, NumElements, elements. */
static void parse_s5(const struct sdt_header *h)
{
	const uint8_t *p = (const uint8_t *)h;
	size_t len = h->length;

	for (size_t i = sizeof(*h) + 1; i + 4 < len; i++) {
		size_t j, n;

		if (p[i] != '_' || p[i + 1] != 'S' || p[i + 2] != '5' || p[i + 3] != '_')
			continue;
		if (!(p[i - 1] == 0x08 || (p[i - 1] == '\\' && p[i - 2] == 0x08)))
			continue;
		j = i + 4;
		if (j >= len || p[j] != 0x12)
			continue;
		j++;
		n = aml_pkglen(p + j, len - j);
		if (!n)
			continue;
		j += n + 1; /* PkgLength, NumElements */
		if (j >= len)
			continue;
		n = aml_int(p + j, len - j, &acpi.slp_typa);
		if (!n)
			continue;
		j += n;
		if (!aml_int(p + j, len - j, &acpi.slp_typb))
			acpi.slp_typb = acpi.slp_typa;
		acpi.have_s5 = 1;
		return;
	}
}

static void parse_fadt(const struct sdt_header *h)
{
	const uint8_t *p = (const uint8_t *)h;
	uint32_t len = h->length;
	const struct sdt_header *dsdt;

	acpi.have_fadt = 1;
	if (len >= 116)
		acpi.fadt_flags = rd32(p, 112);
	if (len >= 48)
		acpi.sci_irq = (uint16_t)(rd8(p, 46) | rd8(p, 47) << 8);
	if (len >= 89) {
		acpi.pm1_evt_len = rd8(p, 88);
		if (rd32(p, 56)) {
			acpi.pm1a_evt.space = 1;
			acpi.pm1a_evt.bit_width = (uint8_t)(8 * acpi.pm1_evt_len);
			acpi.pm1a_evt.address = rd32(p, 56);
		}
	}
	if (len >= 160 && rd64(p, 152))
		memcpy(&acpi.pm1a_evt, p + 148, sizeof(struct gas));
	if (len >= 68 && rd32(p, 64)) {
		acpi.pm1a_cnt.space = 1;
		acpi.pm1a_cnt.bit_width = 16;
		acpi.pm1a_cnt.address = rd32(p, 64);
	}
	if (len >= 72 && rd32(p, 68)) {
		acpi.pm1b_cnt.space = 1;
		acpi.pm1b_cnt.bit_width = 16;
		acpi.pm1b_cnt.address = rd32(p, 68);
	}
	if (len >= 129) {
		memcpy(&acpi.reset_reg, p + 116, sizeof(struct gas));
		acpi.reset_value = rd8(p, 128);
	}
	acpi.dsdt = len >= 44 ? rd32(p, 40) : 0;
	if (len >= 148 && rd64(p, 140))
		acpi.dsdt = rd64(p, 140);
	if (len >= 184 && rd64(p, 176))
		memcpy(&acpi.pm1a_cnt, p + 172, sizeof(struct gas));
	if (len >= 196 && rd64(p, 188))
		memcpy(&acpi.pm1b_cnt, p + 184, sizeof(struct gas));
	if (len >= 256)
		memcpy(&acpi.sleep_ctl, p + 244, sizeof(struct gas));

	dsdt = table_at(acpi.dsdt);
	if (dsdt && !memcmp(dsdt->sig, "DSDT", 4))
		parse_s5(dsdt);
}

static void parse_table(uint64_t addr)
{
	const struct sdt_header *h = table_at(addr);

	if (!h)
		return;
	if (!memcmp(h->sig, "APIC", 4))
		parse_madt(h);
	else if (!memcmp(h->sig, "FACP", 4))
		parse_fadt(h);
	else if (!memcmp(h->sig, "MCFG", 4) && h->length >= 44 + 16) {
		acpi.have_mcfg = 1;
		acpi.mcfg_base = rd64(h, 44);
	}
}

void gas_describe(const struct gas *g, char *buf, size_t n)
{
	snprintf(buf, n, "%s:0x%lx",
		 g->space == 1	 ? "io"
		 : g->space == 0 ? "mem"
				 : "other",
		 g->address);
}

void acpi_init(void)
{
	const struct sdt_header *root;
	const uint8_t *rsdp;
	char pm1[40], rst[40];

	acpi.rsdp = rsdp_find();
	if (!acpi.rsdp) {
		acpi_error("no-rsdp", NULL, 0);
		return;
	}
	rsdp = (const uint8_t *)acpi.rsdp;
	acpi.tables[acpi.ntables++] =
	    (struct mem_range){acpi.rsdp & ~4095ULL, (acpi.rsdp + 36 + 4095) & ~4095ULL};
	acpi.revision = rsdp[15];
	if (acpi.revision >= 2 && rd64(rsdp, 24))
		root = table_at(rd64(rsdp, 24));
	else
		root = table_at(rd32(rsdp, 16));
	if (!root) {
		acpi_error("no-root-table", NULL, acpi.rsdp);
		return;
	}
	acpi.found = 1;
	if (!memcmp(root->sig, "XSDT", 4)) {
		for (uint32_t off = sizeof(*root); off + 8 <= root->length; off += 8)
			parse_table(rd64(root, off));
	} else {
		for (uint32_t off = sizeof(*root); off + 4 <= root->length; off += 4)
			parse_table(rd32(root, off));
	}
	if (!acpi.ncpus)
		acpi_error("no-madt-cpus", NULL, 0);
	if (!acpi.have_fadt)
		acpi_error("no-fadt", NULL, 0);
	else if (!acpi.have_s5 && !(acpi.fadt_flags & FADT_FLAG_HW_REDUCED))
		acpi_error("no-s5", NULL, acpi.dsdt);
	gas_describe(&acpi.pm1a_cnt, pm1, sizeof(pm1));
	gas_describe(&acpi.reset_reg, rst, sizeof(rst));
	kprintf("berth-info acpi rsdp=0x%lx rev=%d cpus=%u lapic=0x%lx ioapic=0x%lx pm1a_cnt=%s "
		"reset=%s/0x%x "
		"hw_reduced=%d s5=%d slp_typa=%u mcfg=0x%lx errors=%d\n",
		acpi.rsdp, acpi.revision, acpi.ncpus, acpi.lapic_addr, acpi.ioapic_addr, pm1, rst,
		acpi.reset_value, !!(acpi.fadt_flags & FADT_FLAG_HW_REDUCED), acpi.have_s5,
		acpi.slp_typa, acpi.mcfg_base, acpi.errors);
}

static uint32_t gas_width(const struct gas *g)
{
	if (g->access_size >= 1 && g->access_size <= 3)
		return 8u << (g->access_size - 1);
	return g->bit_width == 32 ? 32 : g->bit_width == 16 ? 16 : 8;
}

static uint32_t gas_read(const struct gas *g)
{
	uint32_t w = gas_width(g);

	if (g->space == 1)
		return w == 32 ? inl(g->address) : w == 16 ? inw(g->address) : inb(g->address);
	if (g->space == 0)
		return w == 32	 ? *(volatile uint32_t *)g->address
		       : w == 16 ? *(volatile uint16_t *)g->address
				 : *(volatile uint8_t *)g->address;
	return 0;
}

static int gas_write(const struct gas *g, uint32_t v)
{
	uint32_t w = gas_width(g);

	if (!g->address)
		return -1;
	if (g->space == 1) {
		if (w == 32)
			outl(g->address, v);
		else if (w == 16)
			outw(g->address, v);
		else
			outb(g->address, v);
		return 0;
	}
	if (g->space == 0) {
		if (w == 32)
			*(volatile uint32_t *)g->address = v;
		else if (w == 16)
			*(volatile uint16_t *)g->address = v;
		else
			*(volatile uint8_t *)g->address = v;
		return 0;
	}
	return -1;
}

void acpi_poweroff(void)
{
	if (acpi.have_fadt && (acpi.fadt_flags & FADT_FLAG_HW_REDUCED)) {
		gas_write(&acpi.sleep_ctl, ((acpi.slp_typa & 7) << 2) | (1u << 5));
	} else if (acpi.have_s5 && acpi.pm1a_cnt.address) {
		uint32_t v = gas_read(&acpi.pm1a_cnt) & ~(7u << 10);

		if (acpi.pm1b_cnt.address) {
			uint32_t b = gas_read(&acpi.pm1b_cnt) & ~(7u << 10);

			gas_write(&acpi.pm1b_cnt, b | ((acpi.slp_typb & 7u) << 10) | (1u << 13));
		}
		gas_write(&acpi.pm1a_cnt, v | ((acpi.slp_typa & 7u) << 10) | (1u << 13));
	}
	if (tsc_khz)
		udelay(100000);
	kprintf("berth-guest: poweroff failed\n");
	halt_forever();
}

int acpi_reset(void)
{
	if (!acpi.have_fadt || !acpi.reset_reg.address)
		return -1;
	return gas_write(&acpi.reset_reg, acpi.reset_value);
}
