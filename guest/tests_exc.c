/* tests_exc.c — `exceptions`: faults at ring 3 and 0; vector, error code, CR2, RIP, resume */
#include "guest.h"
#include "x86.h"

#define NO_CR2 (~0ULL)

struct probe {
	const char *name;
	int user;
	uint64_t (*fn)(uint64_t);
	uint64_t arg;
	const char *insn; /* faulting instruction */
	uint64_t rip_off; /* expected rip - insn (1 for int3: trap semantics) */
	uint64_t vector, err;
	uint64_t cr2; /* NO_CR2: not checked */
};

void test_exceptions(void)
{
	static const struct probe probes[] = {
	    {"user-ud", 1, u_probe_ud2, 0, u_probe_ud2_insn, 0, 6, 0, NO_CR2},
	    {"user-de", 1, u_probe_div0, 0, u_probe_div0_insn, 0, 0, 0, NO_CR2},
	    {"user-pf-unmapped", 1, u_probe_read, TEST_VA_UNMAPPED, u_probe_read_insn, 0, 14, 0x4,
	     TEST_VA_UNMAPPED},
	    {"user-pf-readonly", 1, u_probe_write, TEST_VA_RO + 8, u_probe_write_insn, 0, 14, 0x7,
	     TEST_VA_RO + 8},
	    {"user-pf-supervisor", 1, u_probe_read, 0xfee00000, u_probe_read_insn, 0, 14, 0x5,
	     0xfee00000},
	    {"user-gp-hlt", 1, u_probe_hlt, 0, u_probe_hlt_insn, 0, 13, 0, NO_CR2},
	    {"user-gp-cli", 1, u_probe_cli, 0, u_probe_cli_insn, 0, 13, 0, NO_CR2},
	    {"user-gp-in", 1, u_probe_in, 0, u_probe_in_insn, 0, 13, 0, NO_CR2},
	    {"user-bp", 1, u_probe_int3, 0, u_probe_int3_insn, 1, 3, 0, NO_CR2},
	    {"kernel-pf-unmapped", 0, k_probe_read, TEST_VA_UNMAPPED + 16, k_probe_read_insn, 0, 14,
	     0x0, TEST_VA_UNMAPPED + 16},
	    {"kernel-pf-readonly", 0, k_probe_write, TEST_VA_RO + 24, k_probe_write_insn, 0, 14,
	     0x3, TEST_VA_RO + 24},
	    {"kernel-ud", 0, k_probe_ud2, 0, k_probe_ud2_insn, 0, 6, 0, NO_CR2},
	    {"kernel-gp-noncanonical", 0, k_probe_read, 0x8000000000000000ULL, k_probe_read_insn, 0,
	     13, 0, NO_CR2},
	};
	struct expect *ex = &this_cpu()->expect;
	uint32_t n = sizeof(probes) / sizeof(probes[0]);

	for (uint32_t i = 0; i < n; i++) {
		const struct probe *p = &probes[i];
		uint64_t ret, want_rip = (uint64_t)p->insn + p->rip_off;
		const char *what = NULL;

		expect_arm();
		ret = p->user ? user_run(p->fn, p->arg) : p->fn(p->arg);
		ex->armed = 0;
		if (!ex->hit)
			what = "not-delivered";
		else if (ex->vector != p->vector)
			what = "vector";
		else if (ex->err != p->err)
			what = "error-code";
		else if (p->cr2 != NO_CR2 && ex->cr2 != p->cr2)
			what = "cr2";
		else if (ex->rip != want_rip)
			what = "rip";
		else if ((ex->cs & 3) != (p->user ? 3u : 0u))
			what = "cs";
		else if (ret != PROBE_MAGIC)
			what = "resume";
		if (what) {
			kprintf("berth-test exceptions FAIL reason=\"%s %s vector=%ld err=0x%lx "
				"cr2=0x%lx rip=0x%lx "
				"want_vector=%lu want_err=0x%lx want_rip=0x%lx ret=0x%lx\"\n",
				p->name, what, ex->hit ? (int64_t)ex->vector : -1L, ex->err,
				ex->cr2, ex->rip, p->vector, p->err, want_rip, ret);
			return;
		}
	}
	kprintf("berth-test exceptions PASS count=%u\n", n);
}
