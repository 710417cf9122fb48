/* Builds the ACPI tables a guest needs to find CPUs, interrupt routing, PCI ECAM, COM ports and S5.
 */
#include "vmm/acpi.h"

#include <errno.h>
#include <string.h>

#include "vmm/aml.h"
#include "vmm/layout.h"
#include "vmm/pci.h"

#define OEM_ID "BERTH "
#define OEM_TABLE_ID "BERTHVMM"

uint8_t acpi_checksum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

/* The 36-byte System Description Table header; the checksum is filled by finish(). */
static void header(uint8_t *t, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put32(t + 4, len);
	t[8] = rev;
	t[9] = 0;
	memcpy(t + 10, OEM_ID, 6);
	memcpy(t + 16, OEM_TABLE_ID, 8);
	put32(t + 24, 1);
	memcpy(t + 28, "BRTH", 4);
	put32(t + 32, 1);
}

static void finish(uint8_t *t, uint32_t len)
{
	t[9] = 0;
	t[9] = (uint8_t)(0x100 - acpi_checksum(t, len));
}

/* Generic Address Structure: system I/O space. */
static void gas_io(uint8_t *p, uint16_t port, uint8_t bits)
{
	p[0] = 1; /* SystemIO */
	p[1] = bits;
	p[2] = 0;
	p[3] = bits <= 8 ? 1 : bits <= 16 ? 2 : 3; /* access size: byte/word/dword */
	put64(p + 4, port);
}

static void name_eisaid(struct aml *dev, const char *name, const char *id)
{
	uint8_t b[8];
	struct aml v;
	aml_init(&v, b, sizeof(b));
	aml_eisaid(&v, id);
	aml_name(dev, name, &v);
}

static void name_int(struct aml *dev, const char *name, uint64_t val)
{
	uint8_t b[16];
	struct aml v;
	aml_init(&v, b, sizeof(b));
	aml_integer(&v, val);
	aml_name(dev, name, &v);
}

static void name_crs(struct aml *dev, const struct aml *res)
{
	uint8_t b[256];
	struct aml v;
	aml_init(&v, b, sizeof(b));
	aml_buffer(&v, res);
	aml_name(dev, "_CRS", &v);
	dev->overflow |= v.overflow;
}

/*
 * \_SB.PCI0: the PCIe host bridge (bus 0..255 over ECAM, the 32- and 64-bit windows, CF8/CFC),
 * its INTx routing (_PRT, static GSIs), and \_SB.MRES reserving the ECAM area.
 */
static void build_pci_root(struct aml *sb, const struct acpi_params *p)
{
	uint8_t dev_buf[2048], res_buf[160], prt_buf[1024], ent_buf[32];
	struct aml dev, res, prt, ent;
	aml_init(&dev, dev_buf, sizeof(dev_buf));
	name_eisaid(&dev, "_HID", "PNP0A08");
	name_eisaid(&dev, "_CID", "PNP0A03");
	name_int(&dev, "_SEG", 0);
	name_int(&dev, "_BBN", 0);
	name_int(&dev, "_UID", 0);
	aml_init(&res, res_buf, sizeof(res_buf));
	aml_res_bus_numbers(&res, 0, p->ecam_end_bus);
	aml_res_io(&res, 0xcf8, 8);
	aml_res_mem32(&res, (uint32_t)p->mmio32_base,
		      (uint32_t)(p->mmio32_base + p->mmio32_size - 1), false);
	if (p->mmio64_size)
		aml_res_mem64(&res, p->mmio64_base, p->mmio64_base + p->mmio64_size - 1, true);
	aml_res_end(&res);
	name_crs(&dev, &res);

	/* _PRT: Package { Package { slot << 16 | 0xFFFF, pin, 0 (no link), GSI }, ... } */
	aml_init(&prt, prt_buf, sizeof(prt_buf));
	unsigned n = 0;
	for (unsigned slot = 1; slot < 32; slot++) {
		const uint64_t e[4] = {(uint64_t)slot << 16 | 0xffff, 0, 0,
				       p->intx_gsi_base + slot % 4};
		aml_init(&ent, ent_buf, sizeof(ent_buf));
		aml_package_ints(&prt, e, 4);
		n++;
	}
	uint8_t pkg_buf[1100];
	struct aml pkg;
	aml_init(&pkg, pkg_buf, sizeof(pkg_buf));
	aml_package(&pkg, n, &prt);
	aml_name(&dev, "_PRT", &pkg);
	dev.overflow |= pkg.overflow;
	aml_device(sb, "PCI0", &dev);

	aml_init(&dev, dev_buf, sizeof(dev_buf));
	name_eisaid(&dev, "_HID", "PNP0C02");
	name_int(&dev, "_UID", 1);
	aml_init(&res, res_buf, sizeof(res_buf));
	aml_res_mem32_fixed(&res, (uint32_t)p->ecam_base, (uint32_t)(p->ecam_end_bus + 1) << 20);
	aml_res_end(&res);
	name_crs(&dev, &res);
	aml_device(sb, "MRES", &dev);
}

static size_t build_dsdt(uint8_t *t, size_t cap, const struct acpi_params *p)
{
	uint8_t body_buf[4096], sb_buf[3584];
	struct aml dsdt, sb;
	aml_init(&dsdt, body_buf, sizeof(body_buf));
	aml_init(&sb, sb_buf, sizeof(sb_buf));

	/* \_S5: SLP_TYPa, SLP_TYPb for soft-off through PM1a_CNT. */
	uint8_t pkg_buf[32];
	struct aml pkg;
	aml_init(&pkg, pkg_buf, sizeof(pkg_buf));
	const uint64_t s5[] = {ACPI_SLP_TYP_S5, ACPI_SLP_TYP_S5, 0, 0};
	aml_package_ints(&pkg, s5, 4);
	aml_name(&dsdt, "_S5_", &pkg);

	/* COM ports as PNP0501 devices with their resources. */
	static const struct {
		const char *name;
		uint16_t port;
	} com[] = {{"COM1", 0x3f8}, {"COM2", 0x2f8}};
	for (unsigned i = 0; i < 2; i++) {
		unsigned irq = i == 0 ? p->com1_irq : p->com2_irq;
		if (!irq)
			continue;
		uint8_t dev_buf[160], val_buf[64], res_buf[32];
		struct aml dev, val, res;
		aml_init(&dev, dev_buf, sizeof(dev_buf));
		aml_init(&val, val_buf, sizeof(val_buf));
		aml_eisaid(&val, "PNP0501");
		aml_name(&dev, "_HID", &val);
		aml_init(&val, val_buf, sizeof(val_buf));
		aml_integer(&val, i + 1);
		aml_name(&dev, "_UID", &val);
		aml_init(&res, res_buf, sizeof(res_buf));
		aml_res_io(&res, com[i].port, 8);
		aml_res_irq(&res, irq);
		aml_res_end(&res);
		aml_init(&val, val_buf, sizeof(val_buf));
		aml_buffer(&val, &res);
		aml_name(&dev, "_CRS", &val);
		aml_device(&sb, com[i].name, &dev);
	}
	if (p->intx_gsi_base)
		build_pci_root(&sb, p);
	aml_scope(&dsdt, "\\_SB_", &sb);
	if (dsdt.overflow || 36 + dsdt.len > cap)
		return 0;
	uint32_t len = (uint32_t)(36 + dsdt.len);
	header(t, "DSDT", len, 2);
	memcpy(t + 36, dsdt.buf, dsdt.len);
	finish(t, len);
	return len;
}

static size_t build_fadt(uint8_t *t, uint64_t facs, uint64_t dsdt)
{
	const uint32_t len = 276;
	memset(t, 0, len);
	header(t, "FACP", len, 6);
	put32(t + 36, (uint32_t)facs);
	put32(t + 40, (uint32_t)dsdt);
	t[45] = 0; /* preferred PM profile: unspecified */
	put16(t + 46, ACPI_SCI_IRQ);
	put32(t + 48, 0); /* SMI_CMD 0: ACPI mode is always on (SCI_EN reads 1) */
	put32(t + 56, ACPI_PM1A_EVT_PORT);
	put32(t + 64, ACPI_PM1A_CNT_PORT);
	t[88] = 4;			   /* PM1_EVT_LEN */
	t[89] = 2;			   /* PM1_CNT_LEN */
	put16(t + 96, 101);		   /* P_LVL2_LAT > 100: no C2 */
	put16(t + 98, 1001);		   /* P_LVL3_LAT > 1000: no C3 */
	put16(t + 109, 1u << 2 | 1u << 5); /* IAPC_BOOT_ARCH: no VGA, no CMOS RTC; no 8042 */
	/* PWR_BUTTON (bit 4) clear: the power button is fixed hardware, PWRBTN_STS/EN in PM1. */
	uint32_t flags = 1u << 0	   /* WBINVD works */
			 | 1u << 2	   /* C1 supported */
			 | 1u << 5	   /* no fixed sleep button */
			 | 1u << 10;	   /* RESET_REG supported */
	put32(t + 112, flags);
	gas_io(t + 116, ACPI_RESET_PORT, 8);
	t[128] = ACPI_RESET_VALUE;
	t[131] = 0; /* FADT minor version */
	/* X_FIRMWARE_CTRL stays 0: one FACS pointer, or Linux installs the FACS twice. */
	put64(t + 140, dsdt);
	gas_io(t + 148, ACPI_PM1A_EVT_PORT, 32);
	gas_io(t + 172, ACPI_PM1A_CNT_PORT, 16);
	memcpy(t + 268, "BERTHVMM", 8); /* hypervisor vendor identity */
	finish(t, len);
	return len;
}

/* APIC IDs below this get xAPIC entries; 255 is the xAPIC broadcast ID, so x2APIC from there on. */
#define XAPIC_ID_LIMIT 255

static size_t build_madt(uint8_t *t, size_t cap, const struct acpi_params *p)
{
	unsigned nx = p->ncpus < XAPIC_ID_LIMIT ? p->ncpus : XAPIC_ID_LIMIT;
	unsigned n2 = p->ncpus - nx;
	size_t len = 44 + 8 * (size_t)nx + 16 * (size_t)n2 + 12 + 10 * 2 + 6 + (n2 ? 12 : 0);
	if (len > cap)
		return 0;
	memset(t, 0, len);
	header(t, "APIC", (uint32_t)len, 5);
	put32(t + 36, (uint32_t)LAPIC_BASE);
	put32(t + 40, 1); /* PCAT_COMPAT: there are 8259s (masked by the OS) */
	uint8_t *e = t + 44;
	for (unsigned i = 0; i < nx; i++, e += 8) {
		e[0] = 0; /* Processor Local APIC */
		e[1] = 8;
		e[2] = (uint8_t)i; /* ACPI processor UID */
		e[3] = (uint8_t)i; /* APIC ID */
		put32(e + 4, 1);   /* enabled */
	}
	for (unsigned i = nx; i < p->ncpus; i++, e += 16) {
		e[0] = 9; /* Processor Local x2APIC */
		e[1] = 16;
		put32(e + 4, i);  /* x2APIC ID */
		put32(e + 8, 1);  /* enabled */
		put32(e + 12, i); /* ACPI processor UID */
	}
	e[0] = 1; /* I/O APIC */
	e[1] = 12;
	e[2] = 0; /* I/O APIC ID */
	put32(e + 4, (uint32_t)IOAPIC_BASE);
	put32(e + 8, 0); /* GSI base */
	e += 12;
	/* ISA IRQ 0 (PIT) is on IOAPIC pin 2; the SCI is level-triggered, active high. */
	e[0] = 2, e[1] = 10, e[2] = 0, e[3] = 0, put32(e + 4, 2), put16(e + 8, 0);
	e += 10;
	e[0] = 2, e[1] = 10, e[2] = 0, e[3] = ACPI_SCI_IRQ, put32(e + 4, ACPI_SCI_IRQ),
	put16(e + 8, 0x000d);
	e += 10;
	e[0] = 4; /* Local APIC NMI: all processors, LINT1 */
	e[1] = 6;
	e[2] = 0xff;
	put16(e + 3, 0);
	e[5] = 1;
	e += 6;
	if (n2) {
		e[0] = 0x0a; /* Local x2APIC NMI: all processors, LINT1 */
		e[1] = 12;
		put16(e + 2, 0);
		put32(e + 4, 0xffffffffu);
		e[8] = 1;
	}
	finish(t, (uint32_t)len);
	return len;
}

static size_t build_mcfg(uint8_t *t, const struct acpi_params *p)
{
	const uint32_t len = 60;
	memset(t, 0, len);
	header(t, "MCFG", len, 1);
	put64(t + 44, p->ecam_base);
	put16(t + 52, 0); /* segment */
	t[54] = 0;	  /* start bus */
	t[55] = p->ecam_end_bus;
	finish(t, len);
	return len;
}

/* RSDT (4-byte entries) or XSDT (8-byte entries) listing the tables. */
static size_t build_sdt(uint8_t *t, const char *sig, const uint64_t *tables, unsigned n,
			unsigned entry_size)
{
	uint32_t len = 36 + entry_size * n;
	header(t, sig, len, 1);
	for (unsigned i = 0; i < n; i++) {
		if (entry_size == 4)
			put32(t + 36 + 4 * i, (uint32_t)tables[i]);
		else
			put64(t + 36 + 8 * i, tables[i]);
	}
	finish(t, len);
	return len;
}

void acpi_vm_params(struct acpi_params *p, const struct mem_layout *l, unsigned ncpus, bool com1,
		    bool com2)
{
	*p = (struct acpi_params){
	    .ncpus = ncpus,
	    .ecam_base = PCI_ECAM_BASE,
	    .ecam_end_bus = (uint8_t)((PCI_ECAM_SIZE >> 20) - 1),
	    .com1_irq = com1 ? 4 : 0,
	    .com2_irq = com2 ? 3 : 0,
	    .mmio32_base = PCI_MMIO32_BASE,
	    .mmio32_size = PCI_MMIO32_SIZE,
	    .mmio64_base = layout_mmio64_base(l),
	    .mmio64_size = PCI_MMIO64_SIZE,
	    .intx_gsi_base = PCI_INTX_GSI_BASE,
	};
}

int acpi_build(uint8_t *buf, size_t cap, uint64_t base, const struct acpi_params *p,
	       struct acpi_layout *out)
{
	if (p->ncpus == 0 || p->ncpus > ACPI_MAX_CPUS)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	size_t off = 0;
	size_t n;
#define PLACE(align, need)                                                                         \
	do {                                                                                       \
		off = (off + (align)-1) & ~(size_t)((align)-1);                                    \
		if (off + (need) > cap)                                                            \
			return -ENOSPC;                                                            \
	} while (0)

	/* RSDP first, so a legacy scan of 0xE0000.. finds it on a 16-byte boundary. */
	PLACE(16, 36);
	size_t rsdp_off = off;
	off += 36;

	PLACE(64, 64);
	size_t facs_off = off;
	memset(buf + off, 0, 64);
	memcpy(buf + off, "FACS", 4);
	put32(buf + off + 4, 64);
	buf[off + 32] = 2; /* version */
	off += 64;

	PLACE(8, 36);
	size_t dsdt_off = off;
	if (!(n = build_dsdt(buf + off, cap - off, p)))
		return -ENOSPC;
	off += n;

	PLACE(8, 276);
	size_t fadt_off = off;
	off += build_fadt(buf + off, base + facs_off, base + dsdt_off);

	PLACE(8, 44);
	size_t madt_off = off;
	if (!(n = build_madt(buf + off, cap - off, p)))
		return -ENOSPC;
	off += n;

	PLACE(8, 60);
	size_t mcfg_off = off;
	off += build_mcfg(buf + off, p);

	const uint64_t tables[] = {base + fadt_off, base + madt_off, base + mcfg_off};
	const unsigned nt = sizeof(tables) / sizeof(tables[0]);

	PLACE(8, 36 + 4 * nt);
	size_t rsdt_off = off;
	off += build_sdt(buf + off, "RSDT", tables, nt, 4);

	PLACE(8, 36 + 8 * nt);
	size_t xsdt_off = off;
	off += build_sdt(buf + off, "XSDT", tables, nt, 8);
#undef PLACE

	uint8_t *r = buf + rsdp_off;
	memset(r, 0, 36);
	memcpy(r, "RSD PTR ", 8);
	memcpy(r + 9, OEM_ID, 6);
	r[15] = 2; /* revision: ACPI 2.0+ (XSDT) */
	put32(r + 16, (uint32_t)(base + rsdt_off));
	put32(r + 20, 36);
	put64(r + 24, base + xsdt_off);
	r[8] = (uint8_t)(0x100 - acpi_checksum(r, 20));
	r[32] = (uint8_t)(0x100 - acpi_checksum(r, 36));

	out->rsdp = base + rsdp_off;
	out->rsdt = base + rsdt_off;
	out->xsdt = base + xsdt_off;
	out->fadt = base + fadt_off;
	out->facs = base + facs_off;
	out->dsdt = base + dsdt_off;
	out->madt = base + madt_off;
	out->mcfg = base + mcfg_off;
	out->size = off;
	return 0;
}
