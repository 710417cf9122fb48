/* Unit tests for vmm/cpuid: CPU templates on a synthetic all-features CPUID, XSAVE leaf, topology
 * leaves. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define MAXE 64

static struct kvm_cpuid_entry2 ents[MAXE];
static unsigned nents;

static void add(uint32_t leaf, uint32_t sub, uint32_t flags, uint32_t a, uint32_t b, uint32_t c,
		uint32_t d)
{
	assert_true(nents < MAXE);
	ents[nents++] = (struct kvm_cpuid_entry2){
	    .function = leaf, .index = sub, .flags = flags, .eax = a, .ebx = b, .ecx = c, .edx = d};
}

/* Cache descriptor for leaf 4: type (1 data, 2 instruction, 3 unified), level, junk in 14..31. */
static uint32_t cache(uint32_t type, uint32_t level)
{
	return 0xffffc000u | 1u << 8 | level << 5 | type;
}

/* A host whose KVM reports every feature bit. */
static int setup(void **state)
{
	(void)state;
	nents = 0;
	const uint32_t all = 0xffffffff;
	add(0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69); /* GenuineIntel */
	add(1, 0, 0, 0x000906ea, 0x00005678, all, all);
	add(4, 0, SIG, cache(1, 1), 0x01c0003f, 0x3f, 0);
	add(4, 1, SIG, cache(2, 1), 0x01c0003f, 0x3f, 0);
	add(4, 2, SIG, cache(3, 2), 0x03c0003f, 0x3ff, 0);
	add(4, 3, SIG, cache(3, 3), 0x03c0003f, 0x3fff, 6);
	add(4, 4, SIG, 0, 0, 0, 0); /* no more caches */
	add(7, 0, SIG, 1, all, all, all);
	add(7, 1, SIG, all, 0, 0, 0);
	add(0xa, 0, 0, 0x07300805, 0, 0, 0x603);
	add(0xb, 0, SIG, 1, 2, 0x100, 99);
	add(0xb, 1, SIG, 4, 16, 0x201, 99);
	add(0xb, 2, SIG, 0, 0, 2, 99);
	add(0xd, 0, SIG, 0x000602ff, 0x340, 0x2b00, 0);
	add(0xd, 1, SIG, 0xf, 0x340, 0, 0);
	add(0xd, 2, SIG, 0x100, 0x240, 0, 0);
	add(0xd, 5, SIG, 0x40, 0x440, 0, 0);
	add(0xd, 6, SIG, 0x200, 0x480, 0, 0);
	add(0xd, 7, SIG, 0x400, 0x680, 0, 0);
	add(0xd, 9, SIG, 0x8, 0xa80, 0, 0);
	add(0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d);
	add(0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	add(0x80000000, 0, 0, 0x8000001e, 0, 0, 0);
	add(0x80000001, 0, 0, 0, 0, all, all);
	add(0x80000008, 0, 0, 0x3030, all, all, 0);
	add(0x8000001e, 0, 0, 7, 0x107, 0x301, 0);
	return 0;
}

static struct kvm_cpuid_entry2 *find(uint32_t leaf, uint32_t sub)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(ents, nents, leaf, sub);
	if (!e)
		fail_msg("leaf 0x%x.%u missing", leaf, sub);
	return e;
}

static int has(const char *f)
{
	assert_non_null(cpuid_feature_find(f));
	return cpuid_has(ents, nents, f);
}

static int in_list(const char *const *list, const char *name)
{
	for (; *list; list++)
		if (!strcmp(*list, name))
			return 1;
	return 0;
}

static void apply(const char *tmpl, unsigned idx, unsigned ncpus)
{
	const struct cpu_template *t = cpuid_template_find(tmpl);
	assert_non_null(t);
	assert_int_equal(cpuid_apply(ents, nents, t, idx, ncpus), (int)nents);
}

static void test_host_keeps_everything(void **state)
{
	(void)state;
	apply("host", 0, 1);
	for (size_t i = 0; i < cpu_features_count; i++)
		if (!has(cpu_features[i].name))
			fail_msg("host template lost '%s'", cpu_features[i].name);
	assert_true(has("avx"));
	assert_true(has("avx512f"));
	/* XSAVE components of the kept features stay. */
	assert_int_equal(find(0xd, 0)->eax, 0x000602ff);
	assert_int_equal(find(0xd, 2)->eax, 0x100);
	assert_int_equal(find(0xd, 7)->ebx, 0x680);
	/* KVM's own leaves are untouched. */
	assert_int_equal(find(0x40000000, 0)->ebx, 0x4b4d564b);
	assert_int_equal(find(0x40000001, 0)->eax, 0x01007afb);
}

static void test_baseline_removes_its_list(void **state)
{
	(void)state;
	const struct cpu_template *t = cpuid_template_find("baseline");
	assert_non_null(t);
	apply("baseline", 0, 1);
	for (const char *const *p = t->remove; *p; p++)
		if (has(*p))
			fail_msg("baseline kept '%s'", *p);
	/* Every feature not on the list survives (all were present). */
	for (size_t i = 0; i < cpu_features_count; i++) {
		const char *n = cpu_features[i].name;
		if (!in_list(t->remove, n) && !has(n))
			fail_msg("baseline removed '%s', which is not on its list", n);
	}
	static const char *const keep[] = {"sse3",    "ssse3", "sse4_1", "sse4_2",    "popcnt",
					   "cx16",    "aes",   "xsave",	 "pclmulqdq", "rdrand",
					   "lahf_lm", "nx",    "lm",	 "syscall"};
	for (size_t i = 0; i < ARRAY_SIZE(keep); i++)
		if (!has(keep[i]))
			fail_msg("baseline lost '%s'", keep[i]);
}

static void test_baseline_xsave_leaf(void **state)
{
	(void)state;
	apply("baseline", 0, 2);
	struct kvm_cpuid_entry2 *d0 = find(0xd, 0);
	assert_int_equal(d0->eax, 0x3); /* x87 | SSE only */
	assert_int_equal(d0->edx, 0);
	static const unsigned dropped[] = {2, 5, 6, 7, 9};
	for (size_t i = 0; i < ARRAY_SIZE(dropped); i++) {
		struct kvm_cpuid_entry2 *e = find(0xd, dropped[i]);
		if (e->eax || e->ebx || e->ecx || e->edx)
			fail_msg("XSAVE subleaf %u not cleared", dropped[i]);
	}
	assert_int_equal(find(0xd, 1)->eax, 0); /* xsaveopt/xsavec/xgetbv1/xsaves removed */
}

static void test_xsave_leaf_partial(void **state)
{
	(void)state;
	/* A host without AVX-512 but with AVX: only the AVX-512 components go. */
	find(7, 0)->ebx &= ~(1u << 16);
	apply("host", 0, 1);
	assert_int_equal(find(0xd, 0)->eax, 0x000602ff & ~0xe0u);
	assert_int_equal(find(0xd, 2)->eax, 0x100);
	assert_int_equal(find(0xd, 5)->eax, 0);
	assert_int_equal(find(0xd, 6)->ebx, 0);
	assert_int_equal(find(0xd, 9)->eax, 0x8);
	assert_false(has("avx512bw"));
	assert_false(has("avx512vl"));
	assert_true(has("avx2"));
}

static void test_template_without_xsave(void **state)
{
	(void)state;
	/* Removing XSAVE must take AVX, its users, and every extended state component with it. */
	static const char *const rm[] = {"xsave", NULL};
	const struct cpu_template t = {"noxsave", "test", rm};
	assert_int_equal(cpuid_apply(ents, nents, &t, 0, 1), (int)nents);
	assert_false(has("xsave"));
	assert_false(has("xsaveopt"));
	assert_false(has("avx"));
	assert_false(has("avx2"));
	assert_false(has("fma"));
	assert_false(has("avx512f"));
	assert_int_equal(find(0xd, 0)->eax, 0);
	assert_int_equal(find(0xd, 5)->eax, 0);
}

static unsigned bits_for(unsigned n)
{
	unsigned b = 0;
	while ((1u << b) < n)
		b++;
	return b;
}

static void check_topology(unsigned idx, unsigned ncpus)
{
	setup(NULL);
	apply("host", idx, ncpus);
	unsigned bits = bits_for(ncpus);

	struct kvm_cpuid_entry2 *l1 = find(1, 0);
	assert_int_equal(l1->ebx >> 24, idx);
	assert_int_equal(l1->ebx & 0xffff, 0x5678);
	unsigned lcount = l1->ebx >> 16 & 0xff;
	if (lcount == 0 || lcount < (ncpus < 255 ? ncpus : 255))
		fail_msg("ncpus %u: leaf 1 EBX[23:16] = %u logical processors", ncpus, lcount);
	assert_int_equal(!!(l1->edx & 1u << 28), ncpus > 1); /* HTT */
	assert_true(l1->ecx & 1u << 31);		     /* hypervisor */
	assert_false(l1->ecx & 1u << 27);		     /* OSXSAVE is KVM's to set */

	struct kvm_cpuid_entry2 *b0 = find(0xb, 0), *b1 = find(0xb, 1), *b2 = find(0xb, 2);
	assert_int_equal(b0->eax, 0);
	assert_int_equal(b0->ebx, 1);
	assert_int_equal(b0->ecx, 0x100);
	assert_int_equal(b0->edx, idx);
	assert_int_equal(b1->eax, bits);
	assert_int_equal(b1->ebx, ncpus);
	assert_int_equal(b1->ecx, 0x201);
	assert_int_equal(b1->edx, idx);
	assert_int_equal(b2->eax, 0);
	assert_int_equal(b2->ebx, 0);
	assert_int_equal(b2->ecx, 2);
	assert_int_equal(b2->edx, idx);

	/* Leaf 4: cores per package - 1 in [31:26]; L3 shared by all, L1/L2 private. */
	uint32_t cores_m1 = (1u << bits) - 1;
	for (unsigned s = 0; s < 4; s++) {
		uint32_t eax = find(4, s)->eax;
		unsigned level = eax >> 5 & 7;
		assert_int_equal(eax & 0x3fff, cache(s < 2 ? s + 1 : 3, level) & 0x3fff);
		assert_int_equal(eax >> 26, cores_m1 > 63 ? 63 : cores_m1);
		assert_int_equal(eax >> 14 & 0xfff, level >= 3 ? cores_m1 : 0);
	}
	assert_int_equal(find(4, 4)->eax, 0);

	struct kvm_cpuid_entry2 *x8 = find(0x80000008, 0);
	assert_int_equal(x8->ecx & 0xff, ncpus - 1);
	assert_int_equal(x8->ecx >> 12 & 0xf, bits);
	assert_int_equal(x8->ecx & 0xffff0f00, 0xffff0f00); /* other bits kept */
	assert_int_equal(x8->eax, 0x3030);
	assert_int_equal(!!(find(0x80000001, 0)->ecx & 2), ncpus > 1); /* CmpLegacy */
	struct kvm_cpuid_entry2 *x1e = find(0x8000001e, 0);
	assert_int_equal(x1e->eax, idx);
	assert_int_equal(x1e->ebx, idx);
	assert_int_equal(x1e->ecx, 0);

	struct kvm_cpuid_entry2 *pmu = find(0xa, 0);
	assert_int_equal(pmu->eax | pmu->ebx | pmu->ecx | pmu->edx, 0);
}

static void test_topology(void **state)
{
	(void)state;
	static const unsigned counts[] = {1, 2, 3, 4, 8, 64, 128};
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		unsigned n = counts[i];
		check_topology(0, n);
		check_topology(n - 1, n);
		check_topology(n / 2, n);
	}
}

static void test_topology_254(void **state)
{
	(void)state;
	/* The largest VM: leaf 1's 8-bit logical processor count must not wrap to 0. */
	check_topology(0, 254);
	check_topology(253, 254);
}

static void test_apply_einval(void **state)
{
	(void)state;
	const struct cpu_template *t = cpuid_template_find("host");
	uint32_t before = find(1, 0)->ebx;
	assert_int_equal(cpuid_apply(ents, nents, t, 4, 4), -EINVAL);
	assert_int_equal(cpuid_apply(ents, nents, t, 0, 0), -EINVAL);
	assert_int_equal(cpuid_apply(ents, nents, t, 200, 2), -EINVAL);
	assert_int_equal(cpuid_apply(ents, nents, NULL, 0, 1), -EINVAL);
	assert_int_equal(find(1, 0)->ebx, before); /* nothing changed */
	/* An empty table is fine and stays empty. */
	assert_int_equal(cpuid_apply(ents, 0, t, 0, 1), 0);
}

static void test_find_and_has(void **state)
{
	(void)state;
	assert_int_equal(find(7, 1)->eax, 0xffffffff);
	assert_int_equal(find(7, 0)->eax, 1);
	assert_null(cpuid_find(ents, nents, 7, 2));
	assert_null(cpuid_find(ents, nents, 0x12345, 0));
	/* Without the significant-index flag, the subleaf is ignored. */
	assert_int_equal(cpuid_find(ents, nents, 1, 5)->eax, 0x000906ea);
	assert_int_equal(cpuid_has(ents, nents, "no_such_feature"), 0);
	assert_int_equal(cpuid_has(ents, nents, "avx_vnni"), 1);
	find(7, 1)->eax = 0;
	assert_int_equal(cpuid_has(ents, nents, "avx_vnni"), 0);
	assert_int_equal(cpuid_has(ents, 0, "sse3"), 0);
}

static void test_templates_and_feature_table(void **state)
{
	(void)state;
	assert_null(cpuid_template_find("nope"));
	assert_null(cpuid_template_find(""));
	assert_null(cpuid_template_find("Host"));
	const struct cpu_template *h = cpuid_template_find("host");
	const struct cpu_template *b = cpuid_template_find("baseline");
	assert_non_null(h);
	assert_non_null(b);
	assert_string_equal(h->name, "host");
	assert_null(h->remove[0]);
	char names[64];
	cpuid_template_names(names, sizeof(names));
	assert_string_equal(names, "host, baseline");
	char tiny[6];
	cpuid_template_names(tiny, sizeof(tiny));
	assert_string_equal(tiny, "host,");

	/* Every name a template removes exists (catches typos, which would be silently ignored). */
	const struct cpu_template *ts[] = {h, b};
	for (size_t t = 0; t < 2; t++)
		for (const char *const *p = ts[t]->remove; *p; p++)
			if (!cpuid_feature_find(*p))
				fail_msg("template %s removes unknown feature '%s'", ts[t]->name,
					 *p);

	/* The table: unique names, unique bits, sane registers. */
	for (size_t i = 0; i < cpu_features_count; i++) {
		const struct cpu_feature *f = &cpu_features[i];
		assert_true(f->reg <= R_EDX);
		assert_true(f->bit < 32);
		assert_ptr_equal(cpuid_feature_find(f->name), f);
		for (size_t j = i + 1; j < cpu_features_count; j++) {
			const struct cpu_feature *g = &cpu_features[j];
			if (!strcmp(f->name, g->name))
				fail_msg("feature '%s' listed twice", f->name);
			if (f->leaf == g->leaf && f->subleaf == g->subleaf && f->reg == g->reg &&
			    f->bit == g->bit)
				fail_msg("'%s' and '%s' are the same bit", f->name, g->name);
		}
	}
	/* Spot-check well-known positions. */
	const struct cpu_feature *f = cpuid_feature_find("avx512f");
	assert_int_equal(f->leaf, 7);
	assert_int_equal(f->reg, R_EBX);
	assert_int_equal(f->bit, 16);
	f = cpuid_feature_find("xsave");
	assert_int_equal(f->leaf, 1);
	assert_int_equal(f->reg, R_ECX);
	assert_int_equal(f->bit, 26);
	f = cpuid_feature_find("lm");
	assert_int_equal(f->leaf, 0x80000001);
	assert_int_equal(f->reg, R_EDX);
	assert_int_equal(f->bit, 29);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_host_keeps_everything, setup),
	    cmocka_unit_test_setup(test_baseline_removes_its_list, setup),
	    cmocka_unit_test_setup(test_baseline_xsave_leaf, setup),
	    cmocka_unit_test_setup(test_xsave_leaf_partial, setup),
	    cmocka_unit_test_setup(test_template_without_xsave, setup),
	    cmocka_unit_test_setup(test_topology, setup),
	    cmocka_unit_test_setup(test_topology_254, setup),
	    cmocka_unit_test_setup(test_apply_einval, setup),
	    cmocka_unit_test_setup(test_find_and_has, setup),
	    cmocka_unit_test_setup(test_templates_and_feature_table, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
