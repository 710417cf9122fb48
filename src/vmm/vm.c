/* VM lifecycle on KVM: capability checks, memory slots, irqchip/PIT, vCPU creation, loading,
 * start/stop. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/evloop.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/acpi.h"
#include "vmm/boot.h"
#include "vmm/cpuid.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"

static const struct {
	int cap;
	const char *name;
	const char *why;
} required_caps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY", "guest memory"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "in-kernel PIC/IOAPIC/LAPIC"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2", "in-kernel PIT"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR", "x86 VM setup"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID", "CPUID templates"},
    {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE", "SMP start-up"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "stopping vCPUs without races"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "device doorbells"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "device interrupts"},
    {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING", "MSI routing"},
    {KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK", "kvmclock"},
    {KVM_CAP_VCPU_EVENTS, "KVM_CAP_VCPU_EVENTS", "vCPU state"},
};

int kvm_host_open(struct kvm_host *h, char *msg, size_t msglen)
{
	memset(h, 0, sizeof(*h));
	h->fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (h->fd < 0) {
		int e = -errno;
		snprintf(msg, msglen, "cannot open /dev/kvm: %s%s", strerror(errno),
			 errno == ENOENT   ? " (is KVM enabled and the kvm module loaded?)"
			 : errno == EACCES ? " (add this user to the kvm group)"
					   : "");
		return e;
	}
	int api = ioctl(h->fd, KVM_GET_API_VERSION, 0);
	if (api != KVM_API_VERSION) {
		snprintf(msg, msglen, "/dev/kvm speaks API version %d, berth needs %d", api,
			 KVM_API_VERSION);
		goto fail;
	}
	for (size_t i = 0; i < ARRAY_SIZE(required_caps); i++) {
		if (ioctl(h->fd, KVM_CHECK_EXTENSION, required_caps[i].cap) <= 0) {
			snprintf(msg, msglen, "KVM on this host lacks %s (needed for %s)",
				 required_caps[i].name, required_caps[i].why);
			goto fail;
		}
	}
	h->max_vcpus = ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (h->max_vcpus <= 0)
		h->max_vcpus = ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (h->max_vcpus <= 0)
		h->max_vcpus = 4;
	int rs = ioctl(h->fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (rs <= 0) {
		snprintf(msg, msglen, "KVM_GET_VCPU_MMAP_SIZE failed: %s", strerror(errno));
		goto fail;
	}
	h->run_size = (size_t)rs;
	for (unsigned n = 128; n <= 4096; n *= 2) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			break;
		c->nent = n;
		if (ioctl(h->fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			h->cpuid = c;
			break;
		}
		free(c);
		if (errno != E2BIG)
			break;
	}
	if (!h->cpuid) {
		snprintf(msg, msglen, "KVM_GET_SUPPORTED_CPUID failed: %s", strerror(errno));
		goto fail;
	}
	return 0;
fail:
	close(h->fd);
	h->fd = -1;
	return -ENODEV;
}

void kvm_host_close(struct kvm_host *h)
{
	free(h->cpuid);
	if (h->fd >= 0)
		close(h->fd);
	h->cpuid = NULL;
	h->fd = -1;
}

#define VM_MAX_ROUTES 1024
#define FIRST_MSI_GSI 24 /* 0..23 are the IOAPIC pins (0..15 also the PICs) */

/* KVM's default routes, which KVM_SET_GSI_ROUTING would otherwise replace. */
static int init_routes(struct vm *vm)
{
	vm->routes =
	    calloc(1, sizeof(*vm->routes) + VM_MAX_ROUTES * sizeof(vm->routes->entries[0]));
	if (!vm->routes)
		return -ENOMEM;
	pthread_mutex_init(&vm->irq_lock, NULL);
	struct kvm_irq_routing_entry *e = vm->routes->entries;
	unsigned n = 0;
	for (unsigned gsi = 0; gsi < 16; gsi++) {
		e[n++] = (struct kvm_irq_routing_entry){
		    .gsi = gsi,
		    .type = KVM_IRQ_ROUTING_IRQCHIP,
		    .u.irqchip = {gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
				  gsi % 8}};
	}
	for (unsigned gsi = 0; gsi < 24; gsi++)
		e[n++] = (struct kvm_irq_routing_entry){.gsi = gsi,
							.type = KVM_IRQ_ROUTING_IRQCHIP,
							.u.irqchip = {KVM_IRQCHIP_IOAPIC, gsi}};
	vm->routes->nr = n;
	vm->next_gsi = FIRST_MSI_GSI;
	return 0;
}

int vm_alloc_gsi(struct vm *vm)
{
	pthread_mutex_lock(&vm->irq_lock);
	int g = vm->routes->nr < VM_MAX_ROUTES ? (int)vm->next_gsi++ : -ENOSPC;
	pthread_mutex_unlock(&vm->irq_lock);
	return g;
}

int vm_set_msi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	int r = 0;
	pthread_mutex_lock(&vm->irq_lock);
	struct kvm_irq_routing_entry *e = NULL;
	for (unsigned i = 0; i < vm->routes->nr; i++)
		if (vm->routes->entries[i].gsi == gsi)
			e = &vm->routes->entries[i];
	if (!e) {
		if (vm->routes->nr == VM_MAX_ROUTES) {
			r = -ENOSPC;
			goto out;
		}
		e = &vm->routes->entries[vm->routes->nr++];
	}
	*e = (struct kvm_irq_routing_entry){.gsi = gsi,
					    .type = KVM_IRQ_ROUTING_MSI,
					    .u.msi = {.address_lo = (uint32_t)addr,
						      .address_hi = (uint32_t)(addr >> 32),
						      .data = data}};
	if (ioctl(vm->fd, KVM_SET_GSI_ROUTING, vm->routes) < 0) {
		r = -errno;
		log_warn(NULL, "KVM_SET_GSI_ROUTING (gsi %u): %s", gsi, strerror(errno));
	}
out:
	pthread_mutex_unlock(&vm->irq_lock);
	return r;
}

int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign)
{
	struct kvm_irqfd f = {
	    .fd = (uint32_t)efd, .gsi = gsi, .flags = assign ? 0 : KVM_IRQFD_FLAG_DEASSIGN};
	return ioctl(vm->fd, KVM_IRQFD, &f) < 0 ? -errno : 0;
}

int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool assign)
{
	struct kvm_ioeventfd io = {
	    .addr = addr, .len = len, .fd = efd, .flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN};
	return ioctl(vm->fd, KVM_IOEVENTFD, &io) < 0 ? -errno : 0;
}

void vm_set_irq(void *opaque, unsigned gsi, int level)
{
	struct vm *vm = opaque;
	struct kvm_irq_level irq = {.irq = gsi, .level = (uint32_t)level};
	if (ioctl(vm->fd, KVM_IRQ_LINE, &irq) < 0)
		log_warn(NULL, "KVM_IRQ_LINE gsi %u: %s", gsi, strerror(errno));
}

int vcpu_set_msr(struct vcpu *v, uint32_t index, uint64_t value)
{
	union {
		struct kvm_msrs hdr;
		uint8_t raw[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} m;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.hdr.entries[0].index = index;
	m.hdr.entries[0].data = value;
	return ioctl(v->fd, KVM_SET_MSRS, &m) == 1 ? 0 : -EINVAL;
}

/* Firmware-like MSR defaults; KVM may refuse some on some hosts, which is harmless. */
static void setup_msrs(struct vcpu *v)
{
	if (vcpu_set_msr(v, 0x1a0, 1)) /* IA32_MISC_ENABLE: fast strings */
		log_debug(v->tag, "KVM refused IA32_MISC_ENABLE");
	if (vcpu_set_msr(v, 0x2ff, 0xc06)) /* MTRRdefType: enabled, write-back */
		log_debug(v->tag, "KVM refused MTRRdefType");
	/* AMD: HWCR.TscFreqSel says the TSC counts at the P0 frequency, as on real parts. */
	const struct kvm_cpuid2 *c = v->vm->host->cpuid;
	struct kvm_cpuid_entry2 *v0 =
	    cpuid_find((struct kvm_cpuid_entry2 *)c->entries, c->nent, 0, 0);
	if (v0 && v0->ebx == 0x68747541 /* "Auth"enticAMD */ &&
	    vcpu_set_msr(v, 0xc0010015, 1ULL << 24))
		log_debug(v->tag, "KVM refused HWCR.TscFreqSel");
}

/* LINT0 = ExtINT (the 8259 behind the BSP), LINT1 = NMI, as firmware leaves them. */
static int setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state l;
	if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0)
		return -errno;
	uint32_t *lvt0 = (uint32_t *)&l.regs[0x350], *lvt1 = (uint32_t *)&l.regs[0x360];
	*lvt0 = (*lvt0 & ~0x1ffffu) | 0x700;
	*lvt1 = (*lvt1 & ~0x1ffffu) | 0x400;
	if (ioctl(v->fd, KVM_SET_LAPIC, &l) < 0)
		return -errno;
	return 0;
}

static int create_vcpu(struct vm *vm, unsigned id)
{
	struct vcpu *v = &vm->vcpus[id];
	const struct cpu_template *t = cpuid_template_find(vm->cfg->cpu_template);
	int r;

	v->vm = vm;
	v->id = id;
	snprintf(v->tag, sizeof(v->tag), "cpu%u", id);
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0)
		return -errno;
	void *run = mmap(NULL, vm->host->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (run == MAP_FAILED)
		return -errno;
	v->run = run;

	size_t n = vm->host->cpuid->nent;
	struct kvm_cpuid2 *c = malloc(sizeof(*c) + n * sizeof(c->entries[0]));
	if (!c)
		return -ENOMEM;
	memcpy(c, vm->host->cpuid, sizeof(*c) + n * sizeof(c->entries[0]));
	r = cpuid_apply(c->entries, c->nent, t, id, vm->ncpus);
	if (r >= 0)
		r = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	if (r)
		return r;
	setup_msrs(v);
	return setup_lapic(v);
}

static const struct bus_ops serial_ops = {serial_read, serial_write};

static int add_serial(struct vm *vm, unsigned idx, struct serial_backend *be)
{
	static const uint16_t port[2] = {0x3f8, 0x2f8};
	static const unsigned irq[2] = {4, 3};
	char tag[16];
	snprintf(tag, sizeof(tag), "serial%u", idx);
	int r = serial_init(&vm->com[idx], tag, be, irq[idx], vm_set_irq, vm, vm->loop);
	vm->com_present[idx] = true;
	if (r)
		return r;
	return bus_register(&vm->pio, port[idx], 8, &serial_ops, &vm->com[idx],
			    idx == 0 ? "serial0" : "serial1");
}

/* RAM region i is KVM memory slot i. */
static int set_slot(struct vm *vm, unsigned i, uint32_t flags)
{
	const struct mem_region *mr = &vm->mem.regions[i];
	struct kvm_userspace_memory_region kr = {
	    .slot = i,
	    .flags = flags,
	    .guest_phys_addr = mr->gpa,
	    .memory_size = mr->size,
	    .userspace_addr = (uintptr_t)mr->host,
	};
	return ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &kr) < 0 ? -errno : 0;
}

int vm_dirty_log(struct vm *vm, bool on)
{
	int r = 0;
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		int e = set_slot(vm, i, on ? KVM_MEM_LOG_DIRTY_PAGES : 0);
		if (e) {
			log_warn(NULL, "dirty logging %s on memory slot %u: %s", on ? "on" : "off",
				 i, strerror(-e));
			r = r ? r : e;
			if (on)
				break;
		}
	}
	if (r && on)
		vm_dirty_log(vm, false);
	return r;
}

int vm_dirty_log_get(struct vm *vm, uint64_t *bitmap)
{
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		const struct mem_region *mr = &vm->mem.regions[i];
		uint64_t npages = mr->size / 4096, first = mr->file_offset / 4096;
		uint64_t *slot = calloc((npages + 63) / 64, sizeof(uint64_t));
		if (!slot)
			return -ENOMEM;
		struct kvm_dirty_log dl = {.slot = i, .dirty_bitmap = slot};
		if (ioctl(vm->fd, KVM_GET_DIRTY_LOG, &dl) < 0) {
			int e = -errno;
			free(slot);
			return e;
		}
		for (uint64_t w = 0; w < (npages + 63) / 64; w++) {
			if (!slot[w])
				continue;
			if (first % 64 == 0) {
				bitmap[first / 64 + w] |= slot[w];
				continue;
			}
			for (uint64_t b = 0; b < 64; b++)
				if (slot[w] >> b & 1) {
					uint64_t pg = first + w * 64 + b;
					bitmap[pg / 64] |= 1ULL << (pg % 64);
				}
		}
		free(slot);
	}
	return 0;
}

int vm_create(struct vm *vm, struct kvm_host *h, const struct vm_config *cfg,
	      const struct mem_layout *layout, struct serial_backend *serial_be,
	      struct evloop *loop, const char *mem_file)
{
	int r;
	memset(vm, 0, sizeof(*vm));
	vm->loop = loop;
	vm->cfg = cfg;
	vm->host = h;
	vm->fd = -1;
	vm->ncpus = cfg->cpus;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->run_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->run_cond, &ca);
	pthread_condattr_destroy(&ca);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");

	vm->fd = ioctl(h->fd, KVM_CREATE_VM, 0);
	if (vm->fd < 0) {
		r = -errno;
		log_err(NULL, "KVM_CREATE_VM: %s", strerror(errno));
		return r;
	}
	if (ioctl(vm->fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0) {
		r = -errno;
		log_err(NULL, "KVM_SET_TSS_ADDR: %s", strerror(errno));
		return r;
	}
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
	    ioctl(vm->fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
		log_warn(NULL, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (ioctl(vm->fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		r = -errno;
		log_err(NULL, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
		return r;
	}
	if (cfg->cpus > 255) { /* APIC IDs beyond the xAPIC range need 32-bit IDs in KVM */
		struct kvm_enable_cap cap = {.cap = KVM_CAP_X2APIC_API,
					     .args = {KVM_X2APIC_API_USE_32BIT_IDS |
						      KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK}};
		if (ioctl(h->fd, KVM_CHECK_EXTENSION, KVM_CAP_X2APIC_API) <= 0 ||
		    ioctl(vm->fd, KVM_ENABLE_CAP, &cap) < 0) {
			log_err(NULL, "--cpus %u needs KVM_CAP_X2APIC_API, which this host lacks",
				cfg->cpus);
			return -ENOTSUP;
		}
	}
	struct kvm_pit_config pit = {.flags = KVM_PIT_SPEAKER_DUMMY};
	if (ioctl(vm->fd, KVM_CREATE_PIT2, &pit) < 0) {
		r = -errno;
		log_err(NULL, "KVM_CREATE_PIT2: %s", strerror(errno));
		return r;
	}

	if ((r = mem_file ? guest_mem_init_file(&vm->mem, layout, mem_file)
			  : guest_mem_init(&vm->mem, layout))) {
		log_err(NULL, "cannot allocate %llu MiB of guest memory: %s",
			(unsigned long long)(layout->ram_bytes >> 20), strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < vm->mem.nregions; i++) {
		if ((r = set_slot(vm, i, 0))) {
			log_err(NULL, "KVM_SET_USER_MEMORY_REGION slot %u: %s", i, strerror(-r));
			return r;
		}
	}

	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus)
		return -ENOMEM;
	for (unsigned i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if ((r = create_vcpu(vm, i))) {
			log_err(NULL, "cannot create vCPU %u: %s", i, strerror(-r));
			return r;
		}
	}

	for (unsigned i = 0; i < 2; i++) {
		if (cfg->serial[i].kind == SERIAL_NONE)
			continue;
		if ((r = add_serial(vm, i, &serial_be[i]))) {
			log_err(NULL, "cannot register COM%u: %s", i + 1, strerror(-r));
			return r;
		}
	}
	if ((r = pm_init(&vm->pm, vm))) {
		log_err(NULL, "cannot register power management ports: %s", strerror(-r));
		return r;
	}
	if ((r = init_routes(vm)))
		return r;
	if ((r = pci_bus_init(&vm->pci, &vm->pio, &vm->mmio, layout_mmio64_base(layout),
			      PCI_MMIO64_SIZE))) {
		log_err(NULL, "cannot set up the PCI bus: %s", strerror(-r));
		return r;
	}
	for (unsigned i = 0; i < cfg->ndisks; i++)
		if ((r = virtio_blk_create(vm, &cfg->disks[i], cfg->cpus)))
			return r;
	for (unsigned i = 0; i < cfg->nnics; i++)
		if ((r = virtio_net_create(vm, &cfg->nics[i], cfg->name, i)))
			return r;
	if (cfg->nports && (r = virtio_console_create(vm, cfg->ports, cfg->nports)))
		return r;
	if (cfg->rng && (r = virtio_rng_create(vm)))
		return r;
	return 0;
}

int vm_load(struct vm *vm, const struct boot_image *img)
{
	uint8_t acpi[BIOS_AREA_END - BIOS_AREA_START];
	struct acpi_layout al;
	struct acpi_params ap;
	acpi_vm_params(&ap, &vm->mem.layout, vm->ncpus, vm->com_present[0], vm->com_present[1]);
	int r = acpi_build(acpi, sizeof(acpi), ACPI_BASE, &ap, &al);
	if (r) {
		log_err("acpi", "cannot build ACPI tables: %s", strerror(-r));
		return r;
	}
	if ((r = guest_write(&vm->mem, ACPI_BASE, acpi, al.size)))
		return r;

	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vcpu *bsp = &vm->vcpus[0];
	if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	if ((r = boot_load(img, &vm->mem, al.rsdp, &regs, &sregs))) {
		log_err("boot", "cannot load the kernel into guest memory: %s", strerror(-r));
		return r;
	}
	if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0) {
		r = -errno;
		log_err("boot", "cannot set the boot CPU's registers: %s", strerror(errno));
		return r;
	}
	log_debug("boot", "%s kernel entry 0x%llx, ACPI RSDP at 0x%llx",
		  img->mode == BOOT_LINUX ? "Linux 64-bit" : "PVH", (unsigned long long)regs.rip,
		  (unsigned long long)al.rsdp);
	return 0;
}

void vm_request_stop(struct vm *vm, enum stop_reason reason)
{
	pthread_mutex_lock(&vm->stop_lock);
	if (vm->stop_reason == STOP_NONE)
		vm->stop_reason = reason;
	pthread_mutex_unlock(&vm->stop_lock);
	/* Parked vCPUs and waiting pausers see the stop under run_lock, so none misses it. */
	pthread_mutex_lock(&vm->run_lock);
	pthread_cond_broadcast(&vm->run_cond);
	pthread_mutex_unlock(&vm->run_lock);
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].thread_started)
			vcpu_kick(&vm->vcpus[i]);
	if (vm->loop)
		evloop_stop(vm->loop);
}

const char *stop_reason_name(enum stop_reason r)
{
	static const char *const names[] = {
	    [STOP_NONE] = "none",     [STOP_POWEROFF] = "poweroff",   [STOP_REBOOT] = "reboot",
	    [STOP_CRASH] = "crash",   [STOP_KVM_ERROR] = "kvm-error", [STOP_TIMEOUT] = "timeout",
	    [STOP_SIGNAL] = "signal", [STOP_VMM_ERROR] = "vmm-error", [STOP_QUIT] = "quit",
	    [STOP_SAVED] = "saved",
	};
	return (unsigned)r < ARRAY_SIZE(names) && names[r] ? names[r] : "unknown";
}

static bool stopping(struct vm *vm)
{
	return __atomic_load_n(&vm->stop_reason, __ATOMIC_SEQ_CST) != STOP_NONE;
}

int vm_pause_vcpus(struct vm *vm, unsigned timeout_ms)
{
	unsigned nthreads = 0;
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	for (unsigned i = 0; i < vm->ncpus; i++)
		nthreads += vm->vcpus[i].thread_started;

	pthread_mutex_lock(&vm->run_lock);
	vm->pause_depth++;
	__atomic_store_n(&vm->pause_req, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->run_lock);
	/* Like vm_request_stop: immediate_exit catches a vCPU between its checks and KVM_RUN. */
	for (unsigned i = 0; i < vm->ncpus; i++)
		if (vm->vcpus[i].thread_started)
			vcpu_kick(&vm->vcpus[i]);

	int r = 0;
	pthread_mutex_lock(&vm->run_lock);
	while (vm->nparked < nthreads && !stopping(vm) && r == 0)
		r = pthread_cond_timedwait(&vm->run_cond, &vm->run_lock, &until);
	if (vm->nparked >= nthreads && !stopping(vm)) {
		r = 0;
	} else {
		r = stopping(vm) ? -ECANCELED : -ETIMEDOUT;
		if (--vm->pause_depth == 0) {
			__atomic_store_n(&vm->pause_req, 0, __ATOMIC_SEQ_CST);
			pthread_cond_broadcast(&vm->run_cond);
		}
	}
	pthread_mutex_unlock(&vm->run_lock);
	return r;
}

void vm_hold_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	vm->pause_depth++;
	__atomic_store_n(&vm->pause_req, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&vm->run_lock);
}

void vm_resume_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	if (vm->pause_depth && --vm->pause_depth == 0) {
		__atomic_store_n(&vm->pause_req, 0, __ATOMIC_SEQ_CST);
		pthread_cond_broadcast(&vm->run_cond);
	}
	pthread_mutex_unlock(&vm->run_lock);
}

bool vm_paused(struct vm *vm)
{
	pthread_mutex_lock(&vm->run_lock);
	bool p = vm->pause_depth > 0;
	pthread_mutex_unlock(&vm->run_lock);
	return p;
}

int vm_start(struct vm *vm)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	vm->start_ns = (uint64_t)now.tv_sec * 1000000000ULL + (uint64_t)now.tv_nsec;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		int r = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (r) {
			log_err(NULL, "cannot start the thread of vCPU %u: %s", i, strerror(r));
			vm_request_stop(vm, STOP_VMM_ERROR);
			return -r;
		}
		v->thread_started = true;
	}
	return 0;
}

void vm_stop_vcpus(struct vm *vm)
{
	vm_request_stop(vm, STOP_VMM_ERROR); /* no-op on the reason if one is set */
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		if (!v->thread_started)
			continue;
		pthread_join(v->thread, NULL);
		v->thread_started = false;
	}
}

void vm_destroy(struct vm *vm)
{
	if (vm->vcpus) {
		vm_stop_vcpus(vm);
		for (unsigned i = 0; i < vm->ncpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			if (v->run)
				munmap(v->run, vm->host->run_size);
			if (v->fd >= 0)
				close(v->fd);
		}
		free(vm->vcpus);
		vm->vcpus = NULL;
	}
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_destroy(vm->virtio[i]);
	vm->nvirtio = 0;
	if (vm->routes) {
		free(vm->routes);
		vm->routes = NULL;
		pthread_mutex_destroy(&vm->irq_lock);
	}
	pci_bus_destroy(&vm->pci);
	for (unsigned i = 0; i < 2; i++)
		if (vm->com_present[i])
			serial_destroy(&vm->com[i]);
	pm_destroy(&vm->pm);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	guest_mem_destroy(&vm->mem);
	if (vm->fd >= 0)
		close(vm->fd);
	vm->fd = -1;
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_cond_destroy(&vm->run_cond);
	pthread_mutex_destroy(&vm->run_lock);
}
