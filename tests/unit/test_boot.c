/* Unit tests for vmm/boot: bzImage and PVH ELF probing from synthetic images, the zero page,
 * boot_probe. */
#include "unit.h"

#include <elf.h>
#include <errno.h>

#include "common/util.h"
#include "vmm/boot.h"

#define KPATH "/test/kernel"
#define IPATH "/test/initrd"

/* ---- synthetic bzImage ---- */

struct bz_opts {
	uint8_t setup_sects;
	uint16_t protocol;
	uint8_t loadflags, xloadflags, jump;
	uint32_t cmdline_size, initrd_addr_max, init_size;
	uint64_t pref_address;
	size_t payload;
};

static struct bz_opts bz_default(void)
{
	return (struct bz_opts){
	    .setup_sects = 4,
	    .protocol = 0x020f,
	    .loadflags = 0x01,	/* LOADED_HIGH */
	    .xloadflags = 0x03, /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	    .jump = 0x66,	/* header ends at 0x268 */
	    .cmdline_size = 2047,
	    .initrd_addr_max = 0x7fffffff,
	    .init_size = 8 << 20,
	    .pref_address = 0x1000000,
	    .payload = 64 * 1024,
	};
}

static uint8_t *make_bz(const struct bz_opts *o, size_t *len)
{
	unsigned sects = o->setup_sects ? o->setup_sects : 4;
	size_t setup = (sects + 1) * 512;
	*len = setup + o->payload;
	uint8_t *k = calloc(1, *len < 0x290 ? 0x290 : *len);
	assert_non_null(k);
	k[0x1f1] = o->setup_sects;
	le_wr(k + 0x1fe, 0xaa55, 2);
	k[0x200] = 0xeb;
	k[0x201] = o->jump;
	memcpy(k + 0x202, "HdrS", 4);
	le_wr(k + 0x206, o->protocol, 2);
	k[0x211] = o->loadflags;
	le_wr(k + 0x22c, o->initrd_addr_max, 4);
	le_wr(k + 0x230, 0x200000, 4); /* kernel_alignment */
	k[0x234] = 1;		       /* relocatable */
	k[0x236] = o->xloadflags;
	le_wr(k + 0x238, o->cmdline_size, 4);
	le_wr(k + 0x258, o->pref_address, 8);
	le_wr(k + 0x260, o->init_size, 4);
	for (size_t i = setup; i < *len; i++)
		k[i] = (uint8_t)(i * 7);
	return k;
}

static struct mem_layout layout(uint64_t bytes)
{
	struct mem_layout l;
	assert_int_equal(layout_compute(bytes, &l), 0);
	return l;
}

static struct boot_image image(uint8_t *kernel, size_t klen, uint8_t *initrd, size_t ilen,
			       const char *cmdline)
{
	struct boot_image img;
	memset(&img, 0, sizeof(img));
	img.kernel_path = KPATH;
	img.initrd_path = IPATH;
	img.kernel = kernel;
	img.kernel_len = klen;
	img.initrd = initrd;
	img.initrd_len = ilen;
	img.cmdline = cmdline;
	img.cmdline_len = strlen(cmdline);
	return img;
}

/* Probe a bzImage built from o; returns the probe result, img filled. */
static int probe_bz(const struct bz_opts *o, uint64_t mem, size_t initrd_len, size_t cmdline_len,
		    enum boot_mode want, struct boot_image *img, struct boot_error *err)
{
	size_t klen;
	uint8_t *k = make_bz(o, &klen);
	uint8_t *rd = initrd_len ? calloc(1, initrd_len) : NULL;
	char *cl = malloc(cmdline_len + 1);
	assert_non_null(cl);
	memset(cl, 'c', cmdline_len);
	cl[cmdline_len] = 0;
	struct mem_layout l = layout(mem);
	*img = image(k, klen, rd, initrd_len, cl);
	memset(err, 0, sizeof(*err));
	int r = boot_probe_buffers(img, want, &l, err);
	img->cmdline = NULL; /* freed below; tests only look at lengths */
	free(cl);
	return r;
}

static void free_img(struct boot_image *img)
{
	free(img->kernel);
	free(img->initrd);
	img->kernel = img->initrd = NULL;
}

#define BZ_FAILS(o, mem, ilen, clen, frag1, frag2)                                                 \
	do {                                                                                       \
		struct boot_image i_;                                                              \
		struct boot_error e_;                                                              \
		int r_ = probe_bz(o, mem, ilen, clen, BOOT_AUTO, &i_, &e_);                        \
		if (r_ != -EINVAL)                                                                 \
			fail_msg("accepted (r=%d), want error with '%s'", r_, frag2);              \
		assert_contains(e_.msg, frag1);                                                    \
		assert_contains(e_.msg, frag2);                                                    \
		free_img(&i_);                                                                     \
	} while (0)

static void test_bz_accept(void **state)
{
	(void)state;
	struct bz_opts o = bz_default();
	struct boot_image img;
	struct boot_error err;
	int r = probe_bz(&o, 512 * MiB, 0, 20, BOOT_AUTO, &img, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_int_equal(img.mode, BOOT_LINUX);
	assert_int_equal(img.protocol, 0x020f);
	assert_int_equal(img.setup_len, 5 * 512);
	assert_int_equal(img.load_addr, 0x1000000);
	assert_int_equal(img.init_size, 8 << 20);
	assert_int_equal(img.initrd_addr, 0);
	free_img(&img);

	/* Explicit --boot linux; setup_sects 0 means 4; a small init_size grows to the payload. */
	o.setup_sects = 0;
	o.init_size = 100;
	r = probe_bz(&o, 512 * MiB, 0, 0, BOOT_LINUX, &img, &err);
	assert_int_equal(r, 0);
	assert_int_equal(img.setup_len, 5 * 512);
	assert_int_equal(img.init_size, 64 * 1024);
	free_img(&img);

	/* More setup sectors; oldest acceptable protocol 2.12. */
	o = bz_default();
	o.setup_sects = 30;
	o.protocol = 0x020c;
	r = probe_bz(&o, 64 * MiB, 0, 2047, BOOT_AUTO, &img, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_int_equal(img.setup_len, 31 * 512);
	free_img(&img);
}

static void test_bz_load_address(void **state)
{
	(void)state;
	struct bz_opts o = bz_default();
	struct boot_image img;
	struct boot_error err;
	/* No (or a too-low) preferred address: 1 MiB. */
	o.pref_address = 0;
	assert_int_equal(probe_bz(&o, 512 * MiB, 0, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.load_addr, KERNEL_MIN_ADDR);
	free_img(&img);
	o.pref_address = 0x80000;
	assert_int_equal(probe_bz(&o, 512 * MiB, 0, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.load_addr, KERNEL_MIN_ADDR);
	free_img(&img);
	/* The kernel decompresses to its preferred address: one beyond RAM cannot boot. */
	o.pref_address = 0x100000000ULL;
	assert_int_equal(probe_bz(&o, 512 * MiB, 0, 0, BOOT_AUTO, &img, &err), -EINVAL);
	assert_non_null(strstr(err.msg, "is too small"));
	free_img(&img);
	/* Kernel exactly filling RAM from the preferred address. */
	o.pref_address = 0x1000000;
	o.init_size = (uint32_t)(64 * MiB - 0x1000000);
	assert_int_equal(probe_bz(&o, 64 * MiB, 0, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.load_addr, 0x1000000);
	free_img(&img);
}

static void test_bz_rejects(void **state)
{
	(void)state;
	struct bz_opts o = bz_default();
	struct boot_image img;
	struct boot_error err;

	o.protocol = 0x020b;
	BZ_FAILS(&o, 512 * MiB, 0, 0, KPATH, "protocol 2.11");
	o = bz_default();
	o.xloadflags = 0x02;
	BZ_FAILS(&o, 512 * MiB, 0, 0, KPATH, "64-bit entry");
	o = bz_default();
	o.loadflags = 0;
	BZ_FAILS(&o, 512 * MiB, 0, 0, KPATH, "zImage");
	o = bz_default();
	BZ_FAILS(&o, 512 * MiB, 0, 2048, KPATH, "at most 2047");
	BZ_FAILS(&o, 512 * MiB, 0, CMDLINE_MAX, "command line", "65535");
	o.init_size = 600 << 20;
	BZ_FAILS(&o, 512 * MiB, 0, 0, KPATH, "--memory 512M is too small");
	o = bz_default();
	o.init_size = (uint32_t)(64 * MiB - 0x100000 + 4096); /* does not fit even at 1 MiB */
	BZ_FAILS(&o, 64 * MiB, 0, 0, KPATH, "too small");
	o = bz_default();
	o.payload = 0x200; /* nothing after the 64-bit entry offset */
	BZ_FAILS(&o, 512 * MiB, 0, 0, KPATH, "truncated");

	/* Bad boot flag. */
	size_t klen;
	o = bz_default();
	uint8_t *k = make_bz(&o, &klen);
	k[0x1fe] = 0;
	struct mem_layout l = layout(512 * MiB);
	img = image(k, klen, NULL, 0, "");
	assert_int_equal(boot_probe_buffers(&img, BOOT_AUTO, &l, &err), -EINVAL);
	assert_contains(err.msg, KPATH);
	assert_contains(err.msg, "bad boot flag 0xaa00");

	/* Truncated header: HdrS present but shorter than the fields we read. */
	k[0x1fe] = 0x55;
	img = image(k, 0x250, NULL, 0, "");
	assert_int_equal(boot_probe_buffers(&img, BOOT_AUTO, &l, &err), -EINVAL);
	assert_contains(err.msg, KPATH);
	assert_contains(err.msg, "truncated bzImage header");
	/* Too short to even have the signature. */
	img = image(k, 0x205, NULL, 0, "");
	assert_int_equal(boot_probe_buffers(&img, BOOT_AUTO, &l, &err), -EINVAL);
	assert_contains(err.msg, "truncated or not a kernel (517 bytes)");
	img = image(k, 0, NULL, 0, "");
	assert_int_equal(boot_probe_buffers(&img, BOOT_LINUX, &l, &err), -EINVAL);
	assert_contains(err.msg, KPATH);
	/* No signature. */
	k[0x202] = 'X';
	img = image(k, klen, NULL, 0, "");
	assert_int_equal(boot_probe_buffers(&img, BOOT_AUTO, &l, &err), -EINVAL);
	assert_contains(err.msg, "no 'HdrS'");
	/* Setup sectors beyond the file. */
	k[0x202] = 'H';
	k[0x1f1] = 200;
	assert_int_equal(boot_probe_buffers(&img, BOOT_AUTO, &l, &err), -EINVAL);
	assert_contains(err.msg, KPATH);
	assert_contains(err.msg, "setup alone takes 102912");
	/* A bzImage asked to boot via PVH. */
	k[0x1f1] = 4;
	assert_int_equal(boot_probe_buffers(&img, BOOT_PVH, &l, &err), -EINVAL);
	assert_contains(err.msg, "not an ELF");
	free(k);
}

static void test_bz_kernel_relocates_to_pref_address(void **state)
{
	(void)state;
	/*
	 * boot.rst: for a relocatable kernel loaded below pref_address the runtime start is
	 * pref_address (aligned), and init_size is counted from there. A kernel that needs 50 MiB
	 * from 16 MiB cannot run in 64 MiB even though it would fit if it stayed at 1 MiB.
	 */
	struct bz_opts o = bz_default();
	o.pref_address = 0x1000000;
	o.init_size = 50 << 20;
	BZ_FAILS(&o, 64 * MiB, 0, 0, KPATH, "too small");
}

static void test_bz_initrd(void **state)
{
	(void)state;
	struct bz_opts o = bz_default();
	struct boot_image img;
	struct boot_error err;
	/* At the top of RAM, page aligned. */
	assert_int_equal(probe_bz(&o, 512 * MiB, MiB + 1, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.initrd_addr, 512 * MiB - MiB - 4096);
	free_img(&img);
	/* Capped by initrd_addr_max (inclusive), and by low RAM with a 5 GiB VM. */
	o.initrd_addr_max = 0x37ffffff;
	assert_int_equal(probe_bz(&o, 5 * GiB, 4096, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.initrd_addr, 0x38000000 - 4096);
	free_img(&img);
	o.initrd_addr_max = 0xffffffff;
	assert_int_equal(probe_bz(&o, 5 * GiB, 4096, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.initrd_addr, LOWMEM_LIMIT - 4096);
	free_img(&img);
	/* Exactly fills the space between the kernel and the top of RAM. */
	o = bz_default();
	size_t room = 64 * MiB - (0x1000000 + (8 << 20));
	assert_int_equal(probe_bz(&o, 64 * MiB, room, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.initrd_addr, 0x1000000 + (8 << 20));
	free_img(&img);
	/* One byte more does not fit; the message names the file and the memory size. */
	BZ_FAILS(&o, 64 * MiB, room + 1, 0, IPATH, "do not fit");
	BZ_FAILS(&o, 64 * MiB, room + 1, 0, "--memory 64M", "initrd");
	BZ_FAILS(&o, 64 * MiB, 100 * MiB, 0, IPATH, "do not fit");
	/* initrd_addr_max below the kernel's end. */
	o.initrd_addr_max = 0x17fffff;
	BZ_FAILS(&o, 512 * MiB, 4096, 0, IPATH, "do not fit");
}

static void test_zero_page(void **state)
{
	(void)state;
	static const uint16_t protos[] = {0x020c, 0x020d, 0x020e, 0x020f};
	for (size_t p = 0; p < ARRAY_SIZE(protos); p++) {
		struct bz_opts o = bz_default();
		o.protocol = protos[p];
		o.loadflags = 0x21; /* LOADED_HIGH | QUIET */
		struct boot_image img;
		struct boot_error err;
		assert_int_equal(probe_bz(&o, 5 * GiB, 12345, 0, BOOT_AUTO, &img, &err), 0);
		/* Fields the loader must overwrite even if the file has junk there. */
		le_wr(img.kernel + 0x218, 0xdeadbeef, 4);
		le_wr(img.kernel + 0x228, 0xdeadbeef, 4);
		img.kernel[0x210] = 0x12;
		img.kernel[0x270] = 0x77; /* past the header end (0x268): not copied */
		struct mem_layout l = layout(5 * GiB);
		uint8_t zp[4096];
		memset(zp, 0x5a, sizeof(zp));
		assert_int_equal(linux_build_zero_page(&img, &l, 0xE0000, zp), 0);

		/* The setup header is copied except the fields the loader fills. */
		for (size_t i = 0x1f1; i < 0x268; i++) {
			if (i == 0x210 || i == 0x211 || (i >= 0x218 && i < 0x220) ||
			    (i >= 0x228 && i < 0x22c))
				continue;
			if (zp[i] != img.kernel[i])
				fail_msg("zero page byte 0x%zx = 0x%02x, kernel 0x%02x", i, zp[i],
					 img.kernel[i]);
		}
		assert_int_equal(zp[0x270], 0);
		assert_int_equal(zp[0x210], 0xff);
		assert_int_equal(zp[0x211], 0x01);
		assert_int_equal(le_rd(zp + 0x228, 4), CMDLINE_ADDR);
		assert_int_equal(le_rd(zp + 0xc8, 4), 0);
		assert_int_equal(le_rd(zp + 0x218, 4), img.initrd_addr);
		assert_int_equal(le_rd(zp + 0x21c, 4), 12345);
		assert_int_equal(le_rd(zp + 0xc0, 4), 0);
		assert_int_equal(le_rd(zp + 0xc4, 4), 0);
		assert_memory_equal(zp + 0x202, "HdrS", 4);
		/* acpi_rsdp_addr exists from protocol 2.14. */
		assert_int_equal(le_rd(zp + 0x70, 8), protos[p] >= 0x020e ? 0xE0000 : 0);

		/* e820 */
		struct e820_entry want[16];
		int n = layout_e820(&l, want, 16);
		assert_int_equal(n, 6);
		assert_int_equal(zp[0x1e8], n);
		assert_memory_equal(zp + 0x2d0, want, (size_t)n * 20);
		/* Everything outside the header, the RSDP, ext fields and e820 is zero. */
		for (size_t i = 0; i < 4096; i++) {
			int known = (i >= 0x1f1 && i < 0x268) || (i >= 0x70 && i < 0x78) ||
				    i == 0x1e8 || (i >= 0x2d0 && i < 0x2d0 + (size_t)n * 20);
			if (!known && zp[i])
				fail_msg("zero page byte 0x%zx = 0x%02x", i, zp[i]);
		}
		free_img(&img);
	}
}

static void test_zero_page_header_end(void **state)
{
	(void)state;
	struct bz_opts o = bz_default();
	struct boot_image img;
	struct boot_error err;
	struct mem_layout l = layout(512 * MiB);
	uint8_t zp[4096];

	/* jump 0x8e: header up to 0x290 */
	o.jump = 0x8e;
	assert_int_equal(probe_bz(&o, 512 * MiB, 0, 0, BOOT_AUTO, &img, &err), 0);
	img.kernel[0x28f] = 0x44;
	img.kernel[0x290] = 0x55;
	assert_int_equal(linux_build_zero_page(&img, &l, 0, zp), 0);
	assert_int_equal(zp[0x28f], 0x44);
	assert_int_equal(zp[0x290], 0);
	assert_int_equal(zp[0x218], 0); /* no initrd: ramdisk fields as in the file (zero) */
	free_img(&img);

	/* A bogus jump is clamped to the largest known header. */
	o.jump = 0xff;
	assert_int_equal(probe_bz(&o, 512 * MiB, 0, 0, BOOT_AUTO, &img, &err), 0);
	memset(img.kernel + 0x268, 0x66, 0x100);
	assert_int_equal(linux_build_zero_page(&img, &l, 0, zp), 0);
	assert_int_equal(zp[0x28f], 0x66);
	assert_int_equal(zp[0x290], 0);
	assert_int_equal(zp[0x2d0], 0); /* e820 entry 0 starts at address 0 */
	free_img(&img);
}

/* ---- synthetic PVH ELF ---- */

struct seg {
	uint32_t type;
	uint64_t paddr, filesz, memsz;
	const uint8_t *data; /* PT_NOTE contents; NULL = pattern */
};

/* A note: namesz, descsz, type, name (padded), desc (padded). Returns its length. */
static size_t note(uint8_t *p, const char *name, uint32_t type, const void *desc, uint32_t descsz)
{
	uint32_t namesz = (uint32_t)strlen(name) + 1;
	le_wr(p, namesz, 4);
	le_wr(p + 4, descsz, 4);
	le_wr(p + 8, type, 4);
	memset(p + 12, 0, ALIGN_UP(namesz, 4) + ALIGN_UP(descsz, 4));
	memcpy(p + 12, name, namesz);
	memcpy(p + 12 + ALIGN_UP(namesz, 4), desc, descsz);
	return 12 + ALIGN_UP(namesz, 4) + ALIGN_UP(descsz, 4);
}

static size_t xen_note(uint8_t *p, uint32_t entry)
{
	return note(p, "Xen", 18, &entry, 4);
}

/* Build an ELF (class 1 or 2) with the given program headers; file data follows the headers. */
static uint8_t *make_elf(int is64, uint16_t machine, const struct seg *s, unsigned n, size_t *len)
{
	size_t eh = is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t ph = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	size_t off = ALIGN_UP(eh + n * ph, 16);
	size_t total = off;
	for (unsigned i = 0; i < n; i++)
		total += ALIGN_UP(s[i].filesz, 16);
	uint8_t *f = calloc(1, total);
	assert_non_null(f);
	memcpy(f, ELFMAG, SELFMAG);
	f[EI_CLASS] = is64 ? ELFCLASS64 : ELFCLASS32;
	f[EI_DATA] = ELFDATA2LSB;
	f[EI_VERSION] = EV_CURRENT;
	if (is64) {
		Elf64_Ehdr *h = (Elf64_Ehdr *)f;
		h->e_type = ET_EXEC;
		h->e_machine = machine;
		h->e_version = EV_CURRENT;
		h->e_phoff = eh;
		h->e_ehsize = (uint16_t)eh;
		h->e_phentsize = (uint16_t)ph;
		h->e_phnum = (uint16_t)n;
	} else {
		Elf32_Ehdr *h = (Elf32_Ehdr *)f;
		h->e_type = ET_EXEC;
		h->e_machine = machine;
		h->e_version = EV_CURRENT;
		h->e_phoff = (uint32_t)eh;
		h->e_ehsize = (uint16_t)eh;
		h->e_phentsize = (uint16_t)ph;
		h->e_phnum = (uint16_t)n;
	}
	for (unsigned i = 0; i < n; i++) {
		if (is64) {
			Elf64_Phdr *p = (Elf64_Phdr *)(f + eh + i * ph);
			*p = (Elf64_Phdr){.p_type = s[i].type,
					  .p_offset = off,
					  .p_vaddr = s[i].paddr,
					  .p_paddr = s[i].paddr,
					  .p_filesz = s[i].filesz,
					  .p_memsz = s[i].memsz,
					  .p_align = 16};
		} else {
			Elf32_Phdr *p = (Elf32_Phdr *)(f + eh + i * ph);
			*p = (Elf32_Phdr){.p_type = s[i].type,
					  .p_offset = (uint32_t)off,
					  .p_vaddr = (uint32_t)s[i].paddr,
					  .p_paddr = (uint32_t)s[i].paddr,
					  .p_filesz = (uint32_t)s[i].filesz,
					  .p_memsz = (uint32_t)s[i].memsz,
					  .p_align = 16};
		}
		for (uint64_t j = 0; j < s[i].filesz; j++)
			f[off + j] = s[i].data ? s[i].data[j] : (uint8_t)(j * 13 + i);
		off += ALIGN_UP(s[i].filesz, 16);
	}
	*len = total;
	return f;
}

static int probe_elf(uint8_t *k, size_t klen, uint64_t mem, size_t initrd_len, enum boot_mode want,
		     struct boot_image *img, struct boot_error *err)
{
	struct mem_layout l = layout(mem);
	uint8_t *rd = initrd_len ? calloc(1, initrd_len) : NULL;
	*img = image(k, klen, rd, initrd_len, "console=hvc0");
	memset(err, 0, sizeof(*err));
	return boot_probe_buffers(img, want, &l, err);
}

/* A standard image: note, text at 1 MiB (entry inside), data+bss at 2 MiB. */
static uint8_t *std_elf(int is64, uint32_t entry, size_t *len)
{
	static uint8_t n[64];
	size_t nl = xen_note(n, entry);
	const struct seg s[] = {
	    {PT_NOTE, 0, nl, 0, n},
	    {PT_LOAD, 0x100000, 0x3000, 0x3000, NULL},
	    {PT_LOAD, 0x200000, 0x1000, 0x5000, NULL},
	};
	return make_elf(is64, is64 ? EM_X86_64 : EM_386, s, 3, len);
}

#define ELF_FAILS(k, klen, mem, ilen, want, frag1, frag2)                                          \
	do {                                                                                       \
		struct boot_image i_;                                                              \
		struct boot_error e_;                                                              \
		int r_ = probe_elf(k, klen, mem, ilen, want, &i_, &e_);                            \
		if (r_ != -EINVAL)                                                                 \
			fail_msg("accepted (r=%d), want error with '%s'", r_, frag2);              \
		assert_contains(e_.msg, frag1);                                                    \
		assert_contains(e_.msg, frag2);                                                    \
		free(i_.initrd);                                                                   \
	} while (0)

static void test_pvh_accept(void **state)
{
	(void)state;
	for (int is64 = 0; is64 <= 1; is64++) {
		size_t len;
		uint8_t *k = std_elf(is64, 0x100010, &len);
		struct boot_image img;
		struct boot_error err;
		int r = probe_elf(k, len, 64 * MiB, 0, BOOT_AUTO, &img, &err);
		if (r)
			fail_msg("ELF%d: %s", is64 ? 64 : 32, err.msg);
		assert_int_equal(img.mode, BOOT_PVH);
		assert_int_equal(img.pvh_entry, 0x100010);
		assert_int_equal(img.nseg, 2);
		assert_int_equal(img.seg[0].paddr, 0x100000);
		assert_int_equal(img.seg[0].filesz, 0x3000);
		assert_int_equal(img.seg[0].memsz, 0x3000);
		assert_int_equal(img.seg[1].paddr, 0x200000);
		assert_int_equal(img.seg[1].filesz, 0x1000);
		assert_int_equal(img.seg[1].memsz, 0x5000);
		assert_true(img.seg[0].offset + img.seg[0].filesz <= len);
		assert_int_equal(k[img.seg[1].offset + 1], 13 + 2); /* pattern of segment 2 */
		assert_int_equal(img.image_end, 0x205000);
		assert_int_equal(img.initrd_addr, 0);

		/* Explicit --boot pvh, with an initrd at the top of RAM. */
		r = probe_elf(k, len, 64 * MiB, 10000, BOOT_PVH, &img, &err);
		assert_int_equal(r, 0);
		assert_int_equal(img.initrd_addr, 64 * MiB - 3 * 4096);
		free(img.initrd);
		/* The whole rest of RAM, exactly. */
		r = probe_elf(k, len, 64 * MiB, 64 * MiB - 0x205000, BOOT_PVH, &img, &err);
		assert_int_equal(r, 0);
		assert_int_equal(img.initrd_addr, 0x205000);
		free(img.initrd);
		/* Not as a bzImage. */
		ELF_FAILS(k, len, 64 * MiB, 0, BOOT_LINUX, KPATH, "--boot pvh");
		free(k);
	}
}

static void test_pvh_note_variants(void **state)
{
	(void)state;
	uint8_t n[256];
	size_t nl = 0;
	/* Other notes first: a GNU build-id, a Xen note of another type, then the entry. */
	uint8_t id[20] = {1, 2, 3};
	nl += note(n + nl, "GNU", 3, id, sizeof(id));
	uint32_t other = 0x1234;
	nl += note(n + nl, "Xen", 1, &other, 4);
	uint64_t entry64 = 0xffffffff00100004ULL; /* 8-byte desc: low 32 bits used */
	nl += note(n + nl, "Xen", 18, &entry64, 8);
	const struct seg s[] = {
	    {PT_LOAD, 0x100000, 0x1000, 0x1000, NULL},
	    {PT_NOTE, 0, nl, 0, n},
	};
	size_t len;
	uint8_t *k = make_elf(1, EM_X86_64, s, 2, &len);
	struct boot_image img;
	struct boot_error err;
	int r = probe_elf(k, len, 64 * MiB, 0, BOOT_AUTO, &img, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_int_equal(img.pvh_entry, 0x100004);
	free(k);

	/* A note named "Xen" of type 18 with a 2-byte desc is not the entry. */
	uint16_t small = 0x10;
	nl = note(n, "Xen", 18, &small, 2);
	const struct seg s2[] = {{PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}, {PT_NOTE, 0, nl, 0, n}};
	k = make_elf(1, EM_X86_64, s2, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "without a PVH entry note");
	free(k);

	/* Name "XenX" (namesz 5) is not Xen. */
	uint32_t e = 0x100000;
	nl = note(n, "XenX", 18, &e, 4);
	const struct seg s3[] = {{PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}, {PT_NOTE, 0, nl, 0, n}};
	k = make_elf(0, EM_386, s3, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "XEN_ELFNOTE_PHYS32_ENTRY");
	free(k);
}

static void test_pvh_rejects(void **state)
{
	(void)state;
	size_t len;
	uint8_t n[64];
	size_t nl = xen_note(n, 0x100000);

	/* No PT_NOTE at all. */
	const struct seg none[] = {{PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}};
	uint8_t *k = make_elf(1, EM_X86_64, none, 1, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "without a PVH entry note");
	free(k);

	/* Note truncated: the segment ends inside the desc. */
	const struct seg trunc[] = {{PT_NOTE, 0, nl - 2, 0, n},
				    {PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}};
	k = make_elf(1, EM_X86_64, trunc, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "malformed ELF note");
	free(k);
	/* Note claiming a huge name. */
	uint8_t bad[64];
	memcpy(bad, n, nl);
	le_wr(bad, 0xfffffff0, 4);
	const struct seg huge[] = {{PT_NOTE, 0, nl, 0, bad},
				   {PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}};
	k = make_elf(0, EM_386, huge, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "malformed ELF note");
	free(k);

	/* Segments beyond the file end: the note, then a load. */
	const struct seg ok[] = {{PT_NOTE, 0, nl, 0, n}, {PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}};
	k = make_elf(1, EM_X86_64, ok, 2, &len);
	Elf64_Phdr *ph = (Elf64_Phdr *)(k + sizeof(Elf64_Ehdr));
	ph[1].p_filesz = len; /* offset + filesz > len */
	ph[1].p_memsz = len;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "segment 1 lies beyond the file end");
	ph[1].p_filesz = ph[1].p_memsz = 0x1000;
	ph[1].p_offset = UINT64_MAX - 10;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "beyond the file end");
	ph[1].p_offset = ph[0].p_offset;
	ph[0].p_offset = len - 4; /* the note runs off the end */
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "segment 0 lies beyond the file end");
	free(k);

	/* Segments outside RAM between 1 MiB and the end of low RAM. */
	static const struct {
		uint64_t paddr, filesz, memsz;
	} out[] = {
	    {0x80000, 0x1000, 0x1000},		      /* below 1 MiB */
	    {0xff000, 0x2000, 0x2000},		      /* starts below 1 MiB */
	    {60 * MiB, 0x1000, 8 * MiB},	      /* bss runs past 64 MiB */
	    {64 * MiB, 0x1000, 0x1000},		      /* starts at the end of RAM */
	    {0x100000000ULL, 0x1000, 0x1000},	      /* high RAM is not for kernels */
	    {0x100000, 0x2000, 0x1000},		      /* filesz > memsz */
	    {0x100000, 0x1000, UINT64_MAX - 0x10000}, /* wrapping memsz */
	};
	for (size_t i = 0; i < ARRAY_SIZE(out); i++) {
		const struct seg s[] = {{PT_NOTE, 0, nl, 0, n},
					{PT_LOAD, out[i].paddr, out[i].filesz, out[i].memsz, NULL}};
		k = make_elf(1, EM_X86_64, s, 2, &len);
		ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "outside RAM");
		free(k);
	}

	/* Entry outside every segment, or in bss only. */
	nl = xen_note(n, 0x101000);
	const struct seg bss[] = {{PT_NOTE, 0, nl, 0, n},
				  {PT_LOAD, 0x100000, 0x1000, 0x2000, NULL}};
	k = make_elf(1, EM_X86_64, bss, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "PVH entry 0x101000 is not inside");
	free(k);
	nl = xen_note(n, 0xfffff);
	const struct seg below[] = {{PT_NOTE, 0, nl, 0, n},
				    {PT_LOAD, 0x100000, 0x1000, 0x1000, NULL}};
	k = make_elf(1, EM_X86_64, below, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "not inside a loaded segment");
	free(k);

	/* A note but nothing to load. */
	nl = xen_note(n, 0x100000);
	const struct seg noload[] = {{PT_NOTE, 0, nl, 0, n}, {PT_LOAD, 0x100000, 0, 0, NULL}};
	k = make_elf(1, EM_X86_64, noload, 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "no loadable segments");
	free(k);

	/* More segments than we track. */
	struct seg many[PVH_MAX_SEGMENTS + 2];
	many[0] = (struct seg){PT_NOTE, 0, nl, 0, n};
	for (unsigned i = 1; i < ARRAY_SIZE(many); i++)
		many[i] = (struct seg){PT_LOAD, 0x100000 + (i - 1) * 0x1000, 16, 16, NULL};
	k = make_elf(1, EM_X86_64, many, PVH_MAX_SEGMENTS + 1, &len);
	struct boot_image img;
	struct boot_error err;
	assert_int_equal(probe_elf(k, len, 64 * MiB, 0, BOOT_AUTO, &img, &err), 0);
	assert_int_equal(img.nseg, PVH_MAX_SEGMENTS);
	free(k);
	k = make_elf(1, EM_X86_64, many, PVH_MAX_SEGMENTS + 2, &len);
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "more than 16 loadable segments");
	free(k);

	/* initrd too big for 64M. */
	k = std_elf(1, 0x100000, &len);
	ELF_FAILS(k, len, 64 * MiB, 62 * MiB, BOOT_AUTO, IPATH, "do not fit");
	ELF_FAILS(k, len, 64 * MiB, 62 * MiB, BOOT_AUTO, "--memory 64M", "initrd");
	free(k);
}

static void test_pvh_bad_headers(void **state)
{
	(void)state;
	size_t len;
	uint8_t *k = std_elf(1, 0x100000, &len);
	Elf64_Ehdr *h = (Elf64_Ehdr *)k;

	h->e_machine = EM_AARCH64;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "not an x86 executable ELF");
	h->e_machine = EM_X86_64;
	h->e_type = ET_DYN;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "type 3");
	h->e_type = ET_EXEC;
	k[EI_DATA] = ELFDATA2MSB;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "little-endian");
	k[EI_DATA] = ELFDATA2LSB;
	k[EI_CLASS] = 3;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "ELF32/ELF64");
	k[EI_CLASS] = ELFCLASS64;

	h->e_phnum = 1000;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "program headers");
	h->e_phnum = 3;
	h->e_phentsize = 32;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "program headers");
	h->e_phentsize = sizeof(Elf64_Phdr);
	h->e_phoff = len + 1;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "program headers");
	h->e_phoff = UINT64_MAX;
	ELF_FAILS(k, len, 64 * MiB, 0, BOOT_AUTO, KPATH, "program headers");
	h->e_phoff = sizeof(Elf64_Ehdr);

	/* Truncated headers. */
	ELF_FAILS(k, 60, 64 * MiB, 0, BOOT_AUTO, KPATH, "truncated ELF header");
	ELF_FAILS(k, 40, 64 * MiB, 0, BOOT_AUTO, KPATH, "truncated ELF header");
	ELF_FAILS(k, 4, 64 * MiB, 0, BOOT_PVH, KPATH, "truncated ELF header");
	/* Fine again after restoring everything. */
	struct boot_image img;
	struct boot_error err;
	assert_int_equal(probe_elf(k, len, 64 * MiB, 0, BOOT_AUTO, &img, &err), 0);
	free(k);

	/* Not ELF at all, with --boot pvh. */
	uint8_t junk[256] = "MZ\x90";
	ELF_FAILS(junk, sizeof(junk), 64 * MiB, 0, BOOT_PVH, KPATH, "not an ELF file");
	ELF_FAILS(junk, sizeof(junk), 64 * MiB, 0, BOOT_AUTO, KPATH, "truncated or not a kernel");
}

/* ---- boot_probe with files ---- */

static void test_boot_probe_files(void **state)
{
	(void)state;
	struct vm_config c;
	struct mem_layout l = layout(512 * MiB);
	struct boot_image img;
	struct boot_error err;

	config_defaults(&c);
	c.kernel = strdup("/nonexistent/berth/vmlinuz");
	assert_int_equal(boot_probe(&c, &l, &img, &err), -EINVAL);
	assert_contains(err.msg, "/nonexistent/berth/vmlinuz");
	assert_contains(err.msg, "No such file");
	assert_null(img.kernel);
	free(c.kernel);

	c.kernel = strdup("/tmp");
	assert_int_equal(boot_probe(&c, &l, &img, &err), -EINVAL);
	assert_contains(err.msg, "kernel '/tmp'");
	assert_contains(err.msg, "Is a directory");
	free(c.kernel);

	/* A real bzImage and initrd on disk. */
	struct bz_opts o = bz_default();
	size_t klen;
	uint8_t *k = make_bz(&o, &klen);
	char *kpath = write_temp_file(k, klen);
	static const char rd[] = "initrd contents";
	char *ipath = write_temp_file(rd, sizeof(rd));
	c.kernel = kpath;
	c.initrd = ipath;
	c.cmdline = NULL;
	int r = boot_probe(&c, &l, &img, &err);
	if (r)
		fail_msg("%s", err.msg);
	assert_int_equal(img.mode, BOOT_LINUX);
	assert_int_equal(img.kernel_len, klen);
	assert_memory_equal(img.kernel, k, klen);
	assert_int_equal(img.initrd_len, sizeof(rd));
	assert_string_equal(img.cmdline, "");
	assert_int_equal(img.cmdline_len, 0);
	assert_string_equal(img.kernel_path, kpath);
	boot_image_free(&img);
	assert_null(img.kernel);

	/* Missing initrd is named as such. */
	c.initrd = "/nonexistent/initrd.img";
	assert_int_equal(boot_probe(&c, &l, &img, &err), -EINVAL);
	assert_contains(err.msg, "initrd '/nonexistent/initrd.img'");
	assert_contains(err.msg, "No such file");

	/* A bad file fails the probe (and frees what it read). */
	c.initrd = NULL;
	c.boot = BOOT_PVH;
	assert_int_equal(boot_probe(&c, &l, &img, &err), -EINVAL);
	assert_contains(err.msg, kpath);
	assert_null(img.kernel);

	unlink(kpath);
	unlink(ipath);
	free(kpath);
	free(ipath);
	free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bz_accept),
	    cmocka_unit_test(test_bz_load_address),
	    cmocka_unit_test(test_bz_rejects),
	    cmocka_unit_test(test_bz_kernel_relocates_to_pref_address),
	    cmocka_unit_test(test_bz_initrd),
	    cmocka_unit_test(test_zero_page),
	    cmocka_unit_test(test_zero_page_header_end),
	    cmocka_unit_test(test_pvh_accept),
	    cmocka_unit_test(test_pvh_note_variants),
	    cmocka_unit_test(test_pvh_rejects),
	    cmocka_unit_test(test_pvh_bad_headers),
	    cmocka_unit_test(test_boot_probe_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
