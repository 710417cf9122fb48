/* vCPU state for save/restore: everything KVM keeps per vCPU (registers, FPU/XSAVE, XCRs, every
 * MSR KVM reports, LAPIC, pending events, MP state, debug registers), read, written back in the
 * order KVM needs, and carried in JSON as named base64 blobs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "common/b64.h"
#include "common/log.h"
#include "vmm/vcpu_state.h"
#include "vmm/vm.h"

#define MSR_IA32_TSC 0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

int kvm_msr_list(int kvm_fd, uint32_t **list, unsigned *n)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	*list = NULL;
	*n = 0;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int e = -errno;
		free(l);
		return e;
	}
	uint32_t *out = malloc((l->nmsrs ? l->nmsrs : 1) * sizeof(*out));
	if (!out) {
		free(l);
		return -ENOMEM;
	}
	/* The TSC deadline is written after the LAPIC (it needs the timer mode): keep it apart. */
	for (unsigned i = 0; i < l->nmsrs; i++)
		if (l->indices[i] != MSR_IA32_TSC_DEADLINE)
			out[(*n)++] = l->indices[i];
	free(l);
	*list = out;
	return 0;
}

/* Read the MSRs in list; an MSR KVM refuses to read here is skipped (and not restored). */
static int get_msrs(struct vcpu *v, const uint32_t *list, unsigned n, struct vcpu_state *s)
{
	struct kvm_msrs *m = calloc(1, sizeof(*m) + (n + 1) * sizeof(struct kvm_msr_entry));
	if (!m)
		return -ENOMEM;
	s->msrs = calloc(n + 1, sizeof(*s->msrs));
	if (!s->msrs) {
		free(m);
		return -ENOMEM;
	}
	unsigned done = 0;
	while (done < n) {
		m->nmsrs = n - done;
		for (unsigned i = 0; i < m->nmsrs; i++)
			m->entries[i] = (struct kvm_msr_entry){.index = list[done + i]};
		int got = ioctl(v->fd, KVM_GET_MSRS, m);
		if (got < 0) {
			int e = -errno;
			free(m);
			return e;
		}
		for (int i = 0; i < got; i++)
			s->msrs[s->nmsrs++] = m->entries[i];
		done += (unsigned)got + 1; /* skip the one KVM stopped at */
		if ((unsigned)got == m->nmsrs)
			break;
	}
	m->nmsrs = 1;
	m->entries[0] = (struct kvm_msr_entry){.index = MSR_IA32_TSC_DEADLINE};
	if (ioctl(v->fd, KVM_GET_MSRS, m) == 1) {
		s->tsc_deadline = m->entries[0].data;
		s->has_tsc_deadline = true;
	}
	free(m);
	return 0;
}

int vcpu_state_get(struct vcpu *v, const uint32_t *msr_list, unsigned nmsr, struct vcpu_state *s)
{
	memset(s, 0, sizeof(*s));
	int xsave2 = ioctl(v->vm->host->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	s->xsave_size =
	    xsave2 > (int)sizeof(struct kvm_xsave) ? (size_t)xsave2 : sizeof(struct kvm_xsave);
	if (!(s->xsave = calloc(1, s->xsave_size)))
		return -ENOMEM;
	if (ioctl(v->fd, KVM_GET_REGS, &s->regs) < 0 ||
	    ioctl(v->fd, KVM_GET_SREGS, &s->sregs) < 0 ||
	    ioctl(v->fd, xsave2 > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE,
		  s->xsave) < 0 ||
	    ioctl(v->fd, KVM_GET_XCRS, &s->xcrs) < 0 ||
	    ioctl(v->fd, KVM_GET_LAPIC, &s->lapic) < 0 ||
	    ioctl(v->fd, KVM_GET_VCPU_EVENTS, &s->events) < 0 ||
	    ioctl(v->fd, KVM_GET_MP_STATE, &s->mp) < 0 ||
	    ioctl(v->fd, KVM_GET_DEBUGREGS, &s->dregs) < 0) {
		int e = -errno;
		log_err(v->tag, "reading vCPU state: %s", strerror(errno));
		return e;
	}
	return get_msrs(v, msr_list, nmsr, s);
}

int vcpu_state_set(struct vcpu *v, const struct vcpu_state *s)
{
	const char *what = NULL;
	if (ioctl(v->fd, KVM_SET_REGS, &s->regs) < 0)
		what = "registers";
	else if (ioctl(v->fd, KVM_SET_XSAVE, s->xsave) < 0)
		what = "XSAVE state";
	else if (ioctl(v->fd, KVM_SET_XCRS, &s->xcrs) < 0)
		what = "XCRs";
	else if (ioctl(v->fd, KVM_SET_SREGS, &s->sregs) < 0)
		what = "segment and control registers";
	if (what)
		goto fail;
	if (s->nmsrs) {
		struct kvm_msrs *m =
		    calloc(1, sizeof(*m) + s->nmsrs * sizeof(struct kvm_msr_entry));
		if (!m)
			return -ENOMEM;
		m->nmsrs = s->nmsrs;
		memcpy(m->entries, s->msrs, s->nmsrs * sizeof(*s->msrs));
		int set = ioctl(v->fd, KVM_SET_MSRS, m);
		free(m);
		if (set != (int)s->nmsrs) {
			log_err(v->tag, "restoring MSR 0x%x failed (%d of %u set)",
				set >= 0 && (unsigned)set < s->nmsrs ? s->msrs[set].index : 0, set,
				s->nmsrs);
			return -EINVAL;
		}
	}
	if (ioctl(v->fd, KVM_SET_MP_STATE, &s->mp) < 0)
		what = "MP state";
	else if (ioctl(v->fd, KVM_SET_LAPIC, &s->lapic) < 0)
		what = "LAPIC";
	if (what)
		goto fail;
	if (s->has_tsc_deadline && vcpu_set_msr(v, MSR_IA32_TSC_DEADLINE, s->tsc_deadline))
		log_warn(v->tag, "restoring the TSC deadline failed");
	if (ioctl(v->fd, KVM_SET_VCPU_EVENTS, &s->events) < 0)
		what = "pending events";
	else if (ioctl(v->fd, KVM_SET_DEBUGREGS, &s->dregs) < 0)
		what = "debug registers";
	if (!what)
		return 0;
fail:;
	int e = -errno;
	log_err(v->tag, "restoring %s: %s", what, strerror(errno));
	return e;
}

bool vcpu_event_in_flight(struct vcpu *v)
{
	struct kvm_vcpu_events e;
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &e) < 0)
		return false;
	return e.exception.injected || e.exception.pending ||
	       (e.interrupt.injected && e.interrupt.soft);
}

void vcpu_state_free(struct vcpu_state *s)
{
	free(s->xsave);
	free(s->msrs);
	s->xsave = NULL;
	s->msrs = NULL;
}

/* ---- JSON ---- */

static int put_blob(json_t *o, const char *key, const void *p, size_t len)
{
	char *b = b64_encode(p, len);
	if (!b)
		return -ENOMEM;
	int r = json_object_set_new(o, key, json_string(b));
	free(b);
	return r ? -ENOMEM : 0;
}

json_t *vcpu_state_to_json(const struct vcpu_state *s)
{
	json_t *o = json_object();
	json_t *msrs = json_array();
	if (!o || !msrs)
		goto fail;
	if (put_blob(o, "regs", &s->regs, sizeof(s->regs)) ||
	    put_blob(o, "sregs", &s->sregs, sizeof(s->sregs)) ||
	    put_blob(o, "xsave", s->xsave, s->xsave_size) ||
	    put_blob(o, "xcrs", &s->xcrs, sizeof(s->xcrs)) ||
	    put_blob(o, "lapic", &s->lapic, sizeof(s->lapic)) ||
	    put_blob(o, "events", &s->events, sizeof(s->events)) ||
	    put_blob(o, "debugregs", &s->dregs, sizeof(s->dregs)))
		goto fail;
	json_object_set_new(o, "mp_state", json_integer(s->mp.mp_state));
	for (unsigned i = 0; i < s->nmsrs; i++) {
		char v[24];
		snprintf(v, sizeof(v), "0x%llx", (unsigned long long)s->msrs[i].data);
		json_array_append_new(msrs, json_pack("[I,s]", (json_int_t)s->msrs[i].index, v));
	}
	json_object_set_new(o, "msrs", msrs);
	msrs = NULL;
	if (s->has_tsc_deadline) {
		char v[24];
		snprintf(v, sizeof(v), "0x%llx", (unsigned long long)s->tsc_deadline);
		json_object_set_new(o, "tsc_deadline", json_string(v));
	}
	return o;
fail:
	json_decref(o);
	json_decref(msrs);
	return NULL;
}

static int get_blob(json_t *o, const char *key, void *dst, size_t len, char *msg, size_t msglen)
{
	json_t *v = json_object_get(o, key);
	size_t got = 0;
	uint8_t *b = json_is_string(v) ? b64_decode(json_string_value(v), &got) : NULL;
	if (!b || got != len) {
		snprintf(msg, msglen, "field '%s': %s", key,
			 !b ? "missing or not base64" : "wrong size for this host's KVM");
		free(b);
		return -EINVAL;
	}
	memcpy(dst, b, len);
	free(b);
	return 0;
}

static int get_u64_str(json_t *v, uint64_t *out)
{
	const char *s = json_string_value(v);
	char *end;
	if (!s)
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || *end || end == s ? -EINVAL : 0;
}

int vcpu_state_from_json(json_t *o, size_t xsave_size, struct vcpu_state *s, char *msg,
			 size_t msglen)
{
	memset(s, 0, sizeof(*s));
	if (!json_is_object(o)) {
		snprintf(msg, msglen, "not an object");
		return -EINVAL;
	}
	s->xsave_size = xsave_size;
	if (!(s->xsave = calloc(1, xsave_size)))
		return -ENOMEM;
	int r;
	if ((r = get_blob(o, "regs", &s->regs, sizeof(s->regs), msg, msglen)) ||
	    (r = get_blob(o, "sregs", &s->sregs, sizeof(s->sregs), msg, msglen)) ||
	    (r = get_blob(o, "xsave", s->xsave, xsave_size, msg, msglen)) ||
	    (r = get_blob(o, "xcrs", &s->xcrs, sizeof(s->xcrs), msg, msglen)) ||
	    (r = get_blob(o, "lapic", &s->lapic, sizeof(s->lapic), msg, msglen)) ||
	    (r = get_blob(o, "events", &s->events, sizeof(s->events), msg, msglen)) ||
	    (r = get_blob(o, "debugregs", &s->dregs, sizeof(s->dregs), msg, msglen)))
		return r;
	json_t *mp = json_object_get(o, "mp_state"), *msrs = json_object_get(o, "msrs");
	if (!json_is_integer(mp) || json_integer_value(mp) < 0 || json_integer_value(mp) > 16) {
		snprintf(msg, msglen, "field 'mp_state': missing or invalid");
		return -EINVAL;
	}
	s->mp.mp_state = (uint32_t)json_integer_value(mp);
	if (!json_is_array(msrs) || json_array_size(msrs) > 4096) {
		snprintf(msg, msglen, "field 'msrs': missing or too long");
		return -EINVAL;
	}
	if (!(s->msrs = calloc(json_array_size(msrs) + 1, sizeof(*s->msrs))))
		return -ENOMEM;
	size_t i;
	json_t *e;
	json_array_foreach(msrs, i, e)
	{
		json_t *idx = json_array_get(e, 0);
		uint64_t val;
		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_integer(idx) ||
		    json_integer_value(idx) < 0 || json_integer_value(idx) > 0xffffffffLL ||
		    get_u64_str(json_array_get(e, 1), &val)) {
			snprintf(msg, msglen, "field 'msrs[%zu]': want [index, \"0xvalue\"]", i);
			return -EINVAL;
		}
		s->msrs[s->nmsrs++] =
		    (struct kvm_msr_entry){.index = (uint32_t)json_integer_value(idx), .data = val};
	}
	json_t *dl = json_object_get(o, "tsc_deadline");
	if (dl) {
		if (get_u64_str(dl, &s->tsc_deadline)) {
			snprintf(msg, msglen, "field 'tsc_deadline': invalid");
			return -EINVAL;
		}
		s->has_tsc_deadline = true;
	}
	return 0;
}
