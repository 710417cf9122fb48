/* vCPU state for save/restore: read from KVM, written back in KVM's order, carried as JSON. */
#ifndef BERTH_VCPU_STATE_H
#define BERTH_VCPU_STATE_H

#include <jansson.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vcpu;

struct vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave;
	size_t xsave_size;
	struct kvm_xcrs xcrs;
	struct kvm_msr_entry *msrs;
	unsigned nmsrs;
	uint64_t tsc_deadline;
	bool has_tsc_deadline;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dregs;
};

/* The MSRs KVM saves and restores (KVM_GET_MSR_INDEX_LIST), without the TSC deadline. */
int kvm_msr_list(int kvm_fd, uint32_t **list, unsigned *n);
/* With the vCPU outside KVM_RUN. -errno, logged. */
int vcpu_state_get(struct vcpu *v, const uint32_t *msr_list, unsigned nmsr, struct vcpu_state *s);
int vcpu_state_set(struct vcpu *v, const struct vcpu_state *s);
void vcpu_state_free(struct vcpu_state *s);
/* The vCPU stopped in the middle of delivering an exception or a software interrupt (int3, intN):
 * such an event is re-injected on restore only as well as the host's KVM re-creates it, so a save
 * prefers a moment without one. */
bool vcpu_event_in_flight(struct vcpu *v);

json_t *vcpu_state_to_json(const struct vcpu_state *s);
/* -EINVAL with a message naming the field for anything missing, malformed or of the wrong size. */
int vcpu_state_from_json(json_t *o, size_t xsave_size, struct vcpu_state *s, char *msg,
			 size_t msglen);

#endif
