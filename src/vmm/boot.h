/* Kernel boot: probe and validate boot files (before the VM exists), then load them and set the
 * BSP. */
#ifndef BERTH_BOOT_H
#define BERTH_BOOT_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"
#include "vmm/layout.h"
#include "vmm/memory.h"

#define KERNEL_FILE_MAX (512ULL << 20)

struct pvh_segment {
	uint64_t paddr, offset, filesz, memsz;
};

#define PVH_MAX_SEGMENTS 16

struct boot_image {
	enum boot_mode mode; /* BOOT_LINUX or BOOT_PVH once probed */
	const char *kernel_path, *initrd_path;
	uint8_t *kernel;
	size_t kernel_len;
	uint8_t *initrd;
	size_t initrd_len;
	uint64_t initrd_addr; /* where the initrd goes (0 if none) */
	const char *cmdline;
	size_t cmdline_len;

	/* Linux boot protocol */
	uint16_t protocol;  /* e.g. 0x020f */
	size_t setup_len;   /* bytes of real-mode setup (incl. boot sector) in the file */
	uint64_t load_addr; /* where the protected-mode kernel goes */
	uint64_t init_size; /* memory the kernel needs from load_addr while booting */

	/* PVH */
	uint32_t pvh_entry;
	struct pvh_segment seg[PVH_MAX_SEGMENTS];
	unsigned nseg;
	uint64_t image_end; /* highest byte + 1 used by the kernel image */
};

/* The message names the file and the reason. */
struct boot_error {
	char msg[512];
};

/*
 * Read kernel/initrd and validate them against the memory layout: format, truncation, fits in
 * RAM, command line length. Nothing is written to guest memory. -EINVAL/-errno with err filled.
 */
int boot_probe(const struct vm_config *c, const struct mem_layout *l, struct boot_image *img,
	       struct boot_error *err);
/* Same, from buffers already in memory (used by the probe and by unit tests). Takes no ownership.
 */
int boot_probe_buffers(struct boot_image *img, enum boot_mode want, const struct mem_layout *l,
		       struct boot_error *err);
void boot_image_free(struct boot_image *img);

/*
 * Write the kernel, initrd, command line and boot structures (zero page or PVH start info, e820,
 * page tables, GDT) to guest memory, and fill the BSP's registers. sregs must hold KVM's current
 * values (they are modified in place).
 */
int boot_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	      struct kvm_regs *regs, struct kvm_sregs *sregs);

/* Per-format parts (boot_linux.c, boot_pvh.c). */
int linux_probe(struct boot_image *img, const struct mem_layout *l, struct boot_error *err);
int linux_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	       struct kvm_regs *regs, struct kvm_sregs *sregs);
/* Build the zero page (4096 bytes) for img; exposed for unit tests. */
int linux_build_zero_page(const struct boot_image *img, const struct mem_layout *l, uint64_t rsdp,
			  uint8_t *zp);
int pvh_probe(struct boot_image *img, const struct mem_layout *l, struct boot_error *err);
int pvh_load(const struct boot_image *img, const struct guest_mem *m, uint64_t rsdp,
	     struct kvm_regs *regs, struct kvm_sregs *sregs);

/* Shared helpers (boot.c). */
int boot_err(struct boot_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Place the initrd at the top of low RAM, above lowest_ok. */
int boot_place_initrd(struct boot_image *img, const struct mem_layout *l, uint64_t lowest_ok,
		      uint64_t highest_end, struct boot_error *err);
/* GDT with flat code (64-bit if long_mode) at selector 0x10 and data at 0x18. */
int boot_write_gdt(const struct guest_mem *m, int long_mode);
void boot_set_flat_segments(struct kvm_sregs *s, int long_mode);

#endif
