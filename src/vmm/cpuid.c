/* Per-vCPU CPUID: template filtering, XSAVE consistency, topology leaves, hypervisor and KVM
 * leaves. */
#include "vmm/cpuid.h"

#include <errno.h>
#include <string.h>

static uint32_t *reg_of(struct kvm_cpuid_entry2 *e, unsigned r)
{
	switch (r) {
	case R_EAX:
		return &e->eax;
	case R_EBX:
		return &e->ebx;
	case R_ECX:
		return &e->ecx;
	default:
		return &e->edx;
	}
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned n, uint32_t leaf,
				    uint32_t subleaf)
{
	for (unsigned i = 0; i < n; i++) {
		if (e[i].function != leaf)
			continue;
		if ((e[i].flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e[i].index != subleaf)
			continue;
		return &e[i];
	}
	return NULL;
}

int cpuid_has(struct kvm_cpuid_entry2 *e, unsigned n, const char *feature)
{
	const struct cpu_feature *f = cpuid_feature_find(feature);
	if (!f)
		return 0;
	struct kvm_cpuid_entry2 *x = cpuid_find(e, n, f->leaf, f->subleaf);
	return x && (*reg_of(x, f->reg) >> f->bit & 1);
}

static void clear_feature(struct kvm_cpuid_entry2 *e, unsigned n, const char *name)
{
	const struct cpu_feature *f = cpuid_feature_find(name);
	if (!f)
		return;
	struct kvm_cpuid_entry2 *x = cpuid_find(e, n, f->leaf, f->subleaf);
	if (x)
		*reg_of(x, f->reg) &= ~(1u << f->bit);
}

static unsigned bits_for(unsigned count)
{
	unsigned b = 0;
	while ((1u << b) < count)
		b++;
	return b;
}

/* Keep leaf 0xD (XSAVE state components) consistent with the features left. */
static void fix_xsave(struct kvm_cpuid_entry2 *e, unsigned n)
{
	struct kvm_cpuid_entry2 *d0 = cpuid_find(e, n, 0xd, 0);
	if (!d0)
		return;
	if (!cpuid_has(e, n, "xsave")) { /* no XSAVE: no state components at all */
		for (unsigned i = 0; i < n; i++)
			if (e[i].function == 0xd)
				e[i].eax = e[i].ebx = e[i].ecx = e[i].edx = 0;
		return;
	}
	uint64_t keep = 0x3; /* x87, SSE */
	if (cpuid_has(e, n, "avx"))
		keep |= 1u << 2;
	if (cpuid_has(e, n, "mpx"))
		keep |= 3u << 3;
	if (cpuid_has(e, n, "avx512f"))
		keep |= 7u << 5;
	if (cpuid_has(e, n, "pku"))
		keep |= 1u << 9;
	if (cpuid_has(e, n, "amx_tile"))
		keep |= 3ull << 17;
	uint64_t have = d0->eax | (uint64_t)d0->edx << 32;
	uint64_t drop = have & ~keep;
	d0->eax &= (uint32_t)keep;
	d0->edx &= (uint32_t)(keep >> 32);
	for (unsigned i = 0; i < n; i++) {
		if (e[i].function == 0xd && e[i].index >= 2 && e[i].index < 64 &&
		    (drop >> e[i].index & 1))
			e[i].eax = e[i].ebx = e[i].ecx = e[i].edx = 0;
	}
}

/* Features that make no sense without another. */
static void fix_dependencies(struct kvm_cpuid_entry2 *e, unsigned n)
{
	static const char *const avx_users[] = {"avx2", "fma",	      "f16c",	  "avx512f",
						"vaes", "vpclmulqdq", "avx_vnni", NULL};
	static const char *const avx512[] = {
	    "avx512dq",	     "avx512ifma",    "avx512pf",
	    "avx512er",	     "avx512cd",      "avx512bw",
	    "avx512vl",	     "avx512vbmi",    "avx512_vbmi2",
	    "avx512_vnni",   "avx512_bitalg", "avx512_vpopcntdq",
	    "avx512_4vnniw", "avx512_4fmaps", "avx512_vp2intersect",
	    "avx512_fp16",   "avx512_bf16",   NULL};
	if (!cpuid_has(e, n, "xsave")) /* AVX state needs XSAVE */
		clear_feature(e, n, "avx");
	if (!cpuid_has(e, n, "avx"))
		for (unsigned i = 0; avx_users[i]; i++)
			clear_feature(e, n, avx_users[i]);
	if (!cpuid_has(e, n, "avx512f"))
		for (unsigned i = 0; avx512[i]; i++)
			clear_feature(e, n, avx512[i]);
	if (!cpuid_has(e, n, "pku"))
		clear_feature(e, n, "ospke");
	if (!cpuid_has(e, n, "xsave"))
		for (const char *const *p =
			 (const char *const[]){"xsaveopt", "xsavec", "xgetbv1", "xsaves", NULL};
		     *p; p++)
			clear_feature(e, n, *p);
}

static void set_topology(struct kvm_cpuid_entry2 *e, unsigned n, unsigned id, unsigned ncpus)
{
	unsigned core_bits = bits_for(ncpus);
	struct kvm_cpuid_entry2 *x;

	if ((x = cpuid_find(e, n, 1, 0))) {
		x->ebx = (x->ebx & 0x0000ffff) | (id & 0xff) << 24 |
			 (ncpus > 1 ? ((1u << core_bits) > 255 ? 255u : (1u << core_bits)) : 1u)
			     << 16;
		if (ncpus > 1)
			x->edx |= 1u << 28; /* HTT: more than one logical processor per package */
		else
			x->edx &= ~(1u << 28);
		x->ecx |= 1u << 31; /* running under a hypervisor */
		x->ecx &=
		    ~(1u << 27); /* OSXSAVE reflects the guest's CR4; KVM sets it dynamically */
	}
	for (unsigned i = 0; i < n; i++) {
		if (e[i].function == 4) { /* deterministic cache parameters (Intel) */
			unsigned level = e[i].eax >> 5 & 7;
			uint32_t share = level >= 3 ? (1u << core_bits) - 1 : 0;
			if (!(e[i].eax & 0x1f))
				continue;
			e[i].eax = (e[i].eax & 0x3fff) | (share & 0xfff) << 14 |
				   (((1u << core_bits) - 1) & 0x3f)
				       << 26; /* fields are 12 and 6 bits */
		}
		if (e[i].function == 0xb || e[i].function == 0x1f) { /* extended topology */
			e[i].edx = id;
			if (e[i].index == 0) {
				e[i].eax = 0; /* one thread per core */
				e[i].ebx = 1;
				e[i].ecx = 1u << 8 | 0;
			} else if (e[i].index == 1) {
				e[i].eax = core_bits;
				e[i].ebx = ncpus;
				e[i].ecx = 2u << 8 | 1;
			} else {
				e[i].eax = e[i].ebx = 0;
				e[i].ecx = e[i].index;
			}
		}
	}
	if ((x = cpuid_find(e, n, 0x80000001, 0))) {
		if (ncpus > 1)
			x->ecx |= 1u << 1; /* CmpLegacy */
		else
			x->ecx &= ~(1u << 1);
	}
	if ((x = cpuid_find(e, n, 0x80000008, 0)))
		x->ecx = (x->ecx & ~0xf0ffu) | core_bits << 12 | ((ncpus - 1) & 0xff);
	if ((x = cpuid_find(e, n, 0x8000001e, 0))) {
		x->eax = id;
		x->ebx = id & 0xff; /* core id; threads per core - 1 = 0 */
		x->ecx = 0;	    /* one node */
	}
}

int cpuid_apply(struct kvm_cpuid_entry2 *e, unsigned n, const struct cpu_template *t,
		unsigned cpu_index, unsigned ncpus)
{
	if (!t || ncpus == 0 || cpu_index >= ncpus)
		return -EINVAL;
	for (const char *const *p = t->remove; *p; p++)
		clear_feature(e, n, *p);
	fix_dependencies(e, n);
	fix_xsave(e, n);
	set_topology(e, n, cpu_index, ncpus);

	/* No virtual PMU: leaf 0xA reports version 0 (also keeps templates migratable). */
	for (unsigned i = 0; i < n; i++)
		if (e[i].function == 0xa)
			e[i].eax = e[i].ebx = e[i].ecx = e[i].edx = 0;
	return (int)n;
}
