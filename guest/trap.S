/* trap.S — IDT stubs, common trap path, ring-3 entry/exit (user_call/user_return), probes. */
#include "guest.h"

	.text
	.code64

/* One stub per vector: push a dummy error code where the CPU pushes none, then the vector. */
.macro TRAP_STUB vec
	.balign 16
trap_stub_\vec:
	/* vectors with a CPU-pushed error code: 8, 10-14, 17, 21, 29, 30 */
	.if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || \
	    (\vec == 29) || (\vec == 30)
	.else
	push $0
	.endif
	push $\vec
	jmp trap_common
.endm

	.altmacro
.macro STUB_ADDR vec
	.quad trap_stub_\vec
.endm

	.set vec, 0
	.rept 256
	TRAP_STUB %vec
	.set vec, vec + 1
	.endr

	.section .rodata
	.balign 8
	.global trap_stubs
trap_stubs:
	.set vec, 0
	.rept 256
	STUB_ADDR %vec
	.set vec, vec + 1
	.endr
	.noaltmacro

	.text
	.balign 16
trap_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	cld
	mov %rsp, %rdi
	call trap_dispatch
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp			/* vector, error code */
	iretq

/* uint64_t user_call(fn, arg, ustack_top): run fn(arg) at ring 3 until it issues SYS_EXIT. */
	.global user_call
user_call:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rax
	and $~(KSTACK_SIZE - 1), %rax	/* struct percpu */
	mov %rsp, PERCPU_KCTX_RSP(%rax)
	mov %rsp, PERCPU_TSS_RSP0(%rax)	/* traps from ring 3 land below this frame */
	push $SEL_UDATA			/* ss */
	push %rdx			/* rsp */
	push $0x202			/* rflags: IF */
	push $SEL_UCODE			/* cs */
	lea user_entry(%rip), %rax
	push %rax			/* rip */
	xor %eax, %eax
	xor %ebx, %ebx
	xor %ecx, %ecx
	xor %edx, %edx
	xor %ebp, %ebp
	xor %r8d, %r8d
	xor %r9d, %r9d
	xor %r10d, %r10d
	xor %r11d, %r11d
	xor %r12d, %r12d
	xor %r13d, %r13d
	xor %r14d, %r14d
	xor %r15d, %r15d
	iretq

/* void user_return(value): called from the SYS_EXIT handler; resumes the matching user_call(). */
	.global user_return
user_return:
	mov %rsp, %rax
	and $~(KSTACK_SIZE - 1), %rax
	mov PERCPU_KCTX_RSP(%rax), %rsp
	mov %rdi, %rax
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

/* Ring-0 probes for the exceptions test: load PROBE_MAGIC, fault on the _insn instruction, and the
 * handler resumes at the return address (it emulates the `ret`). */
.macro KPROBE name, insn:vararg
	.global \name, \name\()_insn
\name:
	mov $PROBE_MAGIC, %eax
\name\()_insn:
	\insn
	ret
.endm

	KPROBE k_probe_read, mov (%rdi), %rax
	KPROBE k_probe_write, movq $0, (%rdi)
	KPROBE k_probe_ud2, ud2

/* Deliberately forbidden at ring 0 on our hosts (emulation failure): only the `ring0-popcnt`
 * action calls it, and test_guest_disasm.py exempts exactly this symbol. */
	KPROBE ring0_popcnt_probe, popcnt %rdi, %rax

	.section .note.GNU-stack, "", @progbits
