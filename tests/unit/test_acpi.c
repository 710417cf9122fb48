/* Unit tests for vmm/acpi and vmm/aml: table layout, checksums, cross-links, MADT/FADT/MCFG/DSDT
 * contents. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/acpi.h"
#include "vmm/aml.h"
#include "vmm/layout.h"

#define BASE 0xE0000ULL
#define CAP (128 * 1024)

static uint8_t buf[CAP];

/* Host pointer of a guest-physical address inside the built tables. */
static const uint8_t *at(uint64_t gpa)
{
	assert_true(gpa >= BASE && gpa < BASE + CAP);
	return buf + (gpa - BASE);
}

static struct acpi_params params(unsigned ncpus, unsigned com1, unsigned com2)
{
	return (struct acpi_params){.ncpus = ncpus,
				    .ecam_base = PCI_ECAM_BASE,
				    .ecam_end_bus = 255,
				    .com1_irq = com1,
				    .com2_irq = com2};
}

static void build(const struct acpi_params *p, struct acpi_layout *out)
{
	memset(buf, 0xee, sizeof(buf));
	int r = acpi_build(buf, sizeof(buf), BASE, p, out);
	if (r)
		fail_msg("acpi_build(ncpus=%u) = %d", p->ncpus, r);
	assert_true(out->size > 0 && out->size <= CAP);
}

/* Check a System Description Table header at gpa; returns its length. */
static uint32_t check_table(const struct acpi_layout *l, uint64_t gpa, const char *sig)
{
	const uint8_t *t = at(gpa);
	if (memcmp(t, sig, 4))
		fail_msg("table at 0x%llx is '%.4s', want '%s'", (unsigned long long)gpa, t, sig);
	uint32_t len = (uint32_t)le_rd(t + 4, 4);
	assert_true(len >= 36);
	assert_true(gpa + len <= BASE + l->size);
	if (acpi_checksum(t, len) != 0)
		fail_msg("%s checksum: sum is 0x%02x", sig, acpi_checksum(t, len));
	assert_memory_equal(t + 10, "BERTH ", 6);
	assert_memory_equal(t + 16, "BERTHVMM", 8);
	assert_int_equal(gpa % 4, 0);
	return len;
}

/* The whole structure for one configuration. */
static void check_all(unsigned ncpus, unsigned com1, unsigned com2)
{
	struct acpi_params p = params(ncpus, com1, com2);
	struct acpi_layout l;
	build(&p, &l);

	/* RSDP: first, 16-byte aligned, both checksums, links. */
	assert_int_equal(l.rsdp, BASE);
	const uint8_t *r = at(l.rsdp);
	assert_memory_equal(r, "RSD PTR ", 8);
	assert_int_equal(acpi_checksum(r, 20), 0);
	assert_int_equal(acpi_checksum(r, 36), 0);
	assert_int_equal(r[15], 2);
	assert_int_equal(le_rd(r + 16, 4), l.rsdt);
	assert_int_equal(le_rd(r + 20, 4), 36);
	assert_int_equal(le_rd(r + 24, 8), l.xsdt);

	/* RSDT and XSDT list FADT, MADT and MCFG. */
	static const char *const sigs[] = {"FACP", "APIC", "MCFG"};
	const uint64_t addrs[] = {l.fadt, l.madt, l.mcfg};
	uint32_t rlen = check_table(&l, l.rsdt, "RSDT");
	uint32_t xlen = check_table(&l, l.xsdt, "XSDT");
	assert_int_equal(rlen, 36 + 4 * 3);
	assert_int_equal(xlen, 36 + 8 * 3);
	for (int i = 0; i < 3; i++) {
		uint64_t r32 = le_rd(at(l.rsdt) + 36 + 4 * i, 4);
		uint64_t x64 = le_rd(at(l.xsdt) + 36 + 8 * i, 8);
		assert_int_equal(r32, addrs[i]);
		assert_int_equal(x64, addrs[i]);
		assert_memory_equal(at(x64), sigs[i], 4);
		check_table(&l, x64, sigs[i]);
	}

	/* FADT. */
	const uint8_t *f = at(l.fadt);
	assert_int_equal(check_table(&l, l.fadt, "FACP"), 276);
	assert_int_equal(f[8], 6);
	/*
	 * FACS: exactly one of FIRMWARE_CTRL / X_FIRMWARE_CTRL is set (ACPI 6: if FIRMWARE_CTRL is
	 * non-zero, X_FIRMWARE_CTRL must be zero). DSDT: both fields point at it.
	 */
	uint64_t fw32 = le_rd(f + 36, 4), fw64 = le_rd(f + 132, 8);
	assert_true((fw32 == 0) != (fw64 == 0));
	assert_int_equal(fw32 ? fw32 : fw64, l.facs);
	assert_int_equal(le_rd(f + 40, 4), l.dsdt);
	assert_int_equal(le_rd(f + 140, 8), l.dsdt);
	assert_int_equal(le_rd(f + 46, 2), ACPI_SCI_IRQ);
	assert_int_equal(le_rd(f + 56, 4), 0x600);
	assert_int_equal(le_rd(f + 64, 4), 0x604);
	assert_int_equal(f[88], 4);
	assert_int_equal(f[89], 2);
	assert_true(le_rd(f + 112, 4) & (1u << 10)); /* RESET_REG_SUP */
	/* RESET_REG: SystemIO, 8 bits at 0xCF9, value 6. */
	assert_int_equal(f[116], 1);
	assert_int_equal(f[117], 8);
	assert_int_equal(le_rd(f + 120, 8), 0xcf9);
	assert_int_equal(f[128], 6);
	/* X_PM1a_EVT_BLK / X_PM1a_CNT_BLK */
	assert_int_equal(f[148], 1);
	assert_int_equal(f[149], 32);
	assert_int_equal(le_rd(f + 152, 8), 0x600);
	assert_int_equal(f[172], 1);
	assert_int_equal(f[173], 16);
	assert_int_equal(le_rd(f + 176, 8), 0x604);

	/* FACS (no checksum; 64-byte aligned). */
	const uint8_t *facs = at(l.facs);
	assert_memory_equal(facs, "FACS", 4);
	assert_int_equal(le_rd(facs + 4, 4), 64);
	assert_int_equal(l.facs % 64, 0);

	/* DSDT. */
	uint32_t dlen = check_table(&l, l.dsdt, "DSDT");
	const uint8_t *d = at(l.dsdt);
	static const uint8_t s5[] = {0x08, '_',	 'S',  '5',  '_',  0x12, 0x08,
				     0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00};
	assert_int_equal(mem_find(d + 36, dlen - 36, s5, sizeof(s5)), 0);
	/* Then Scope(\_SB_) whose PkgLength reaches exactly the end of the table. */
	const uint8_t *sc = d + 36 + sizeof(s5);
	assert_int_equal(sc[0], 0x10);
	unsigned follow = sc[1] >> 6;
	uint64_t plen = follow ? (sc[1] & 0xf) : (sc[1] & 0x3f);
	for (unsigned i = 0; i < follow; i++)
		plen |= (uint64_t)sc[2 + i] << (4 + 8 * i);
	assert_int_equal((sc + 1 + plen) - d, dlen);
	assert_memory_equal(sc + 2 + follow, "\\_SB_", 5);

	static const uint8_t eisa_pnp0501[] = {0x0c, 0x41, 0xd0, 0x05, 0x01};
	static const uint8_t io1[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08};
	static const uint8_t io2[] = {0x47, 0x01, 0xf8, 0x02, 0xf8, 0x02, 0x01, 0x08};
	int ncom = (com1 != 0) + (com2 != 0);
	long hid = mem_find(d, dlen, eisa_pnp0501, sizeof(eisa_pnp0501));
	assert_int_equal(hid >= 0, ncom > 0);
	if (ncom == 2) /* a second _HID follows the first */
		assert_true(mem_find(d + hid + 5, dlen - (size_t)hid - 5, eisa_pnp0501, 5) >= 0);
	assert_int_equal(mem_find(d, dlen, "COM1", 4) >= 0, com1 != 0);
	assert_int_equal(mem_find(d, dlen, "COM2", 4) >= 0, com2 != 0);
	assert_int_equal(mem_find(d, dlen, io1, sizeof(io1)) >= 0, com1 != 0);
	assert_int_equal(mem_find(d, dlen, io2, sizeof(io2)) >= 0, com2 != 0);
	if (com1) {
		const uint8_t irq[] = {0x22, (uint8_t)(1u << com1), (uint8_t)((1u << com1) >> 8)};
		assert_true(mem_find(d, dlen, irq, 3) >= 0);
		/* Device(COM1): ExtOpPrefix DeviceOp. */
		long dev = mem_find(d, dlen, "COM1", 4);
		assert_true(dev >= 3);
		assert_true((d[dev - 3] == 0x5b && d[dev - 2] == 0x82) ||
			    (dev >= 4 && d[dev - 4] == 0x5b && d[dev - 3] == 0x82));
	}

	/* MADT: N enabled LAPICs with IDs 0..N-1, one IOAPIC, ISOs for IRQ0 and the SCI, NMI. */
	uint32_t mlen = check_table(&l, l.madt, "APIC");
	const uint8_t *m = at(l.madt);
	assert_int_equal(le_rd(m + 36, 4), LAPIC_BASE);
	assert_int_equal(le_rd(m + 40, 4) & 1, 1);
	unsigned nlapic = 0, nioapic = 0, nnmi = 0, iso0 = 0, iso9 = 0;
	uint32_t off = 44;
	while (off < mlen) {
		const uint8_t *e = m + off;
		assert_true(e[1] >= 2 && off + e[1] <= mlen);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[2], nlapic); /* processor UID */
			assert_int_equal(e[3], nlapic); /* APIC ID */
			assert_int_equal(le_rd(e + 4, 4) & 1, 1);
			nlapic++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(le_rd(e + 4, 4), IOAPIC_BASE);
			assert_int_equal(le_rd(e + 8, 4), 0);
			nioapic++;
			break;
		case 2:
			assert_int_equal(e[1], 10);
			assert_int_equal(e[2], 0);
			if (e[3] == 0) {
				assert_int_equal(le_rd(e + 4, 4), 2);
				iso0++;
			} else if (e[3] == ACPI_SCI_IRQ) {
				assert_int_equal(le_rd(e + 4, 4), ACPI_SCI_IRQ);
				assert_int_equal(le_rd(e + 8, 2), 0x000d); /* level, active high */
				iso9++;
			} else {
				fail_msg("unexpected ISO for IRQ %u", e[3]);
			}
			break;
		case 4:
			assert_int_equal(e[1], 6);
			assert_int_equal(e[2], 0xff);
			assert_int_equal(e[5], 1);
			nnmi++;
			break;
		default:
			fail_msg("unexpected MADT entry type %u", e[0]);
		}
		off += e[1];
	}
	assert_int_equal(off, mlen);
	assert_int_equal(nlapic, ncpus);
	assert_int_equal(nioapic, 1);
	assert_int_equal(iso0, 1);
	assert_int_equal(iso9, 1);
	assert_int_equal(nnmi, 1);

	/* MCFG. */
	const uint8_t *mc = at(l.mcfg);
	assert_int_equal(check_table(&l, l.mcfg, "MCFG"), 60);
	assert_int_equal(le_rd(mc + 44, 8), 0xE0000000ULL);
	assert_int_equal(le_rd(mc + 52, 2), 0);
	assert_int_equal(mc[54], 0);
	assert_int_equal(mc[55], 255);

	/* No two structures overlap. */
	const struct {
		uint64_t a, len;
	} spans[] = {
	    {l.rsdp, 36},   {l.facs, 64}, {l.dsdt, dlen}, {l.fadt, 276},
	    {l.madt, mlen}, {l.mcfg, 60}, {l.rsdt, rlen}, {l.xsdt, xlen},
	};
	for (size_t i = 0; i < ARRAY_SIZE(spans); i++)
		for (size_t j = i + 1; j < ARRAY_SIZE(spans); j++)
			assert_true(spans[i].a + spans[i].len <= spans[j].a ||
				    spans[j].a + spans[j].len <= spans[i].a);
}

static void test_build_1cpu(void **state)
{
	(void)state;
	check_all(1, 4, 0);
}

static void test_build_2cpu(void **state)
{
	(void)state;
	check_all(2, 4, 3);
}

static void test_build_8cpu(void **state)
{
	(void)state;
	check_all(8, 0, 0);
	check_all(8, 4, 0);
}

static void test_build_254cpu(void **state)
{
	(void)state;
	check_all(254, 4, 3);
	/* Everything fits in the BIOS area. */
	struct acpi_params p = params(254, 4, 3);
	struct acpi_layout l;
	build(&p, &l);
	assert_true(BASE + l.size <= BIOS_AREA_END);
}

static void test_com1_absent(void **state)
{
	(void)state;
	struct acpi_params p = params(1, 0, 0);
	struct acpi_layout l;
	build(&p, &l);
	const uint8_t *d = at(l.dsdt);
	uint32_t dlen = (uint32_t)le_rd(d + 4, 4);
	static const uint8_t eisa[] = {0x41, 0xd0, 0x05, 0x01};
	assert_int_equal(mem_find(d, dlen, eisa, 4), -1);
	assert_int_equal(mem_find(d, dlen, "_HID", 4), -1);
	assert_int_equal(mem_find(d, dlen, "_CRS", 4), -1);
	/* Just \_S5 and an empty \_SB scope. */
	assert_int_equal(dlen, 36 + 14 + 1 + 1 + 5);
}

static void test_bad_cpu_counts(void **state)
{
	(void)state;
	struct acpi_layout l;
	struct acpi_params p = params(0, 4, 0);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &p, &l), -EINVAL);
	p.ncpus = 1025;
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &p, &l), -EINVAL);
	p.ncpus = 100000;
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &p, &l), -EINVAL);
}

/* From APIC ID 255 on, processors are Local x2APIC entries (type 9) plus one x2APIC NMI entry. */
static void test_build_x2apic(void **state)
{
	(void)state;
	struct acpi_layout l;
	struct acpi_params p = params(300, 4, 3);
	assert_int_equal(acpi_build(buf, sizeof(buf), BASE, &p, &l), 0);
	const uint8_t *madt = buf + (l.madt - BASE);
	uint32_t len = (uint32_t)madt[4] | (uint32_t)madt[5] << 8 | (uint32_t)madt[6] << 16;
	assert_int_equal(acpi_checksum(madt, len), 0);
	unsigned xapic = 0, x2apic = 0, x2nmi = 0;
	for (uint32_t off = 44; off + 2 <= len && madt[off + 1]; off += madt[off + 1]) {
		if (madt[off] == 0) {
			assert_int_equal(madt[off + 3], xapic); /* APIC IDs 0..254 */
			xapic++;
		} else if (madt[off] == 9) {
			uint32_t id = (uint32_t)madt[off + 4] | (uint32_t)madt[off + 5] << 8;
			assert_int_equal(madt[off + 1], 16);
			assert_int_equal(id, 255 + x2apic);
			x2apic++;
		} else if (madt[off] == 0x0a) {
			x2nmi++;
		}
	}
	assert_int_equal(xapic, 255);
	assert_int_equal(x2apic, 45);
	assert_int_equal(x2nmi, 1);
}

static void test_enospc_every_cap(void **state)
{
	(void)state;
	static const unsigned counts[] = {1, 254};
	for (size_t k = 0; k < ARRAY_SIZE(counts); k++) {
		struct acpi_params p = params(counts[k], 4, 3);
		struct acpi_layout l;
		build(&p, &l);
		size_t need = l.size;
		/* Every smaller buffer is refused, and nothing is written past its end. */
		for (size_t cap = 0; cap < need; cap++) {
			memset(buf, 0xee, need + 64);
			int r = acpi_build(buf, cap, BASE, &p, &l);
			if (r != -ENOSPC)
				fail_msg("cap %zu of %zu: %d", cap, need, r);
			for (size_t i = cap; i < need + 64; i++)
				if (buf[i] != 0xee)
					fail_msg("cap %zu: byte %zu written", cap, i);
		}
		assert_int_equal(acpi_build(buf, need, BASE, &p, &l), 0);
		assert_int_equal(l.size, need);
	}
	struct acpi_params p = params(1, 0, 0);
	struct acpi_layout l;
	uint8_t tiny[16];
	assert_int_equal(acpi_build(tiny, sizeof(tiny), BASE, &p, &l), -ENOSPC);
}

static void test_checksum(void **state)
{
	(void)state;
	assert_int_equal(acpi_checksum("", 0), 0);
	const uint8_t a[] = {0x01, 0x02, 0xfd};
	assert_int_equal(acpi_checksum(a, 3), 0);
	const uint8_t b[] = {0xff, 0xff};
	assert_int_equal(acpi_checksum(b, 2), 0xfe);
}

/* --- AML encoders --- */

/* Emit with f into a fresh buffer and compare with the expected bytes. */
#define AML_EQUALS(call, ...)                                                                      \
	do {                                                                                       \
		uint8_t out_[64];                                                                  \
		struct aml a_;                                                                     \
		aml_init(&a_, out_, sizeof(out_));                                                 \
		call;                                                                              \
		const uint8_t want_[] = {__VA_ARGS__};                                             \
		assert_false(a_.overflow);                                                         \
		assert_int_equal(a_.len, sizeof(want_));                                           \
		assert_memory_equal(out_, want_, sizeof(want_));                                   \
	} while (0)

static void test_aml_integer(void **state)
{
	(void)state;
	AML_EQUALS(aml_integer(&a_, 0), 0x00);
	AML_EQUALS(aml_integer(&a_, 1), 0x01);
	AML_EQUALS(aml_integer(&a_, 2), 0x0a, 0x02);
	AML_EQUALS(aml_integer(&a_, 0xff), 0x0a, 0xff);
	AML_EQUALS(aml_integer(&a_, 0x100), 0x0b, 0x00, 0x01);
	AML_EQUALS(aml_integer(&a_, 0xffff), 0x0b, 0xff, 0xff);
	AML_EQUALS(aml_integer(&a_, 0x10000), 0x0c, 0x00, 0x00, 0x01, 0x00);
	AML_EQUALS(aml_integer(&a_, 0xffffffff), 0x0c, 0xff, 0xff, 0xff, 0xff);
	AML_EQUALS(aml_integer(&a_, 0x100000000ULL), 0x0e, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
		   0x00);
	AML_EQUALS(aml_integer(&a_, 0x0123456789abcdefULL), 0x0e, 0xef, 0xcd, 0xab, 0x89, 0x67,
		   0x45, 0x23, 0x01);
}

static void test_aml_names_and_eisaid(void **state)
{
	(void)state;
	AML_EQUALS(aml_namestring(&a_, "_S5_"), '_', 'S', '5', '_');
	AML_EQUALS(aml_namestring(&a_, "\\_SB_"), '\\', '_', 'S', 'B', '_');
	AML_EQUALS(aml_namestring(&a_, "AB"), 'A', 'B', '_', '_');
	AML_EQUALS(aml_eisaid(&a_, "PNP0501"), 0x0c, 0x41, 0xd0, 0x05, 0x01);
	AML_EQUALS(aml_eisaid(&a_, "PNP0A03"), 0x0c, 0x41, 0xd0, 0x0a, 0x03);
	AML_EQUALS(aml_eisaid(&a_, "PNP0c0f"), 0x0c, 0x41, 0xd0, 0x0c, 0x0f);
}

static void test_aml_package_and_name(void **state)
{
	(void)state;
	static const uint64_t s5[] = {5, 5, 0, 0};
	AML_EQUALS(aml_package_ints(&a_, s5, 4), 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00,
		   0x00);
	AML_EQUALS(aml_package_ints(&a_, s5, 0), 0x12, 0x02, 0x00);

	uint8_t vb[8];
	struct aml v;
	aml_init(&v, vb, sizeof(vb));
	aml_integer(&v, 0x3f8);
	AML_EQUALS(aml_name(&a_, "_UID", &v), 0x08, '_', 'U', 'I', 'D', 0x0b, 0xf8, 0x03);
}

static void test_aml_resources(void **state)
{
	(void)state;
	AML_EQUALS(aml_res_io(&a_, 0x3f8, 8), 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08);
	AML_EQUALS(aml_res_irq(&a_, 4), 0x22, 0x10, 0x00);
	AML_EQUALS(aml_res_irq(&a_, 12), 0x22, 0x00, 0x10);
	AML_EQUALS(aml_res_end(&a_), 0x79, 0x00);

	uint8_t rb[16];
	struct aml r;
	aml_init(&r, rb, sizeof(rb));
	aml_res_irq(&r, 3);
	aml_res_end(&r);
	/* BufferOp PkgLength(1 + 2 + 5) BufferSize(ByteConst 5) bytes */
	AML_EQUALS(aml_buffer(&a_, &r), 0x11, 0x08, 0x0a, 0x05, 0x22, 0x08, 0x00, 0x79, 0x00);
}

/* Decode a PkgLength at p; returns the value and sets *nbytes to its encoded size. */
static uint64_t pkglen_decode(const uint8_t *p, unsigned *nbytes)
{
	unsigned follow = p[0] >> 6;
	*nbytes = 1 + follow;
	if (!follow)
		return p[0] & 0x3f;
	assert_int_equal(p[0] & 0x30, 0); /* bits 5:4 reserved in multi-byte form */
	uint64_t v = p[0] & 0x0f;
	for (unsigned i = 0; i < follow; i++)
		v |= (uint64_t)p[1 + i] << (4 + 8 * i);
	return v;
}

/* Scope("ABCD") with body bytes; check the PkgLength form and that it spans exactly to the end. */
static void check_scope(size_t body_len, unsigned want_bytes)
{
	static uint8_t body_buf[70000], out[70100];
	struct aml body, a;
	aml_init(&body, body_buf, sizeof(body_buf));
	for (size_t i = 0; i < body_len; i++)
		aml_byte(&body, (uint8_t)i);
	aml_init(&a, out, sizeof(out));
	aml_scope(&a, "ABCD", &body);
	assert_false(a.overflow);
	assert_int_equal(out[0], 0x10);
	unsigned n;
	uint64_t len = pkglen_decode(out + 1, &n);
	if (n != want_bytes)
		fail_msg("body %zu: PkgLength uses %u bytes, want %u", body_len, n, want_bytes);
	/* PkgLength counts itself, the name and the body. */
	assert_int_equal(len, n + 4 + body_len);
	assert_int_equal(1 + len, a.len);
	assert_memory_equal(out + 1 + n, "ABCD", 4);
	assert_memory_equal(out + 1 + n + 4, body_buf, body_len);
}

static void test_aml_pkglength_forms(void **state)
{
	(void)state;
	check_scope(0, 1);
	check_scope(10, 1);
	check_scope(58, 1); /* 1 + 4 + 58 = 63: the largest 1-byte form */
	check_scope(59, 2); /* 64 bytes: needs 2 */
	check_scope(100, 2);
	check_scope(4089, 2); /* 2 + 4 + 4089 = 4095 */
	check_scope(4090, 3);
	check_scope(65000, 3);

	/* Device() uses the two-byte opcode and the same PkgLength. */
	uint8_t bb[80], ob[100];
	struct aml body, a;
	aml_init(&body, bb, sizeof(bb));
	for (int i = 0; i < 70; i++)
		aml_byte(&body, 0xa3);
	aml_init(&a, ob, sizeof(ob));
	aml_device(&a, "COM1", &body);
	assert_false(a.overflow);
	assert_int_equal(ob[0], 0x5b);
	assert_int_equal(ob[1], 0x82);
	unsigned n;
	uint64_t len = pkglen_decode(ob + 2, &n);
	assert_int_equal(n, 2);
	assert_int_equal(len, 2 + 4 + 70);
	assert_int_equal(2 + len, a.len);
}

static void test_aml_overflow(void **state)
{
	(void)state;
	uint8_t b[4] = {0};
	struct aml a;
	aml_init(&a, b, 3);
	aml_bytes(&a, "ab", 2);
	assert_false(a.overflow);
	aml_integer(&a, 0x1234); /* 3 bytes: does not fit */
	assert_true(a.overflow);
	aml_byte(&a, 'z'); /* dropped once overflowed, even though one byte would fit */
	assert_true(a.overflow);
	assert_int_equal(b[3], 0);
	assert_memory_equal(b, "ab", 2);

	/* Overflow of a body propagates to its container. */
	uint8_t bb[2], ob[32];
	struct aml body, out;
	aml_init(&body, bb, sizeof(bb));
	aml_bytes(&body, "xyz", 3);
	assert_true(body.overflow);
	aml_init(&out, ob, sizeof(ob));
	aml_scope(&out, "_SB_", &body);
	assert_true(out.overflow);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_build_1cpu),
	    cmocka_unit_test(test_build_2cpu),
	    cmocka_unit_test(test_build_8cpu),
	    cmocka_unit_test(test_build_254cpu),
	    cmocka_unit_test(test_build_x2apic),
	    cmocka_unit_test(test_com1_absent),
	    cmocka_unit_test(test_bad_cpu_counts),
	    cmocka_unit_test(test_enospc_every_cap),
	    cmocka_unit_test(test_checksum),
	    cmocka_unit_test(test_aml_integer),
	    cmocka_unit_test(test_aml_names_and_eisaid),
	    cmocka_unit_test(test_aml_package_and_name),
	    cmocka_unit_test(test_aml_resources),
	    cmocka_unit_test(test_aml_pkglength_forms),
	    cmocka_unit_test(test_aml_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
