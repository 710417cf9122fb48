/* Unit tests for PCI config space: CF8/CFC and ECAM paths, read-only fields, capabilities, odd
 * accesses. */
#include "pci_fixture.h"

static void test_host_bridge(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(rd(f, 0, 0, PCI_VENDOR_ID, 2), 0x1b36);
	assert_int_equal(rd(f, 0, 0, PCI_DEVICE_ID, 2), 0x0008);
	assert_int_equal(rd(f, 0, 0, 0, 4), 0x00081b36);
	assert_int_equal(rd(f, 0, 0, PCI_REVISION, 4) >> 8, 0x060000);
	assert_int_equal(rd(f, 0, 0, 0x0b, 1), 0x06);
	assert_int_equal(rd(f, 0, 0, 0x0a, 1), 0x00);
	assert_int_equal(rd(f, 0, 0, PCI_HEADER_TYPE, 1), 0x00); /* type 0, single function */
	/* Every byte/word/dword of the header agrees between the paths. */
	for (unsigned reg = 0; reg < 0x40; reg++) {
		rd(f, 0, 0, reg, 1);
		if (!(reg & 1))
			rd(f, 0, 0, reg, 2);
		if (!(reg & 3))
			rd(f, 0, 0, reg, 4);
	}
	/* No capabilities, no BARs. */
	assert_int_equal(rd(f, 0, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	assert_int_equal(rd(f, 0, 0, PCI_CAP_PTR, 1), 0);
	for (unsigned b = 0; b < PCI_NUM_BARS; b++)
		assert_int_equal(rd(f, 0, 0, PCI_BAR0 + 4 * b, 4), 0);
	/* ECAM 8-byte reads are two dwords. */
	assert_int_equal(ecam_read(f, 0, 0, 0, 8), 0x00081b36);
	assert_int_equal(ecam_read(f, 0, 0, PCI_REVISION, 8), 0x06000000);
	/* CF8 has 8 register bits: extended config space is ECAM only. */
	assert_int_equal(pio_read(f, 0, 0, 0x100, 4), 0x00081b36);
}

static void test_absent(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	static const uint32_t ones[] = {0, 0xff, 0xffff, 0, 0xffffffff};
	/* Empty slots, functions 1..7 of present slots, other buses. */
	for (unsigned slot = 3; slot < PCI_MAX_SLOTS; slot++)
		for (unsigned size = 1; size <= 4; size *= 2)
			assert_int_equal(rd(f, 0, DEVFN(slot), 0, size), ones[size]);
	for (unsigned slot = 0; slot < 3; slot++)
		for (unsigned fn = 1; fn < 8; fn++)
			assert_int_equal(rd(f, 0, DEVFN(slot) | fn, 0, 4), 0xffffffff);
	static const unsigned buses[] = {1, 2, 128, 255};
	for (size_t i = 0; i < ARRAY_SIZE(buses); i++) {
		assert_int_equal(rd(f, buses[i], 0, 0, 4), 0xffffffff);
		assert_int_equal(rd(f, buses[i], DEVFN(1), 2, 2), 0xffff);
		assert_int_equal(rd(f, buses[i], DEVFN(2), 0x3d, 1), 0xff);
		assert_int_equal(ecam_read(f, buses[i], 0, 0, 8), UINT64_MAX);
	}
	assert_int_equal(ecam_read(f, 0, DEVFN(9), 0x100, 8), UINT64_MAX);
	/* Writes to absent functions go nowhere (and do not reach a device by aliasing). */
	wr(f, false, DEVFN(1) | 1, PCI_COMMAND, 2, 0);
	wr(f, true, DEVFN(1) | 1, PCI_COMMAND, 2, 0);
	ecam_write(f, 1, DEVFN(1), PCI_COMMAND, 2, 0);
	pio_write(f, 1, DEVFN(1), PCI_COMMAND, 2, 0);
	assert_true(rd(f, 0, DEVFN(1), PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	assert_int_equal(f->nmoves, 0);
}

static void test_cf8(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* The latch reads back as written (dword). */
	cf8_set(f, 0x80000000);
	uint64_t v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	cf8_set(f, cf8_addr(0, DEVFN(1), 0));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000800);
	/* Enable bit clear: CFC reads all-ones at every size, writes are dropped. */
	cf8_set(f, 0x00000800);
	for (unsigned size = 1; size <= 4; size *= 2) {
		v = 0;
		assert_true(bus_access(&f->pio, 0xcfc, size, false, &v));
		assert_int_equal(v, size == 4 ? 0xffffffff : (1u << (8 * size)) - 1);
	}
	cf8_set(f, 0x00000804);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcfc, 2, true, &v));
	assert_true(rd(f, 0, DEVFN(1), PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	/* The low two bits of the latch do not select a byte: CFC+n does. */
	cf8_set(f, cf8_addr(0, DEVFN(1), 0) | 3);
	assert_true(bus_access(&f->pio, 0xcfc, 4, false, &v));
	assert_int_equal(v, 0x10411af4);
	assert_true(bus_access(&f->pio, 0xcfd, 1, false, &v));
	assert_int_equal(v, 0x1a);
	assert_true(bus_access(&f->pio, 0xcfe, 2, false, &v));
	assert_int_equal(v, 0x1041);
	assert_true(bus_access(&f->pio, 0xcff, 1, false, &v));
	assert_int_equal(v, 0x10);

	/* 0xCF9 (reset control) and 0xCFA/0xCFB are not the PCI handler's: nothing else is on this
	 * PIO bus, so they are unclaimed, and a byte write there leaves the latch alone. */
	cf8_set(f, 0x80000000);
	unsigned long long unhandled = f->pio.unhandled;
	for (uint64_t port = 0xcf9; port <= 0xcfb; port++) {
		v = 0x06;
		assert_false(bus_access(&f->pio, port, 1, true, &v));
		assert_false(bus_access(&f->pio, port, 1, false, &v));
		assert_int_equal(v, 0xff);
	}
	assert_int_equal(f->pio.unhandled, unhandled + 6);
	struct bus_range r;
	assert_false(bus_find(&f->pio, 0xcf9, &r));
	assert_true(bus_find(&f->pio, 0xcf8, &r));
	assert_int_equal(r.len, 1);
	assert_true(bus_find(&f->pio, 0xcfc, &r));
	assert_int_equal(r.len, 4);
	assert_false(bus_find(&f->pio, 0xd00, &r));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	/* Byte and word writes to 0xCF8 itself do not change the latch either. */
	v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 1, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 2, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	/* Accesses at CFC that would run past CFF read all-ones and write nothing. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 2, 0x0406);
	cf8_set(f, cf8_addr(0, DEVFN(1), PCI_COMMAND));
	assert_true(bus_access(&f->pio, 0xcfe, 4, false, &v));
	assert_int_equal(v, 0xffffffff);
	assert_true(bus_access(&f->pio, 0xcff, 2, false, &v));
	assert_int_equal(v, 0xffff);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcfd, 4, true, &v));
	assert_true(bus_access(&f->pio, 0xcff, 2, true, &v));
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 4), 0x00100406);
}

static void test_cf8_wide(void **state)
{
	struct fixture *f = *state;
	/* The bus allows 8-byte accesses; x86 port I/O never makes them, but the latch must still
	 * answer like any other non-dword access (all-ones, no change) without undefined shifts. */
	cf8_set(f, 0x80000800);
	uint64_t v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 8, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000800);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 8, false, &v));
	assert_int_equal(v, UINT64_MAX);
}

static void test_paths_agree(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	for (unsigned slot = 0; slot < 4; slot++) {
		for (unsigned reg = 0; reg < 0x110; reg++) {
			rd(f, 0, DEVFN(slot), reg, 1);
			if (!(reg & 1))
				rd(f, 0, DEVFN(slot), reg, 2);
			if (!(reg & 3))
				rd(f, 0, DEVFN(slot), reg, 4);
		}
	}
	/* The interrupt line is writable: through one path, seen through the other. */
	wr(f, false, DEVFN(1), PCI_INTERRUPT_LINE, 1, 0x5a);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), PCI_INTERRUPT_LINE, 1), 0x5a);
	wr(f, true, DEVFN(1), PCI_INTERRUPT_LINE, 1, 0xa5);
	assert_int_equal(pio_read(f, 0, DEVFN(1), PCI_INTERRUPT_LINE, 1), 0xa5);
	/* Firmware-style setup: INTA#, line 16 + slot % 4. */
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_INTERRUPT_LINE, 1), 18);
	/* The standard fields of a device. */
	assert_int_equal(rd(f, 0, DEVFN(1), 0, 4), 0x10411af4);
	assert_int_equal(rd(f, 0, DEVFN(2), 0, 4), 0x10441af4);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_REVISION, 4), 0x02000001);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_SUBSYS_VENDOR, 4), 0x00011af4);
	/* Extended config space is present and empty (no extended capabilities). */
	assert_int_equal(rd(f, 0, DEVFN(1), 0x100, 4), 0);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), 0xff8, 8), 0);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	for (unsigned via = 0; via < 2; via++) {
		for (unsigned slot = 0; slot < 3; slot++) {
			unsigned devfn = DEVFN(slot);
			uint32_t id = rd(f, 0, devfn, 0, 4), cls = rd(f, 0, devfn, 8, 4);
			uint32_t hdr = rd(f, 0, devfn, 0x0c, 4),
				 st = rd(f, 0, devfn, PCI_STATUS, 2);
			uint32_t cap = rd(f, 0, devfn, PCI_CAP_PTR, 4);
			uint32_t sub = rd(f, 0, devfn, PCI_SUBSYS_VENDOR, 4);
			for (unsigned size = 1; size <= 4; size *= 2) {
				for (unsigned reg = 0; reg < 4; reg += size) {
					wr(f, via, devfn, reg, size, 0xffffffff);
					wr(f, via, devfn, 8 + reg, size, 0);
					wr(f, via, devfn, 0x2c + reg, size, 0);
					wr(f, via, devfn, PCI_CAP_PTR + reg, size, 0xffffffff);
				}
			}
			wr(f, via, devfn, 0x0e, 1, 0x80);	  /* multi-function bit */
			wr(f, via, devfn, PCI_STATUS, 2, 0xffff); /* no W1C bits either */
			wr(f, via, devfn, PCI_STATUS, 2, 0);
			assert_int_equal(rd(f, 0, devfn, 0, 4), id);
			assert_int_equal(rd(f, 0, devfn, 8, 4), cls);
			assert_int_equal(rd(f, 0, devfn, 0x0c, 4), hdr);
			assert_int_equal(rd(f, 0, devfn, PCI_STATUS, 2), st);
			assert_int_equal(rd(f, 0, devfn, PCI_CAP_PTR, 4), cap);
			assert_int_equal(rd(f, 0, devfn, PCI_SUBSYS_VENDOR, 4), sub);
			assert_int_equal(rd(f, 0, devfn, PCI_INTERRUPT_PIN, 1), slot ? 1 : 0);
			wr(f, via, devfn, PCI_INTERRUPT_PIN, 1, 4);
			assert_int_equal(rd(f, 0, devfn, PCI_INTERRUPT_PIN, 1), slot ? 1 : 0);
			/* Capability bytes and the rest of config space are read-only too. */
			wr(f, via, devfn, 0x40, 4, 0xffffffff);
			wr(f, via, devfn, 0x50, 4, 0);
			wr(f, via, devfn, 0x100, 4, 0xffffffff);
			wr(f, via, devfn, 0xffc, 4, 0xffffffff);
			assert_int_equal(rd(f, 0, devfn, 0x100, 4), 0);
			assert_int_equal(rd(f, 0, devfn, 0xffc, 4), 0);
		}
	}
	assert_int_equal(rd(f, 0, DEVFN(1), 0x40, 2), 0x5000 | PCI_CAP_ID_VNDR);
	assert_int_equal(rd(f, 0, DEVFN(1), 0x50, 2), PCI_CAP_ID_MSIX);
	assert_int_equal(f->nmoves, 0);
}

static void test_command(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* Firmware setup left memory decoding on. */
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	/* Writable: I/O, memory, master, parity response, SERR#, INTx disable. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 2, 0xffff);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0547);
	wr(f, true, DEVFN(1), PCI_COMMAND, 2, 0);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0);
	wr(f, true, DEVFN(1), PCI_COMMAND, 1, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0006);
	wr(f, false, DEVFN(1), PCI_COMMAND + 1, 1, PCI_COMMAND_INTX_DISABLE >> 8);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0406);
	/* A dword write to command/status changes the command only. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 4, 0xffff0002);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 4), 0x00100002);
	/* Devices are independent. */
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	/* The host bridge's command register has the same mask. */
	wr(f, true, 0, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(rd(f, 0, 0, PCI_COMMAND, 2), 0x0547);
}

static unsigned walk_caps(struct fixture *f, unsigned devfn, uint8_t *ids, unsigned *offs,
			  unsigned max)
{
	unsigned n = 0, seen[256] = {0};
	unsigned p = rd(f, 0, devfn, PCI_CAP_PTR, 1);
	while (p) {
		if (p < 0x40 || p > 0xfc || (p & 3))
			fail_msg("capability pointer 0x%x", p);
		if (seen[p]++)
			fail_msg("capability loop at 0x%x", p);
		if (n < max) {
			ids[n] = (uint8_t)rd(f, 0, devfn, p, 1);
			offs[n] = p;
		}
		n++;
		p = rd(f, 0, devfn, p + 1, 1);
	}
	return n;
}

static void test_capabilities(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	uint8_t ids[64];
	unsigned offs[64];
	assert_true(rd(f, 0, DEVFN(1), PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_equal(walk_caps(f, DEVFN(1), ids, offs, 64), 2);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(offs[0], 0x40);
	assert_int_equal(offs[1], 0x50);
	/* A device without capabilities. */
	assert_false(rd(f, 0, DEVFN(2), PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_equal(walk_caps(f, DEVFN(2), ids, offs, 64), 0);

	/* Fill config space with odd lengths until one does not fit, then with the smallest (2
	 * bytes) until nothing does; the chain stays well-formed. */
	struct pci_device *d = new_dev(f, 3, 0x1af4, 0x1042);
	static const unsigned lens[] = {3, 16, 5, 20, 2, 64, 7, 24};
	unsigned n = 0, end = 0x40;
	uint8_t want[64];
	bool small = false;
	for (;;) {
		unsigned len = small ? 2 : lens[n % ARRAY_SIZE(lens)];
		uint8_t id = (uint8_t)(0x09 + n);
		int off = pci_add_cap(d, id, len);
		if (off == -ENOSPC) {
			assert_true(ALIGN_UP(end, 4) + len > 256);
			if (small)
				break;
			small = true;
			continue;
		}
		assert_true(off >= 0x40);
		assert_int_equal(off % 4, 0);
		assert_true((unsigned)off >= end);
		assert_true((unsigned)off + len <= 256);
		end = (unsigned)off + len;
		want[n++] = id;
		assert_true(n < 64);
	}
	assert_true(end > 256 - 6);
	assert_int_equal(pci_add_cap(d, 0x77, 256), -ENOSPC);
	assert_int_equal(pci_add_cap(d, 0x77, 1), -ENOSPC);
	assert_int_equal(pci_add_cap(d, 0x77, 0), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->pb, d), 0);
	assert_int_equal(walk_caps(f, DEVFN(3), ids, offs, 64), n);
	assert_memory_equal(ids, want, n);
	/* A capability filling the standard space exactly. */
	d = new_dev(f, 4, 0x1af4, 0x1043);
	assert_int_equal(pci_add_cap(d, PCI_CAP_ID_VNDR, 256 - 0x40), 0x40);
	assert_int_equal(pci_add_cap(d, PCI_CAP_ID_VNDR, 2), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->pb, d), 0);
	assert_int_equal(walk_caps(f, DEVFN(4), ids, offs, 64), 1);
	/* Writes to the capability list change nothing. */
	for (unsigned reg = 0x34; reg < 0x100; reg++)
		wr(f, reg & 1, DEVFN(3), reg, 1, 0x40);
	assert_int_equal(walk_caps(f, DEVFN(3), ids, offs, 64), n);
	assert_memory_equal(ids, want, n);
}

static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	struct pci_bus *pb = &f->pb;
	/* Direct calls with sizes and offsets the guest paths never produce: no crash, no write,
	 * reads are all-ones or the bytes that are there. */
	uint32_t v = pci_cfg_read(pb, 0, DEVFN(1), 0, 3);
	assert_true(v == 0xffffff || v == 0x411af4);
	v = pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE - 1, 4);
	assert_true(v == 0 || v == 0xffffffff);
	v = pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE - 2, 2);
	assert_int_equal(v, 0);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE, 1), 0xff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), 0xffffffff, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), 0, 0), 0);
	v = pci_cfg_read(pb, 0, DEVFN(1), 0, 8);
	assert_true(v == 0xffffffff || v == 0x10411af4);
	assert_int_equal(pci_cfg_read(pb, 0, 256, 0, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, 0xffffffff, 0, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0xffffffff, 0, 0, 4), 0xffffffff);

	uint8_t before[PCI_CFG_SIZE];
	memcpy(before, f->dev[1].cfg, sizeof(before));
	pci_cfg_write(pb, 0, DEVFN(1), PCI_CFG_SIZE - 1, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_CFG_SIZE, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), 0xffffffff, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 0, 0xff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 5, 0xff);
	pci_cfg_write(pb, 0, 256 + DEVFN(1), PCI_INTERRUPT_LINE, 1, 0xff);
	assert_memory_equal(f->dev[1].cfg, before, sizeof(before));
	/* Size 3 writes the three bytes it names, no more. */
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 3, 0x00ffffee);
	assert_int_equal(f->dev[1].cfg[PCI_INTERRUPT_LINE], 0xee);
	assert_int_equal(f->dev[1].cfg[PCI_INTERRUPT_PIN], 1);

	/* Through ECAM: accesses crossing the end of a function's space or a dword. */
	uint64_t q = ecam_read(f, 0, DEVFN(1), 0xffc, 8);
	assert_int_equal(q >> 32, 0xffffffff);
	assert_int_equal(q & 0xffffffff, 0);
	q = ecam_read(f, 0, DEVFN(1), 0xffe, 4);
	assert_int_equal(q & 0xffff, 0);
	q = ecam_read(f, 0, DEVFN(1), 0x0e, 4);
	assert_int_equal(q & 0xff, 0); /* header type, then whatever follows */
	ecam_write(f, 0, DEVFN(1), 0xffe, 4, 0xffffffff);
	ecam_write(f, 0, DEVFN(1), 0xffc, 8, UINT64_MAX);
	ecam_write(f, 0, DEVFN(1), 0xfff, 8, UINT64_MAX);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), 0, 4), 0x10411af4);
	/* An 8-byte ECAM read at 0 of the last function of the last bus (the ECAM's last page). */
	assert_int_equal(ecam_read(f, 255, 0xff, 0xff8, 8), UINT64_MAX);
	/* Just past ECAM: unclaimed. */
	uint64_t x;
	assert_false(bus_access(&f->mmio, PCI_ECAM_BASE + PCI_ECAM_SIZE, 4, false, &x));
	assert_int_equal(f->nmoves, 0);
}

static void test_bus_full(void **state)
{
	struct fixture *f = *state;
	/* 31 devices (slots 1..31) without BARs; the 32nd does not fit. */
	for (unsigned i = 1; i < PCI_MAX_SLOTS; i++) {
		new_dev(f, i, 0x1af4, (uint16_t)(0x1000 + i));
		assert_int_equal(pci_bus_add(&f->pb, &f->dev[i]), 0);
		assert_int_equal(f->dev[i].slot, i);
	}
	new_dev(f, PCI_MAX_SLOTS, 0x1af4, 0x2000);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[PCI_MAX_SLOTS]), -ENOSPC);
	for (unsigned i = 1; i < PCI_MAX_SLOTS; i++)
		assert_int_equal(rd(f, 0, DEVFN(i), PCI_DEVICE_ID, 2), 0x1000 + i);
	assert_int_equal(rd(f, 0, 0, 0, 4), 0x00081b36);
}

static void test_window_full(void **state)
{
	struct fixture *f = *state;
	/* The 32-bit window holds 512 MiB: two 256 MiB BARs, then no more. */
	for (unsigned i = 1; i <= 2; i++) {
		new_dev(f, i, 0x1af4, 0x1041);
		set_bar(f, i, 0, 256 * MiB, false, false);
		assert_int_equal(pci_bus_add(&f->pb, &f->dev[i]), 0);
	}
	assert_int_equal(f->dev[1].bar[0].mapped_at, PCI_MMIO32_BASE);
	assert_int_equal(f->dev[2].bar[0].mapped_at, PCI_MMIO32_BASE + 256 * MiB);
	new_dev(f, 3, 0x1af4, 0x1041);
	set_bar(f, 3, 0, 4 * KiB, false, false);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[3]), -ENOSPC);
	/* Non-prefetchable 64-bit BARs use the 32-bit window too. */
	new_dev(f, 4, 0x1af4, 0x1041);
	set_bar(f, 4, 0, 4 * KiB, true, false);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[4]), -ENOSPC);
	/* The failed devices are not on the bus. */
	assert_int_equal(rd(f, 0, DEVFN(3), 0, 4), 0xffffffff);
	/* Prefetchable 64-bit BARs still fit above: 512 MiB + 256 MiB of the 1 GiB window. */
	new_dev(f, 5, 0x1af4, 0x1041);
	set_bar(f, 5, 0, 512 * MiB, true, true);
	set_bar(f, 5, 2, 256 * MiB, true, true);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[5]), 0);
	assert_int_equal(f->dev[5].bar[0].mapped_at, MMIO64_BASE);
	assert_int_equal(f->dev[5].bar[2].mapped_at, MMIO64_BASE + 512 * MiB);
	assert_int_equal(f->dev[5].slot, 3);
	/* 512 MiB more does not fit in what is left (256 MiB). */
	new_dev(f, 6, 0x1af4, 0x1041);
	set_bar(f, 6, 0, 512 * MiB, true, true);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[6]), -ENOSPC);
	/* Alignment to the size: a 128 MiB BAR after a 4 KiB one skips ahead. */
	struct bus pio, mmio;
	struct pci_bus pb;
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	assert_int_equal(pci_bus_init(&pb, &pio, &mmio, MMIO64_BASE, MMIO64_SIZE), 0);
	new_dev(f, 7, 0x1af4, 0x1041);
	set_bar(f, 7, 0, 4 * KiB, false, false);
	set_bar(f, 7, 1, 128 * MiB, false, false);
	set_bar(f, 7, 2, 8 * KiB, false, false);
	assert_int_equal(pci_bus_add(&pb, &f->dev[7]), 0);
	assert_int_equal(f->dev[7].bar[0].mapped_at, PCI_MMIO32_BASE);
	assert_int_equal(f->dev[7].bar[1].mapped_at, PCI_MMIO32_BASE + 128 * MiB);
	assert_int_equal(f->dev[7].bar[2].mapped_at, PCI_MMIO32_BASE + 256 * MiB);
	pci_bus_destroy(&pb);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_host_bridge),  T(test_absent),    T(test_cf8),	  T(test_cf8_wide),
	    T(test_paths_agree),  T(test_read_only), T(test_command),	  T(test_capabilities),
	    T(test_odd_accesses), T(test_bus_full),  T(test_window_full),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
