/* The CPU feature table and the named CPU templates: which features each template removes. */
#include <stdio.h>
#include <string.h>

#include "vmm/cpuid.h"

/* clang-format off */
#define F(n, l, s, r, b) {n, l, s, r, b}

const struct cpu_feature cpu_features[] = {
	/* leaf 1 ECX */
	F("sse3", 1, 0, R_ECX, 0), F("pclmulqdq", 1, 0, R_ECX, 1), F("dtes64", 1, 0, R_ECX, 2),
	F("monitor", 1, 0, R_ECX, 3), F("ds_cpl", 1, 0, R_ECX, 4), F("vmx", 1, 0, R_ECX, 5),
	F("smx", 1, 0, R_ECX, 6), F("est", 1, 0, R_ECX, 7), F("tm2", 1, 0, R_ECX, 8),
	F("ssse3", 1, 0, R_ECX, 9), F("sdbg", 1, 0, R_ECX, 11), F("fma", 1, 0, R_ECX, 12),
	F("cx16", 1, 0, R_ECX, 13), F("xtpr", 1, 0, R_ECX, 14), F("pdcm", 1, 0, R_ECX, 15),
	F("pcid", 1, 0, R_ECX, 17), F("dca", 1, 0, R_ECX, 18), F("sse4_1", 1, 0, R_ECX, 19),
	F("sse4_2", 1, 0, R_ECX, 20), F("x2apic", 1, 0, R_ECX, 21), F("movbe", 1, 0, R_ECX, 22),
	F("popcnt", 1, 0, R_ECX, 23), F("tsc_deadline_timer", 1, 0, R_ECX, 24),
	F("aes", 1, 0, R_ECX, 25), F("xsave", 1, 0, R_ECX, 26), F("avx", 1, 0, R_ECX, 28),
	F("f16c", 1, 0, R_ECX, 29), F("rdrand", 1, 0, R_ECX, 30),
	/* leaf 1 EDX */
	F("ds", 1, 0, R_EDX, 21), F("acpi", 1, 0, R_EDX, 22), F("tm", 1, 0, R_EDX, 29),
	F("pbe", 1, 0, R_EDX, 31),
	/* leaf 7.0 EBX */
	F("fsgsbase", 7, 0, R_EBX, 0), F("tsc_adjust", 7, 0, R_EBX, 1), F("sgx", 7, 0, R_EBX, 2),
	F("bmi1", 7, 0, R_EBX, 3), F("hle", 7, 0, R_EBX, 4), F("avx2", 7, 0, R_EBX, 5),
	F("smep", 7, 0, R_EBX, 7), F("bmi2", 7, 0, R_EBX, 8), F("erms", 7, 0, R_EBX, 9),
	F("invpcid", 7, 0, R_EBX, 10), F("rtm", 7, 0, R_EBX, 11), F("mpx", 7, 0, R_EBX, 14),
	F("avx512f", 7, 0, R_EBX, 16), F("avx512dq", 7, 0, R_EBX, 17), F("rdseed", 7, 0, R_EBX, 18),
	F("adx", 7, 0, R_EBX, 19), F("smap", 7, 0, R_EBX, 20), F("avx512ifma", 7, 0, R_EBX, 21),
	F("clflushopt", 7, 0, R_EBX, 23), F("clwb", 7, 0, R_EBX, 24), F("avx512pf", 7, 0, R_EBX, 26),
	F("avx512er", 7, 0, R_EBX, 27), F("avx512cd", 7, 0, R_EBX, 28), F("sha_ni", 7, 0, R_EBX, 29),
	F("avx512bw", 7, 0, R_EBX, 30), F("avx512vl", 7, 0, R_EBX, 31),
	/* leaf 7.0 ECX */
	F("avx512vbmi", 7, 0, R_ECX, 1), F("umip", 7, 0, R_ECX, 2), F("pku", 7, 0, R_ECX, 3),
	F("ospke", 7, 0, R_ECX, 4), F("waitpkg", 7, 0, R_ECX, 5), F("avx512_vbmi2", 7, 0, R_ECX, 6),
	F("gfni", 7, 0, R_ECX, 8), F("vaes", 7, 0, R_ECX, 9), F("vpclmulqdq", 7, 0, R_ECX, 10),
	F("avx512_vnni", 7, 0, R_ECX, 11), F("avx512_bitalg", 7, 0, R_ECX, 12),
	F("avx512_vpopcntdq", 7, 0, R_ECX, 14), F("la57", 7, 0, R_ECX, 16),
	F("rdpid", 7, 0, R_ECX, 22), F("cldemote", 7, 0, R_ECX, 25), F("movdiri", 7, 0, R_ECX, 27),
	F("movdir64b", 7, 0, R_ECX, 28), F("enqcmd", 7, 0, R_ECX, 29),
	/* leaf 7.0 EDX */
	F("avx512_4vnniw", 7, 0, R_EDX, 2), F("avx512_4fmaps", 7, 0, R_EDX, 3),
	F("fsrm", 7, 0, R_EDX, 4), F("avx512_vp2intersect", 7, 0, R_EDX, 8),
	F("serialize", 7, 0, R_EDX, 14), F("tsxldtrk", 7, 0, R_EDX, 16),
	F("amx_bf16", 7, 0, R_EDX, 22), F("avx512_fp16", 7, 0, R_EDX, 23),
	F("amx_tile", 7, 0, R_EDX, 24), F("amx_int8", 7, 0, R_EDX, 25),
	/* leaf 7.1 EAX */
	F("avx_vnni", 7, 1, R_EAX, 4), F("avx512_bf16", 7, 1, R_EAX, 5),
	/* leaf 0xD.1 EAX */
	F("xsaveopt", 0xd, 1, R_EAX, 0), F("xsavec", 0xd, 1, R_EAX, 1),
	F("xgetbv1", 0xd, 1, R_EAX, 2), F("xsaves", 0xd, 1, R_EAX, 3),
	/* leaf 0x80000001 ECX */
	F("lahf_lm", 0x80000001, 0, R_ECX, 0), F("svm", 0x80000001, 0, R_ECX, 2),
	F("extapic", 0x80000001, 0, R_ECX, 3), F("cr8_legacy", 0x80000001, 0, R_ECX, 4),
	F("abm", 0x80000001, 0, R_ECX, 5), F("sse4a", 0x80000001, 0, R_ECX, 6),
	F("misalignsse", 0x80000001, 0, R_ECX, 7), F("3dnowprefetch", 0x80000001, 0, R_ECX, 8),
	F("osvw", 0x80000001, 0, R_ECX, 9), F("ibs", 0x80000001, 0, R_ECX, 10),
	F("xop", 0x80000001, 0, R_ECX, 11), F("skinit", 0x80000001, 0, R_ECX, 12),
	F("wdt", 0x80000001, 0, R_ECX, 13), F("lwp", 0x80000001, 0, R_ECX, 15),
	F("fma4", 0x80000001, 0, R_ECX, 16), F("tce", 0x80000001, 0, R_ECX, 17),
	F("tbm", 0x80000001, 0, R_ECX, 21), F("topoext", 0x80000001, 0, R_ECX, 22),
	F("perfctr_core", 0x80000001, 0, R_ECX, 23), F("perfctr_nb", 0x80000001, 0, R_ECX, 24),
	/* leaf 0x80000001 EDX */
	F("syscall", 0x80000001, 0, R_EDX, 11), F("nx", 0x80000001, 0, R_EDX, 20),
	F("mmxext", 0x80000001, 0, R_EDX, 22), F("fxsr_opt", 0x80000001, 0, R_EDX, 25),
	F("pdpe1gb", 0x80000001, 0, R_EDX, 26), F("rdtscp", 0x80000001, 0, R_EDX, 27),
	F("lm", 0x80000001, 0, R_EDX, 29), F("3dnowext", 0x80000001, 0, R_EDX, 30),
	F("3dnow", 0x80000001, 0, R_EDX, 31),
	/* leaf 0x80000008 EBX */
	F("clzero", 0x80000008, 0, R_EBX, 0), F("wbnoinvd", 0x80000008, 0, R_EBX, 9),
};
const size_t cpu_features_count = sizeof(cpu_features) / sizeof(cpu_features[0]);

/* host: everything KVM supports on this host (no live migration to different hosts). */
static const char *const host_remove[] = {NULL};

/*
 * baseline: x86-64-v2 plus AES/PCLMULQDQ/XSAVE/RDRAND, which every x86-64 server of the last decade
 * (Intel and AMD) has; VMs using it can live-migrate between such hosts.
 */
static const char *const baseline_remove[] = {
	"monitor", "vmx", "svm", "smx", "est", "tm2", "sdbg", "xtpr", "pdcm", "dca", "dtes64",
	"ds_cpl", "ds", "acpi", "tm", "pbe", "fma", "movbe", "avx", "f16c", "pcid",
	"fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", "bmi2", "erms", "invpcid", "rtm",
	"mpx", "avx512f", "avx512dq", "rdseed", "adx", "avx512ifma", "clflushopt", "clwb",
	"avx512pf", "avx512er", "avx512cd", "sha_ni", "avx512bw", "avx512vl", "avx512vbmi", "umip",
	"pku", "ospke", "waitpkg", "avx512_vbmi2", "gfni", "vaes", "vpclmulqdq", "avx512_vnni",
	"avx512_bitalg", "avx512_vpopcntdq", "la57", "rdpid", "cldemote", "movdiri", "movdir64b",
	"enqcmd", "avx512_4vnniw", "avx512_4fmaps", "fsrm", "avx512_vp2intersect", "serialize",
	"tsxldtrk", "amx_bf16", "avx512_fp16", "amx_tile", "amx_int8", "avx_vnni", "avx512_bf16",
	"xsaveopt", "xsavec", "xgetbv1", "xsaves", "abm", "sse4a", "misalignsse", "3dnowprefetch",
	"osvw", "ibs", "xop", "skinit", "wdt", "lwp", "fma4", "tce", "tbm", "topoext",
	"perfctr_core", "perfctr_nb", "extapic", "pdpe1gb", "3dnowext", "3dnow", "clzero",
	"mmxext", "fxsr_opt", "cr8_legacy", /* AMD-only: Intel hosts lack them */
	"wbnoinvd", NULL};

/* clang-format on */

static const struct cpu_template templates[] = {
    {"host", "all features this host's KVM supports", host_remove},
    {"baseline", "portable x86-64-v2 + AES, PCLMULQDQ, XSAVE, RDRAND", baseline_remove},
};

const struct cpu_template *cpuid_template_find(const char *name)
{
	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
		if (!strcmp(templates[i].name, name))
			return &templates[i];
	return NULL;
}

void cpuid_template_names(char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]) && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "",
					templates[i].name);
}

const struct cpu_feature *cpuid_feature_find(const char *name)
{
	for (size_t i = 0; i < cpu_features_count; i++)
		if (!strcmp(cpu_features[i].name, name))
			return &cpu_features[i];
	return NULL;
}
