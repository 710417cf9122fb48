/* PVH boot: ELF with XEN_ELFNOTE_PHYS32_ENTRY, hvm_start_info with command line, memory map and
 * modules. */
#include <errno.h>
#include <string.h>

#include "common/util.h"
#include "vmm/boot.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578u
#define PT_LOAD 1
#define PT_NOTE 4

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_modlist_entry {
	uint64_t paddr, size, cmdline_paddr, reserved;
};

struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

#define START_INFO_MODLIST (PVH_START_INFO_ADDR + 0x40)
#define START_INFO_MEMMAP (PVH_START_INFO_ADDR + 0x80)
#define MEMMAP_MAX ((0x1000 - 0x80) / sizeof(struct hvm_memmap_entry))

static uint64_t rd(const uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* Look for the PVH entry note in one PT_NOTE segment. */
static int find_entry_note(const uint8_t *p, uint64_t len, uint32_t *entry)
{
	uint64_t off = 0;
	while (len - off >= 12) {
		uint64_t namesz = rd(p + off, 4), descsz = rd(p + off + 4, 4);
		uint32_t type = (uint32_t)rd(p + off + 8, 4);
		uint64_t name_off = off + 12;
		uint64_t desc_off = name_off + ALIGN_UP(namesz, 4);
		if (namesz > len || descsz > len || desc_off > len ||
		    ALIGN_UP(descsz, 4) > len - desc_off)
			return -EINVAL;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    !memcmp(p + name_off, "Xen", 4) && (descsz == 4 || descsz == 8)) {
			*entry = (uint32_t)rd(p + desc_off, 4);
			return 1;
		}
		off = desc_off + ALIGN_UP(descsz, 4);
	}
	return 0;
}

int pvh_probe(struct boot_image *img, const struct mem_layout *l, struct boot_error *err)
{
	const uint8_t *k = img->kernel;
	const char *path = img->kernel_path;
	uint64_t len = img->kernel_len;

	if (len < 52)
		return boot_err(err, "kernel '%s': truncated ELF header", path);
	int is64 = k[4] == 2;
	if ((k[4] != 1 && k[4] != 2) || k[5] != 1)
		return boot_err(err, "kernel '%s': not a little-endian ELF32/ELF64 file", path);
	uint16_t type = (uint16_t)rd(k + 16, 2), machine = (uint16_t)rd(k + 18, 2);
	if (type != 2 || (machine != 62 && machine != 3))
		return boot_err(err, "kernel '%s': not an x86 executable ELF (type %u machine %u)",
				path, type, machine);
	if (is64 && len < 64)
		return boot_err(err, "kernel '%s': truncated ELF header", path);
	uint64_t phoff = is64 ? rd(k + 32, 8) : rd(k + 28, 4);
	uint64_t phentsize = rd(k + (is64 ? 54 : 42), 2), phnum = rd(k + (is64 ? 56 : 44), 2);
	if (phentsize < (is64 ? 56u : 32u) || phoff > len || phnum * phentsize > len - phoff)
		return boot_err(err, "kernel '%s': truncated or bad ELF program headers", path);

	int found = 0;
	img->nseg = 0;
	img->image_end = 0;
	for (uint64_t i = 0; i < phnum; i++) {
		const uint8_t *ph = k + phoff + i * phentsize;
		uint32_t ptype = (uint32_t)rd(ph, 4);
		uint64_t off = is64 ? rd(ph + 8, 8) : rd(ph + 4, 4);
		uint64_t paddr = is64 ? rd(ph + 24, 8) : rd(ph + 12, 4);
		uint64_t filesz = is64 ? rd(ph + 32, 8) : rd(ph + 16, 4);
		uint64_t memsz = is64 ? rd(ph + 40, 8) : rd(ph + 20, 4);
		if ((ptype == PT_LOAD || ptype == PT_NOTE) && (off > len || filesz > len - off))
			return boot_err(
			    err, "kernel '%s': truncated: segment %llu lies beyond the file end",
			    path, (unsigned long long)i);
		if (ptype == PT_NOTE && !found) {
			int r = find_entry_note(k + off, filesz, &img->pvh_entry);
			if (r < 0)
				return boot_err(err, "kernel '%s': malformed ELF note segment",
						path);
			found = r;
		}
		if (ptype != PT_LOAD || memsz == 0)
			continue;
		if (filesz > memsz || paddr < KERNEL_MIN_ADDR || paddr >= l->low_ram ||
		    memsz > l->low_ram - paddr) {
			char mem[32];
			format_size(l->ram_bytes, mem, sizeof(mem));
			return boot_err(
			    err,
			    "kernel '%s': segment at 0x%llx (+0x%llx) is outside RAM between "
			    "1 MiB and 0x%llx (--memory %s)",
			    path, (unsigned long long)paddr, (unsigned long long)memsz,
			    (unsigned long long)l->low_ram, mem);
		}
		if (img->nseg == PVH_MAX_SEGMENTS)
			return boot_err(err, "kernel '%s': more than %d loadable segments", path,
					PVH_MAX_SEGMENTS);
		img->seg[img->nseg++] = (struct pvh_segment){paddr, off, filesz, memsz};
		if (paddr + memsz > img->image_end)
			img->image_end = paddr + memsz;
	}
	if (!found)
		return boot_err(
		    err,
		    "kernel '%s': ELF without a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); "
		    "boot a bzImage instead",
		    path);
	if (img->nseg == 0)
		return boot_err(err, "kernel '%s': no loadable segments", path);
	int entry_ok = 0;
	for (unsigned i = 0; i < img->nseg; i++)
		if (img->pvh_entry >= img->seg[i].paddr &&
		    img->pvh_entry - img->seg[i].paddr < img->seg[i].filesz)
			entry_ok = 1;
	if (!entry_ok)
		return boot_err(err, "kernel '%s': PVH entry 0x%x is not inside a loaded segment",
				path, img->pvh_entry);
	return boot_place_initrd(img, l, ALIGN_UP(img->image_end, 4096), UINT64_MAX, err);
}

int pvh_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	     struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	int r = 0;
	for (unsigned i = 0; i < img->nseg && !r; i++) {
		const struct pvh_segment *s = &img->seg[i];
		r = guest_write(m, s->paddr, img->kernel + s->offset, s->filesz);
		if (!r && s->memsz > s->filesz)
			r = guest_zero(m, s->paddr + s->filesz, s->memsz - s->filesz);
	}
	r = r ? r : guest_write(m, CMDLINE_ADDR, img->cmdline, img->cmdline_len + 1);
	if (r)
		return r;

	struct hvm_start_info si = {
	    .magic = HVM_START_MAGIC,
	    .version = 1,
	    .cmdline_paddr = CMDLINE_ADDR,
	    .rsdp_paddr = rsdp,
	};
	if (img->initrd) {
		struct hvm_modlist_entry mod = {img->initrd_addr, img->initrd_len, 0, 0};
		r = guest_write(m, img->initrd_addr, img->initrd, img->initrd_len);
		r = r ? r : guest_write(m, START_INFO_MODLIST, &mod, sizeof(mod));
		si.nr_modules = 1;
		si.modlist_paddr = START_INFO_MODLIST;
	}
	struct e820_entry e820[MEMMAP_MAX];
	int n = layout_e820(&m->layout, e820, MEMMAP_MAX);
	if (n < 0)
		return n;
	struct hvm_memmap_entry mm[MEMMAP_MAX];
	for (int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_entry){e820[i].addr, e820[i].size, e820[i].type, 0};
	si.memmap_paddr = START_INFO_MEMMAP;
	si.memmap_entries = (uint32_t)n;
	r = r ? r : guest_write(m, START_INFO_MEMMAP, mm, (size_t)n * sizeof(mm[0]));
	r = r ? r : guest_write(m, PVH_START_INFO_ADDR, &si, sizeof(si));
	r = r ? r : boot_write_gdt(m, 0);
	if (r)
		return r;

	/* 32-bit protected mode, paging off, flat segments (PVH ABI). */
	boot_set_flat_segments(sregs, 0);
	sregs->cr0 = 0x11; /* ET | PE */
	sregs->cr3 = 0;
	sregs->cr4 = 0;
	sregs->efer = 0;
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2;
	regs->rip = img->pvh_entry;
	regs->rbx = PVH_START_INFO_ADDR;
	return 0;
}
