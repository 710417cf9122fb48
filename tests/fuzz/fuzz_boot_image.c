/* libFuzzer target: arbitrary bytes as a kernel image through boot_probe_buffers and the Linux zero
 * page. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "vmm/boot.h"

/*
 * Input: byte 0 picks the boot mode (bits 0-1: auto/linux/pvh), the command line length
 * (bits 2-3) and whether there is an initrd and how big (bits 4-7); byte 1 picks the RAM size
 * (64M..1G in 64M steps); the rest is the kernel file.
 */
static const size_t cmdline_lens[4] = {0, 200, 4096, CMDLINE_MAX};

static void check(int ok)
{
	if (!ok)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char cmdline[CMDLINE_MAX + 1];
	static uint8_t initrd_byte;
	if (size < 2)
		return 0;
	if (!cmdline[0])
		memset(cmdline, 'c', CMDLINE_MAX);

	enum boot_mode want = (enum boot_mode)((data[0] & 3) % 3);
	struct mem_layout l;
	check(layout_compute((64 + (uint64_t)(data[1] % 16) * 64) * MiB, &l) == 0);

	/* An exact-size heap copy, so the sanitizer sees any read past the end of the file. */
	size_t klen = size - 2;
	uint8_t *kernel = malloc(klen ? klen : 1);
	check(kernel != NULL);
	memcpy(kernel, data + 2, klen);

	struct boot_image img;
	memset(&img, 0, sizeof(img));
	img.kernel_path = "fuzz-kernel";
	img.initrd_path = "fuzz-initrd";
	img.kernel = kernel;
	img.kernel_len = klen;
	img.cmdline_len = cmdline_lens[data[0] >> 2 & 3];
	cmdline[img.cmdline_len] = 0;
	img.cmdline = cmdline;
	if (data[0] >> 4) {
		/* Probing only looks at the initrd's size, never its bytes. */
		img.initrd = &initrd_byte;
		img.initrd_len = (size_t)(data[0] >> 4) << 22; /* 4M..60M */
	}

	struct boot_error err;
	memset(&err, 0, sizeof(err));
	int r = boot_probe_buffers(&img, want, &l, &err);
	cmdline[img.cmdline_len] = 'c';
	if (r) {
		check(r == -EINVAL);
		check(err.msg[0] != 0);
		check(memchr(err.msg, 0, sizeof(err.msg)) != NULL);
		goto out;
	}

	/* Accepted: everything we will copy lies inside the file and inside low RAM. */
	check(img.mode == BOOT_LINUX || img.mode == BOOT_PVH);
	check(want == BOOT_AUTO || img.mode == want);
	if (img.initrd) {
		check(img.initrd_addr % 4096 == 0);
		check(img.initrd_addr >= KERNEL_MIN_ADDR);
		check(img.initrd_addr + img.initrd_len <= l.low_ram);
	}
	if (img.mode == BOOT_LINUX) {
		check(img.setup_len < klen);
		check(img.load_addr >= KERNEL_MIN_ADDR);
		check(img.load_addr + img.init_size <= l.low_ram);
		check(klen - img.setup_len <= img.init_size);
		if (img.initrd)
			check(img.initrd_addr >= img.load_addr + img.init_size);
		uint8_t zp[4096];
		check(linux_build_zero_page(&img, &l, 0xE0000, zp) == 0);
		check(zp[0x210] == 0xff);
		check(zp[0x1e8] >= 5 && zp[0x1e8] <= 6);
	} else {
		check(img.nseg >= 1 && img.nseg <= PVH_MAX_SEGMENTS);
		int entry_ok = 0;
		for (unsigned i = 0; i < img.nseg; i++) {
			const struct pvh_segment *s = &img.seg[i];
			check(s->offset <= klen && s->filesz <= klen - s->offset);
			check(s->filesz <= s->memsz);
			check(s->paddr >= KERNEL_MIN_ADDR && s->paddr + s->memsz <= l.low_ram);
			check(s->paddr + s->memsz <= img.image_end);
			if (img.pvh_entry >= s->paddr && img.pvh_entry - s->paddr < s->filesz)
				entry_ok = 1;
		}
		check(entry_ok);
		if (img.initrd)
			check(img.initrd_addr >= img.image_end);
	}
out:
	free(kernel);
	return 0;
}
