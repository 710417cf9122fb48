/* Boot files: read and dispatch to the Linux or PVH loader; initrd placement, GDT and segment
 * setup. */
#include "vmm/boot.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int boot_err(struct boot_error *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int read_boot_file(const char *what, const char *path, uint8_t **data, size_t *len,
			  struct boot_error *err)
{
	int r = read_file(path, KERNEL_FILE_MAX, data, len);
	if (r == -EFBIG)
		return boot_err(err, "%s '%s': larger than %llu MiB", what, path,
				KERNEL_FILE_MAX >> 20);
	if (r)
		return boot_err(err, "%s '%s': %s", what, path, strerror(-r));
	return 0;
}

int boot_probe_buffers(struct boot_image *img, enum boot_mode want, const struct mem_layout *l,
		       struct boot_error *err)
{
	static const uint8_t elf_magic[4] = {0x7f, 'E', 'L', 'F'};
	int is_elf = img->kernel_len >= 4 && !memcmp(img->kernel, elf_magic, 4);
	int is_bz = img->kernel_len >= 0x206 && !memcmp(img->kernel + 0x202, "HdrS", 4);

	if (img->cmdline_len >= CMDLINE_MAX)
		return boot_err(err, "command line: %zu bytes, the limit is %llu", img->cmdline_len,
				CMDLINE_MAX - 1);
	if (want == BOOT_PVH || (want == BOOT_AUTO && is_elf)) {
		if (!is_elf)
			return boot_err(err, "kernel '%s': not an ELF file, cannot boot it via PVH",
					img->kernel_path);
		img->mode = BOOT_PVH;
		return pvh_probe(img, l, err);
	}
	if (want == BOOT_LINUX && is_elf)
		return boot_err(err, "kernel '%s': an ELF file, not a bzImage (use --boot pvh)",
				img->kernel_path);
	if (!is_bz) {
		if (img->kernel_len < 0x206)
			return boot_err(err, "kernel '%s': truncated or not a kernel (%zu bytes)",
					img->kernel_path, img->kernel_len);
		return boot_err(
		    err,
		    "kernel '%s': neither a bzImage (no 'HdrS' signature at 0x202) nor an "
		    "ELF with a PVH note",
		    img->kernel_path);
	}
	img->mode = BOOT_LINUX;
	return linux_probe(img, l, err);
}

int boot_probe(const struct vm_config *c, const struct mem_layout *l, struct boot_image *img,
	       struct boot_error *err)
{
	int r;
	memset(img, 0, sizeof(*img));
	img->kernel_path = c->kernel;
	img->initrd_path = c->initrd;
	img->cmdline = c->cmdline ? c->cmdline : "";
	img->cmdline_len = strlen(img->cmdline);
	if ((r = read_boot_file("kernel", c->kernel, &img->kernel, &img->kernel_len, err)))
		goto fail;
	if (c->initrd &&
	    (r = read_boot_file("initrd", c->initrd, &img->initrd, &img->initrd_len, err)))
		goto fail;
	if ((r = boot_probe_buffers(img, c->boot, l, err)))
		goto fail;
	return 0;
fail:
	boot_image_free(img);
	return r;
}

void boot_image_free(struct boot_image *img)
{
	free(img->kernel);
	free(img->initrd);
	img->kernel = img->initrd = NULL;
}

int boot_place_initrd(struct boot_image *img, const struct mem_layout *l, uint64_t lowest_ok,
		      uint64_t highest_end, struct boot_error *err)
{
	if (!img->initrd)
		return 0;
	uint64_t top = highest_end < l->low_ram ? highest_end : l->low_ram;
	uint64_t need = ALIGN_UP((uint64_t)img->initrd_len, 4096);
	if (need > top || ALIGN_DOWN(top - need, 4096) < lowest_ok) {
		char mem[32];
		format_size(l->ram_bytes, mem, sizeof(mem));
		return boot_err(err,
				"initrd '%s': %zu bytes do not fit in RAM below 0x%llx after the "
				"kernel (ends at 0x%llx) with --memory %s",
				img->initrd_path, img->initrd_len, (unsigned long long)top,
				(unsigned long long)lowest_ok, mem);
	}
	img->initrd_addr = ALIGN_DOWN(top - need, 4096);
	return 0;
}

int boot_write_gdt(const struct guest_mem *m, int long_mode)
{
	const uint64_t gdt[4] = {
	    0, 0, long_mode ? 0x00af9b000000ffffULL : 0x00cf9b000000ffffULL, /* 0x10 code */
	    0x00cf93000000ffffULL,					     /* 0x18 data */
	};
	return guest_write(m, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

void boot_set_flat_segments(struct kvm_sregs *s, int long_mode)
{
	struct kvm_segment code = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = 0x10,
	    .type = 0xb, /* execute/read, accessed */
	    .present = 1,
	    .dpl = 0,
	    .db = long_mode ? 0 : 1,
	    .s = 1,
	    .l = long_mode ? 1 : 0,
	    .g = 1,
	};
	struct kvm_segment data = code;
	data.selector = 0x18;
	data.type = 0x3; /* read/write, accessed */
	data.db = 1;
	data.l = 0;
	s->cs = code;
	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = (struct kvm_segment){
	    .base = 0, .limit = 0x67, .selector = 0, .type = 0xb, .present = 1, .s = 0};
	s->ldt = (struct kvm_segment){.type = 0x2, .present = 1, .limit = 0xffff, .unusable = 0};
	s->gdt.base = BOOT_GDT_ADDR;
	s->gdt.limit = 4 * 8 - 1;
	s->idt.base = 0;
	s->idt.limit = 0;
}

int boot_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	      struct kvm_regs *regs, struct kvm_sregs *sregs)
{
	if (img->mode == BOOT_LINUX)
		return linux_load(img, m, rsdp, regs, sregs);
	return pvh_load(img, m, rsdp, regs, sregs);
}
