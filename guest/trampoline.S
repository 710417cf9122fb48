/* trampoline.S — AP startup code copied to TRAMP_BASE: real -> protected -> long mode. */
#include "guest.h"

#define T(sym) (TRAMP_BASE + (sym) - tramp_start)

	.section .tramp, "ax"
	.global tramp_start, tramp_end, tramp_cr3, tramp_rsp, tramp_arg, tramp_entry
	.global tramp_32, tramp_64, tramp_data

	.code16
tramp_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl tramp_gdtr - tramp_start
	mov %cr0, %eax
	or $1, %eax			/* PE */
	mov %eax, %cr0
	ljmpl $0x08, $T(tramp_32)

	.code32
tramp_32:
	mov $0x10, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov T(tramp_cr3), %eax
	mov %eax, %cr3
	mov $0xc0000080, %ecx		/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	or $0x80010000, %eax		/* PG | WP */
	mov %eax, %cr0
	ljmp $0x18, $T(tramp_64)

	.code64
tramp_64:
	mov T(tramp_rsp), %rsp
	mov T(tramp_arg), %rdi
	mov T(tramp_entry), %rax
	call *%rax
1:	cli
	hlt
	jmp 1b

	.balign 16
tramp_data:
tramp_gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08: 32-bit code */
	.quad 0x00cf92000000ffff	/* 0x10: data */
	.quad 0x00af9a000000ffff	/* 0x18: 64-bit code */
tramp_gdtr:
	.word tramp_gdtr - tramp_gdt - 1
	.long T(tramp_gdt)
	.balign 8
tramp_cr3:
	.quad 0
tramp_rsp:
	.quad 0
tramp_arg:
	.quad 0
tramp_entry:
	.quad 0
tramp_end:

	.section .note.GNU-stack, "", @progbits
