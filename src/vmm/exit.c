/* KVM exit dispatch: one table indexed by exit reason; PIO/MMIO go to the buses, failures are
 * reported. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "vmm/exit.h"
#include "vmm/vm.h"

static int exit_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	unsigned size = run->io.size;
	if (size != 1 && size != 2 && size != 4)
		return EXIT_CONTINUE;
	for (uint32_t i = 0; i < run->io.count; i++, data += size) {
		uint64_t val = 0;
		if (is_write)
			memcpy(&val, data, size);
		bus_access(&v->vm->pio, run->io.port, size, is_write, &val);
		if (!is_write)
			memcpy(data, &val, size);
	}
	return EXIT_CONTINUE;
}

static int exit_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	unsigned len = run->mmio.len;
	uint64_t val = 0;
	if (len != 1 && len != 2 && len != 4 && len != 8)
		return EXIT_CONTINUE;
	if (run->mmio.is_write)
		memcpy(&val, run->mmio.data, len);
	bus_access(&v->vm->mmio, run->mmio.phys_addr, len, run->mmio.is_write, &val);
	if (!run->mmio.is_write)
		memcpy(run->mmio.data, &val, len);
	return EXIT_CONTINUE;
}

static int exit_continue(struct vcpu *v)
{
	(void)v;
	return EXIT_CONTINUE;
}

static int exit_shutdown(struct vcpu *v)
{
	log_err(v->tag, "guest crashed: triple fault (KVM_EXIT_SHUTDOWN)");
	vcpu_dump(v, NULL, 0);
	vm_request_stop(v->vm, STOP_CRASH);
	return EXIT_STOP;
}

static const char *internal_suberror(uint32_t s)
{
	switch (s) {
	case KVM_INTERNAL_ERROR_EMULATION:
		return "emulation failure";
	case KVM_INTERNAL_ERROR_SIMUL_EX:
		return "exception while delivering an exception";
	case KVM_INTERNAL_ERROR_DELIVERY_EV:
		return "event delivery failed";
	default:
		return "unknown";
	}
}

static int exit_internal_error(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t sub = run->internal.suberror;
	uint8_t insn[16];
	unsigned insn_len = 0;
	char extra[160] = "";

	if (sub == KVM_INTERNAL_ERROR_EMULATION && run->emulation_failure.ndata >= 1 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
		insn_len = run->emulation_failure.insn_size;
		if (insn_len > sizeof(insn))
			insn_len = sizeof(insn);
		memcpy(insn, run->emulation_failure.insn_bytes, insn_len);
	} else {
		size_t off = 0;
		for (uint32_t i = 0; i < run->internal.ndata && i < 16 && off < sizeof(extra); i++)
			off +=
			    (size_t)snprintf(extra + off, sizeof(extra) - off, " data[%u]=0x%llx",
					     i, (unsigned long long)run->internal.data[i]);
	}
	log_err(v->tag, "KVM internal error (KVM_EXIT_INTERNAL_ERROR): suberror %u (%s)%s", sub,
		internal_suberror(sub), extra);
	vcpu_dump(v, insn_len ? insn : NULL, insn_len);
	vm_request_stop(v->vm, STOP_KVM_ERROR);
	return EXIT_STOP;
}

static int exit_fail_entry(struct vcpu *v)
{
	log_err(v->tag, "VM entry failed (KVM_EXIT_FAIL_ENTRY): hardware reason 0x%llx on cpu %u",
		(unsigned long long)v->run->fail_entry.hardware_entry_failure_reason,
		v->run->fail_entry.cpu);
	vcpu_dump(v, NULL, 0);
	vm_request_stop(v->vm, STOP_KVM_ERROR);
	return EXIT_STOP;
}

static int exit_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		log_info(v->tag, "guest powered off (system event)");
		vm_request_stop(v->vm, STOP_POWEROFF);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		log_info(v->tag, "guest reset (system event)");
		vm_request_stop(v->vm, STOP_REBOOT);
		break;
	default:
		log_err(v->tag, "guest crashed (system event type %u)", v->run->system_event.type);
		vm_request_stop(v->vm, STOP_CRASH);
		break;
	}
	return EXIT_STOP;
}

static int exit_unexpected(struct vcpu *v)
{
	static const char *const names[] = {
	    [KVM_EXIT_UNKNOWN] = "KVM_EXIT_UNKNOWN",
	    [KVM_EXIT_EXCEPTION] = "KVM_EXIT_EXCEPTION",
	    [KVM_EXIT_HYPERCALL] = "KVM_EXIT_HYPERCALL",
	    [KVM_EXIT_DEBUG] = "KVM_EXIT_DEBUG",
	    [KVM_EXIT_HLT] = "KVM_EXIT_HLT",
	};
	uint32_t r = v->run->exit_reason;
	const char *name = r < sizeof(names) / sizeof(names[0]) && names[r] ? names[r] : "unknown";
	if (r == KVM_EXIT_UNKNOWN)
		log_err(v->tag, "unexpected exit %s (hardware reason 0x%llx)", name,
			(unsigned long long)v->run->hw.hardware_exit_reason);
	else
		log_err(v->tag, "unexpected exit %u (%s)", r, name);
	vcpu_dump(v, NULL, 0);
	vm_request_stop(v->vm, STOP_KVM_ERROR);
	return EXIT_STOP;
}

static const exit_handler_fn exit_table[] = {
    [KVM_EXIT_IO] = exit_io,
    [KVM_EXIT_MMIO] = exit_mmio,
    [KVM_EXIT_IRQ_WINDOW_OPEN] = exit_continue,
    [KVM_EXIT_INTR] = exit_continue,
    [KVM_EXIT_SHUTDOWN] = exit_shutdown,
    [KVM_EXIT_INTERNAL_ERROR] = exit_internal_error,
    [KVM_EXIT_FAIL_ENTRY] = exit_fail_entry,
    [KVM_EXIT_SYSTEM_EVENT] = exit_system_event,
};

int exit_dispatch(struct vcpu *v)
{
	uint32_t r = v->run->exit_reason;
	exit_handler_fn fn = r < sizeof(exit_table) / sizeof(exit_table[0]) ? exit_table[r] : NULL;
	return fn ? fn(v) : exit_unexpected(v);
}
