/* vCPU threads: the KVM_RUN loop, kicking a vCPU out of the guest, and register dumps for crash
 * reports. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "vmm/exit.h"
#include "vmm/vm.h"

#define KICK_SIGNAL SIGUSR1

void vcpu_kick(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, KICK_SIGNAL);
}

void vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	pthread_mutex_lock(&vm->run_lock);
	vm->nparked++;
	pthread_cond_broadcast(&vm->run_cond); /* a pauser counts the parked threads */
	while (__atomic_load_n(&vm->pause_req, __ATOMIC_SEQ_CST) &&
	       __atomic_load_n(&vm->stop_reason, __ATOMIC_SEQ_CST) == STOP_NONE)
		pthread_cond_wait(&vm->run_cond, &vm->run_lock);
	vm->nparked--;
	pthread_mutex_unlock(&vm->run_lock);
}

void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct vm *vm = v->vm;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	char name[16];
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name); /* "vcpuN": benchmarks tell vCPU time apart */

	/* a VM started paused parks before its first KVM_RUN */
	if (__atomic_load_n(&vm->pause_req, __ATOMIC_SEQ_CST))
		vcpu_park(v);

	while (__atomic_load_n(&vm->stop_reason, __ATOMIC_SEQ_CST) == STOP_NONE) {
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				/* Parked only here: KVM has completed any pending port/MMIO exit
				 * before returning EINTR, so the vCPU state is whole. */
				if (__atomic_load_n(&vm->pause_req, __ATOMIC_SEQ_CST))
					vcpu_park(v);
				continue;
			}
			log_err(v->tag, "KVM_RUN failed: %s", strerror(errno));
			vm_request_stop(vm, STOP_VMM_ERROR);
			break;
		}
		if (exit_dispatch(v) == EXIT_STOP)
			break;
	}
	return NULL;
}

static const char *cpu_mode(const struct kvm_sregs *s)
{
	if (!(s->cr0 & 1))
		return "real";
	if (s->efer & 0x400)
		return s->cs.l ? "long (64-bit)" : "long (compat)";
	return s->cr0 & 0x80000000 ? "protected (paged)" : "protected";
}

/* Read up to 16 code bytes at RIP through the guest's page tables. */
static unsigned code_at_rip(struct vcpu *v, const struct kvm_regs *r, const struct kvm_sregs *s,
			    uint8_t *buf)
{
	uint64_t lin = s->cs.base + r->rip;
	unsigned got = 0;
	while (got < 16) {
		struct kvm_translation t = {.linear_address = lin + got};
		if (ioctl(v->fd, KVM_TRANSLATE, &t) < 0 || !t.valid)
			break;
		unsigned chunk = 16 - got;
		uint64_t page_left = 4096 - ((lin + got) & 4095);
		if (chunk > page_left)
			chunk = (unsigned)page_left;
		const uint8_t *p = gpa_to_hva(&v->vm->mem, t.physical_address, chunk);
		if (!p)
			break;
		memcpy(buf + got, p, chunk);
		got += chunk;
	}
	return got;
}

void vcpu_dump(struct vcpu *v, const uint8_t *insn, unsigned insn_len)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_vcpu_events ev;
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		log_err(v->tag, "cannot read registers: %s", strerror(errno));
		return;
	}
	log_err(v->tag, "mode=%s cpl=%u rip=0x%016llx rsp=0x%016llx rflags=0x%08llx", cpu_mode(&s),
		s.cs.selector & 3, (unsigned long long)r.rip, (unsigned long long)r.rsp,
		(unsigned long long)r.rflags);
	log_err(v->tag, "rax=0x%016llx rbx=0x%016llx rcx=0x%016llx rdx=0x%016llx",
		(unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
		(unsigned long long)r.rdx);
	log_err(v->tag, "rsi=0x%016llx rdi=0x%016llx rbp=0x%016llx r8 =0x%016llx",
		(unsigned long long)r.rsi, (unsigned long long)r.rdi, (unsigned long long)r.rbp,
		(unsigned long long)r.r8);
	log_err(v->tag, "r9 =0x%016llx r10=0x%016llx r11=0x%016llx r12=0x%016llx",
		(unsigned long long)r.r9, (unsigned long long)r.r10, (unsigned long long)r.r11,
		(unsigned long long)r.r12);
	log_err(v->tag, "r13=0x%016llx r14=0x%016llx r15=0x%016llx", (unsigned long long)r.r13,
		(unsigned long long)r.r14, (unsigned long long)r.r15);
	log_err(v->tag, "cr0=0x%llx cr2=0x%llx cr3=0x%llx cr4=0x%llx efer=0x%llx",
		(unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
		(unsigned long long)s.cr4, (unsigned long long)s.efer);
	log_err(v->tag, "cs=0x%04x ss=0x%04x ds=0x%04x gdt=0x%llx/%u idt=0x%llx/%u tr=0x%04x",
		s.cs.selector, s.ss.selector, s.ds.selector, (unsigned long long)s.gdt.base,
		s.gdt.limit, (unsigned long long)s.idt.base, s.idt.limit, s.tr.selector);
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) == 0 && ev.exception.injected)
		log_err(v->tag, "pending exception vector %u error_code 0x%x", ev.exception.nr,
			ev.exception.error_code);

	uint8_t buf[16];
	const char *src = "exit data";
	if (!insn) {
		insn_len = code_at_rip(v, &r, &s, buf);
		insn = buf;
		src = "memory at rip";
	}
	if (insn_len) {
		char hex[16 * 3 + 1];
		for (unsigned i = 0; i < insn_len && i < 16; i++)
			snprintf(hex + 3 * i, 4, "%02x ", insn[i]);
		hex[3 * (insn_len < 16 ? insn_len : 16) - 1] = 0;
		log_err(v->tag, "instruction bytes (%s, %u): %s", src, insn_len, hex);
	} else {
		log_err(v->tag, "instruction bytes: unavailable (rip not mapped)");
	}
}
