/* CPUID for vCPUs: named CPU templates filter KVM's supported CPUID; topology and KVM leaves per
 * vCPU. */
#ifndef BERTH_CPUID_H
#define BERTH_CPUID_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

enum cpuid_reg { R_EAX, R_EBX, R_ECX, R_EDX };

struct cpu_feature {
	const char *name; /* as in /proc/cpuinfo */
	uint32_t leaf;
	uint32_t subleaf;
	uint8_t reg; /* enum cpuid_reg */
	uint8_t bit;
};

struct cpu_template {
	const char *name;
	const char *description;
	const char *const *remove; /* feature names, NULL-terminated */
};

/* The tables (cpu_templates.c). */
extern const struct cpu_feature cpu_features[];
extern const size_t cpu_features_count;
const struct cpu_template *cpuid_template_find(const char *name);
void cpuid_template_names(char *buf, size_t len);
const struct cpu_feature *cpuid_feature_find(const char *name);

/* Find an entry by leaf/subleaf (subleaf ignored for leaves where it is not significant). */
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid_entry2 *e, unsigned n, uint32_t leaf,
				    uint32_t subleaf);

/*
 * Turn KVM's supported CPUID (e[0..n)) into what vCPU cpu_index of ncpus sees: template features
 * removed (with their XSAVE state), topology leaves (APIC ID = cpu_index, one socket, ncpus
 * cores, one thread each), hypervisor bit, no PMU. Pure: no KVM calls. Returns the new count
 * (entries are never added), or -EINVAL.
 */
int cpuid_apply(struct kvm_cpuid_entry2 *e, unsigned n, const struct cpu_template *t,
		unsigned cpu_index, unsigned ncpus);

/* True if a feature is present in e[]. */
int cpuid_has(struct kvm_cpuid_entry2 *e, unsigned n, const char *feature);

#endif
