/* entry.S — PVH ELF note, 32-bit entry, boot page tables (0-4 GiB), long mode, kmain(). */
#include "guest.h"

#define PTE_P 0x01
#define PTE_RW 0x02
#define PTE_U 0x04
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS 0x80

	/* XEN_ELFNOTE_PHYS32_ENTRY (18): 32-bit physical entry, protected mode, paging off. */
	.pushsection .note.pvh, "a", @note
	.balign 4
	.long 4			/* namesz: "Xen\0" */
	.long 4			/* descsz */
	.long 18		/* type */
	.asciz "Xen"
	.balign 4
	.long pvh_entry
	.balign 4
	.popsection

	.section .text.boot32, "ax"
	.code32
	.global pvh_entry
pvh_entry:
	cli
	cld
	mov %ebx, %esi			/* hvm_start_info physical address */
	lgdt boot_gdtr
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss

	/* Clear PML4 and PDPT (the loader zeroes .bss, but these must be exact). */
	xor %eax, %eax
	mov $boot_pml4, %edi
	mov $2048, %ecx
	rep stosl

	/* PML4[0] -> PDPT, PDPT[0..3] -> four page directories. */
	mov $boot_pdpt + (PTE_P | PTE_RW | PTE_U), %eax
	mov %eax, boot_pml4
	mov $boot_pd + (PTE_P | PTE_RW | PTE_U), %eax
	mov $boot_pdpt, %edi
	mov $4, %ecx
1:	mov %eax, (%edi)
	movl $0, 4(%edi)
	add $4096, %eax
	add $8, %edi
	loop 1b

	/* 0-3 GiB: write-back, user-accessible; 3-4 GiB: uncached, supervisor (LAPIC, IOAPIC, ...).
	 * paging.c refines this per 2 MiB page from the memory map once in 64-bit mode. */
	mov $boot_pd, %edi
	mov $(PTE_P | PTE_RW | PTE_U | PTE_PS), %eax
	mov $1536, %ecx
2:	mov %eax, (%edi)
	movl $0, 4(%edi)
	add $0x200000, %eax
	add $8, %edi
	loop 2b
	mov $(0xc0000000 | PTE_P | PTE_RW | PTE_PWT | PTE_PCD | PTE_PS), %eax
	mov $512, %ecx
3:	mov %eax, (%edi)
	movl $0, 4(%edi)
	add $0x200000, %eax
	add $8, %edi
	loop 3b

	mov $boot_pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80010001, %eax		/* PG | WP | PE */
	mov %eax, %cr0
	ljmp $SEL_KCODE, $long_mode

	.code64
long_mode:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $cpu_stacks + KSTACK_SIZE, %rsp
	mov %esi, %edi
	call kmain
4:	cli
	hlt
	jmp 4b

	.section .rodata
	.balign 16
boot_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08: 64-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
boot_gdt_end:
	.balign 4
boot_gdtr:
	.word boot_gdt_end - boot_gdt - 1
	.long boot_gdt

	.section .bss.pgtables, "aw", @nobits
	.balign 4096
	.global boot_pml4, boot_pdpt, boot_pd
boot_pml4:
	.skip 4096
boot_pdpt:
	.skip 4096
boot_pd:
	.skip 4 * 4096

	.section .note.GNU-stack, "", @progbits
