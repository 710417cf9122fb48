/* Linux x86-64 boot protocol: bzImage header checks, zero page with e820, 64-bit entry with
 * identity paging. */
#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "vmm/boot.h"

/* Offsets in the bzImage file / in boot_params (the setup header is at the same offset in both). */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define BP_ACPI_RSDP 0x070
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_E820_TABLE 0x2d0
#define BP_E820_MAX 128

#define LOADED_HIGH 0x01
#define XLF_KERNEL_64 0x01

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

int linux_probe(struct boot_image *img, const struct mem_layout *l, struct boot_error *err)
{
	const uint8_t *k = img->kernel;
	const char *path = img->kernel_path;

	if (img->kernel_len < 0x268)
		return boot_err(err, "kernel '%s': truncated bzImage header (%zu bytes)", path,
				img->kernel_len);
	if (rd16(k + HDR_BOOT_FLAG) != 0xaa55)
		return boot_err(err, "kernel '%s': bad boot flag 0x%04x (want 0xaa55)", path,
				rd16(k + HDR_BOOT_FLAG));
	img->protocol = rd16(k + HDR_VERSION);
	if (img->protocol < 0x020c || !(k[HDR_XLOADFLAGS] & XLF_KERNEL_64))
		return boot_err(err,
				"kernel '%s': boot protocol %u.%02u without a 64-bit entry point; "
				"berth needs protocol 2.12+ with XLF_KERNEL_64",
				path, img->protocol >> 8, img->protocol & 0xff);
	if (!(k[HDR_LOADFLAGS] & LOADED_HIGH))
		return boot_err(err, "kernel '%s': a zImage (not loaded high); use a bzImage",
				path);
	unsigned sects = k[HDR_SETUP_SECTS] ? k[HDR_SETUP_SECTS] : 4;
	img->setup_len = (size_t)(sects + 1) * 512;
	if (img->setup_len + 0x200 >= img->kernel_len)
		return boot_err(err, "kernel '%s': truncated: %zu bytes, setup alone takes %zu",
				path, img->kernel_len, img->setup_len);
	uint64_t payload = img->kernel_len - img->setup_len;
	img->init_size = rd32(k + HDR_INIT_SIZE);
	if (img->init_size < payload)
		img->init_size = payload;

	/*
	 * The kernel decompresses itself to pref_address (when it is above 1 MiB) wherever it is
	 * loaded, and needs init_size bytes from there: load it there so nothing moves twice.
	 */
	uint64_t pref = rd64(k + HDR_PREF_ADDRESS);
	img->load_addr = pref >= KERNEL_MIN_ADDR ? pref : KERNEL_MIN_ADDR;
	if (img->load_addr >= l->low_ram || img->init_size > l->low_ram - img->load_addr) {
		char mem[32];
		format_size(l->ram_bytes, mem, sizeof(mem));
		return boot_err(
		    err,
		    "kernel '%s': needs %llu MiB from 0x%llx to boot; --memory %s is too small",
		    path, (unsigned long long)(img->init_size >> 20),
		    (unsigned long long)img->load_addr, mem);
	}

	uint32_t cmdline_size = img->protocol >= 0x0206 ? rd32(k + HDR_CMDLINE_SIZE) : 255;
	if (img->cmdline_len > cmdline_size)
		return boot_err(err, "command line: %zu bytes; kernel '%s' accepts at most %u",
				img->cmdline_len, path, cmdline_size);

	uint64_t initrd_max = (uint64_t)rd32(k + HDR_INITRD_ADDR_MAX) + 1;
	return boot_place_initrd(img, l, img->load_addr + img->init_size, initrd_max, err);
}

int linux_build_zero_page(const struct boot_image *img, const struct mem_layout *l, uint64_t rsdp,
			  uint8_t *zp)
{
	memset(zp, 0, 4096);
	/* Copy the setup header as the protocol says: from 0x1f1 to the end given by the jump at
	 * 0x200. */
	size_t hdr_end = 0x202 + img->kernel[HDR_JUMP + 1];
	if (hdr_end > 0x290 || hdr_end > img->kernel_len)
		hdr_end = img->kernel_len < 0x290 ? img->kernel_len : 0x290;
	memcpy(zp + HDR_SETUP_SECTS, img->kernel + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);

	zp[HDR_TYPE_OF_LOADER] = 0xff;		   /* undefined loader */
	zp[HDR_LOADFLAGS] &= (uint8_t) ~(1u << 5); /* QUIET_FLAG off: we want early messages */
	wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)CMDLINE_ADDR);
	wr32(zp + BP_EXT_CMD_LINE_PTR, 0);
	if (img->initrd) {
		wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)img->initrd_addr);
		wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)img->initrd_len);
		wr32(zp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(img->initrd_addr >> 32));
		wr32(zp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)img->initrd_len >> 32));
	}
	if (img->protocol >= 0x020e)
		wr64(zp + BP_ACPI_RSDP, rsdp);

	struct e820_entry e820[BP_E820_MAX];
	int n = layout_e820(l, e820, BP_E820_MAX);
	if (n < 0)
		return n;
	zp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(zp + BP_E820_TABLE, e820, (size_t)n * sizeof(e820[0]));
	return 0;
}

/* Identity-map 0..4 GiB with 2 MiB pages: PML4 -> PDPT -> four page directories. */
static int write_page_tables(const struct guest_mem *m)
{
	uint64_t pml4[512] = {0}, pdpt[512] = {0}, pd[512];
	pml4[0] = BOOT_PDPT_ADDR | 0x3;
	for (unsigned i = 0; i < 4; i++)
		pdpt[i] = (BOOT_PD_ADDR + i * 4096) | 0x3;
	int r = guest_write(m, BOOT_PML4_ADDR, pml4, sizeof(pml4));
	r = r ? r : guest_write(m, BOOT_PDPT_ADDR, pdpt, sizeof(pdpt));
	for (unsigned i = 0; i < 4 && !r; i++) {
		for (unsigned j = 0; j < 512; j++)
			pd[j] =
			    ((uint64_t)i << 30 | (uint64_t)j << 21) | 0x83; /* present, rw, 2M */
		r = guest_write(m, BOOT_PD_ADDR + i * 4096, pd, sizeof(pd));
	}
	return r;
}

int linux_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	       struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	uint8_t zp[4096];
	int r = linux_build_zero_page(img, &m->layout, rsdp, zp);
	r = r ? r : guest_write(m, ZERO_PAGE_ADDR, zp, sizeof(zp));
	r = r ? r
	      : guest_write(m, img->load_addr, img->kernel + img->setup_len,
			    img->kernel_len - img->setup_len);
	r = r ? r : guest_write(m, CMDLINE_ADDR, img->cmdline, img->cmdline_len + 1);
	if (!r && img->initrd)
		r = guest_write(m, img->initrd_addr, img->initrd, img->initrd_len);
	r = r ? r : write_page_tables(m);
	r = r ? r : boot_write_gdt(m, 1);
	if (r)
		return r;

	boot_set_flat_segments(sregs, 1);
	sregs->cr0 = 0x80000011; /* PG | ET | PE */
	sregs->cr3 = BOOT_PML4_ADDR;
	sregs->cr4 = 0x20;   /* PAE */
	sregs->efer = 0x500; /* LMA | LME */
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2;
	regs->rip = img->load_addr + 0x200; /* startup_64 */
	regs->rsi = ZERO_PAGE_ADDR;
	return 0;
}
