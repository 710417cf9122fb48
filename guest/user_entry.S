/* user_entry.S — ring-3 side: user_call() entry trampoline, the system call stub, fault probes.
 *
 * A system call is `ud2` (a fault: #UD leaves RIP on the instruction, the kernel steps over it),
 * not `int3` (a trap: #BP leaves RIP after it). Should a hypervisor lose the event while the
 * vCPU's state is saved and restored, the guest executes the ud2 again; a lost int3 would skip
 * the call. */
#include "guest.h"

	.section .user.text, "ax"
	.code64

/* Entered by iretq from user_call() with rdi = fn, rsi = arg, rsp = user stack top. */
	.global user_entry
user_entry:
	mov %rdi, %rax
	mov %rsi, %rdi
	call *%rax
	mov %rax, %rdi
	mov $SYS_EXIT, %eax
	ud2				/* the system call */
	ud2				/* SYS_EXIT never returns */

/* uint64_t u_syscall(nr, a, b) */
	.global u_syscall
u_syscall:
	mov %rdi, %rax
	mov %rsi, %rdi
	mov %rdx, %rsi
	ud2				/* the system call */
	ret

/* Probes: load PROBE_MAGIC, fault (or trap) on the _insn instruction; the kernel resumes at the
 * return address, so user_call() returns PROBE_MAGIC when delivery and resumption both worked. */
.macro UPROBE name, setup, insn:vararg
	.global \name, \name\()_insn
\name:
	\setup
	mov $PROBE_MAGIC, %eax
\name\()_insn:
	\insn
	ret
.endm

	UPROBE u_probe_ud2, nop, ud2
	UPROBE u_probe_div0, "xor %ecx, %ecx; xor %edx, %edx", div %ecx
	UPROBE u_probe_read, nop, mov (%rdi), %rax
	UPROBE u_probe_write, nop, movq $1, (%rdi)
	UPROBE u_probe_hlt, nop, hlt
	UPROBE u_probe_cli, nop, cli
	UPROBE u_probe_int3, nop, int3
	UPROBE u_probe_in, "mov $0x3f8, %edx", inb %dx, %al

	.section .note.GNU-stack, "", @progbits
