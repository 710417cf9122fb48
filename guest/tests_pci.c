/* tests_pci.c — `pci` (CF8 vs ECAM, capability lists, BARs) and `msix` (delivery, masks, PBA). */
#include "guest.h"
#include "pci.h"
#include "virtio.h"
#include "x86.h"

#define IRQ_WAIT_US 2000000
#define QUIET_US 100000 /* no interrupt may arrive within this while masked */
#define USED_WAIT_US 2000000

static void describe_bars(const struct pci_dev *d, char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = 0;
	for (unsigned int i = 0; i < 6 && len < n; i++) {
		const struct pci_bar *b = &d->bar[i];

		if (!b->size)
			continue;
		len += snprintf(buf + len, n - len, "%s%u:%s%s%s@0x%lx+0x%lx%s", len ? "," : "", i,
				b->io ? "io" : "mem", b->is64 ? "64" : "", b->prefetch ? "p" : "",
				b->addr, b->size, b->assigned ? "*" : "");
	}
	if (!len)
		snprintf(buf, n, "-");
}

/* Walk the standard capability list: every pointer in 0x40..0xff, no offset visited twice. */
static int check_caps(const struct pci_dev *d, char *why, size_t n, unsigned int *ncaps)
{
	uint64_t seen = 0; /* one bit per dword in 0x40..0xff */
	uint32_t status = pci_cf8_read32(d->bus, d->dev, d->fn, 0x04) >> 16;
	unsigned int off;

	if (!(status & PCI_STATUS_CAP_LIST))
		return 0;
	off = pci_cf8_read32(d->bus, d->dev, d->fn, PCI_CAP_PTR) & 0xff;
	while (off) {
		uint32_t hdr;

		if (off < 0x40 || off > 0xfc || (off & 3)) {
			snprintf(why, n, "cap-pointer-out-of-range off=0x%x", off);
			return -1;
		}
		if (seen & (1ULL << ((off - 0x40) / 4))) {
			snprintf(why, n, "cap-loop off=0x%x", off);
			return -1;
		}
		seen |= 1ULL << ((off - 0x40) / 4);
		hdr = pci_cf8_read32(d->bus, d->dev, d->fn, off);
		if ((hdr & 0xff) == 0) {
			snprintf(why, n, "cap-id-zero off=0x%x", off);
			return -1;
		}
		(*ncaps)++;
		off = (hdr >> 8) & 0xff;
	}
	return 0;
}

/* Compare the first 256 bytes through both mechanisms. A dword that differs and also changes
 * between two CF8 reads is volatile (a live status bit), not a disagreement. */
static int compare_cfg(const struct pci_dev *d, char *why, size_t n, unsigned int *nvolatile)
{
	for (unsigned int off = 0; off < 256; off += 4) {
		uint32_t a = pci_cf8_read32(d->bus, d->dev, d->fn, off);
		uint32_t b = pci_ecam_read32(d->bus, d->dev, d->fn, off);

		if (a == b)
			continue;
		if (pci_cf8_read32(d->bus, d->dev, d->fn, off) != a) {
			(*nvolatile)++;
			continue;
		}
		snprintf(why, n, "cf8-ecam-mismatch %02x:%02x.%x off=0x%02x cf8=0x%08x ecam=0x%08x",
			 d->bus, d->dev, d->fn, off, a, b);
		return -1;
	}
	return 0;
}

void test_pci(void)
{
	char why[128] = "", bars[200];
	unsigned int ncaps = 0, nvolatile = 0, assigned = 0;
	int n = pci_init();

	if (n < 0) {
		kprintf("berth-test pci FAIL reason=\"%s\"\n", pci_error);
		return;
	}
	for (unsigned int i = 0; i < pci_ndevs; i++) {
		const struct pci_dev *d = &pci_devs[i];

		describe_bars(d, bars, sizeof(bars));
		kprintf("berth-info pci %02x:%02x.%x vendor=%04x device=%04x class=%06x hdr=%u "
			"bars=%s\n",
			d->bus, d->dev, d->fn, d->vendor, d->device, d->class, d->hdr_type, bars);
		for (unsigned int b = 0; b < 6; b++)
			assigned += d->bar[b].assigned;
		if (!why[0] && d->map_error)
			snprintf(why, sizeof(why), "bar-unmapped %02x:%02x.%x", d->bus, d->dev,
				 d->fn);
		if (!why[0] && !pci_have_ecam)
			snprintf(why, sizeof(why), "no-ecam mcfg=0x%lx", acpi.mcfg_base);
		if (!why[0])
			compare_cfg(d, why, sizeof(why), &nvolatile);
		if (!why[0])
			check_caps(d, why, sizeof(why), &ncaps);
	}
	if (why[0]) {
		kprintf("berth-test pci FAIL reason=\"%s\" devices=%u\n", why, pci_ndevs);
		return;
	}
	kprintf("berth-test pci PASS devices=%u caps=%u volatile=%u assigned=%u ecam=0x%lx\n",
		pci_ndevs, ncaps, nvolatile, assigned, acpi.mcfg_base);
}

/* ---- msix ---------------------------------------------------------------------------------- */

static uint8_t msix_buf[64] __attribute__((aligned(64)));
static uint64_t msix_token;

/* Post one 16-byte rng request from ring 0. */
static int submit(struct virtq *vq)
{
	struct vq_buf b = {(uint64_t)msix_buf, 16, 1};

	if (vq_add(vq, &b, 1, 0, ++msix_token) < 0)
		return -1;
	vq_kick(vq);
	return 0;
}

/* Poll the used ring (interrupts off). 0 when our request came back. */
static int reap(struct virtq *vq)
{
	uint64_t end = tsc_after_us(USED_WAIT_US), tok;
	uint32_t len;

	while (rdtsc() < end) {
		int r = vq_get(vq, &len, &tok);

		if (r < 0)
			return -1;
		if (r)
			return tok == msix_token && len > 0 && len <= 16 ? 0 : -1;
		cpu_relax();
	}
	return -1;
}

static struct irq_job irq_job;

/* Masked-vector case: the event must set the PBA bit and deliver nothing until `unmask` runs. */
static const char *masked_event(struct virtq *vq, const struct msix *m, int fmask)
{
	uint32_t n = msix_irqs[0];

	if (fmask)
		msix_control(m, 1, 1);
	else
		msix_mask(m, 0, 1);
	if (submit(vq) < 0 || reap(vq) < 0)
		return "masked-request-failed";
	if (wait_count(&msix_irqs[0], n + 1, QUIET_US) == 0)
		return fmask ? "irq-while-function-masked" : "irq-while-masked";
	if (!msix_pending(m, 0))
		return fmask ? "pba-not-set-function-masked" : "pba-not-set";
	if (fmask)
		msix_control(m, 1, 0);
	else
		msix_mask(m, 0, 0);
	if (wait_count(&msix_irqs[0], n + 1, IRQ_WAIT_US) < 0)
		return fmask ? "no-irq-after-function-unmask" : "no-irq-after-unmask";
	if (msix_pending(m, 0))
		return "pba-still-set";
	return NULL;
}

void test_msix(void)
{
	struct virtio_dev v;
	struct msix m;
	struct virtq *vq;
	const char *why = NULL;
	uint32_t n;
	uint16_t cfgvec;

	if (virtio_find(&v, VIRTIO_TYPE_RNG, 0) < 0) {
		kprintf("berth-test msix FAIL reason=\"%s\"\n", v.error);
		return;
	}
	if (msix_init(&m, v.pci) < 0) {
		kprintf("berth-test msix FAIL reason=no-msix-cap\n");
		return;
	}
	/* As Linux: enable MSI-X with the function masked, program the table, then unmask. */
	msix_control(&m, 1, 1);
	msix_route(&m, 0, 0, lapic_id());
	msix_mask(&m, 0, 0);
	if (virtio_negotiate(&v, VIRTIO_F_VERSION_1, VIRTIO_F_VERSION_1) < 0)
		goto fail_dev;
	virtio_set_config_vector(&v, VIRTIO_NO_VECTOR, &cfgvec);
	if (virtio_setup_queue(&v, 0, 64, 0) < 0 || virtio_driver_ok(&v) < 0)
		goto fail_dev;
	msix_control(&m, 1, 0);
	vq = v.vq[0];

	/* 1: delivery to a CPU sleeping in `sti; hlt` */
	n = msix_irqs[0];
	if (submit(vq) < 0)
		why = "submit-failed";
	else if (wait_count(&msix_irqs[0], n + 1, IRQ_WAIT_US) < 0)
		why = "no-irq";
	else if (reap(vq) < 0)
		why = "bad-completion";
	/* 2: delivery while ring 3 runs */
	if (!why) {
		irq_job.vq = vq;
		irq_job.counter = &msix_irqs[0];
		irq_job.before = msix_irqs[0];
		irq_job.token = ++msix_token;
		irq_job.deadline = tsc_after_us(IRQ_WAIT_US);
		if (user_run(u_irq_wait, (uint64_t)&irq_job) != 0)
			why = "no-irq-in-ring3";
		else if (reap(vq) < 0)
			why = "bad-completion-ring3";
	}
	/* 3, 4: entry mask and function mask hold the message in the PBA */
	if (!why)
		why = masked_event(vq, &m, 0);
	if (!why)
		why = masked_event(vq, &m, 1);
	virtio_reset(&v);
	msix_control(&m, 0, 0);
	if (why) {
		kprintf("berth-test msix FAIL reason=\"%s\" irqs=%u vectors=%u\n", why,
			msix_irqs[0], m.nvec);
		return;
	}
	kprintf(
	    "berth-test msix PASS irqs=%u vectors=%u table=0x%lx pba=0x%lx config_vector=0x%x\n",
	    msix_irqs[0], m.nvec, m.table, m.pba, cfgvec);
	return;
fail_dev:
	msix_control(&m, 0, 0);
	kprintf("berth-test msix FAIL reason=\"%s\"\n", v.error);
}
