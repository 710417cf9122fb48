/* A KVM virtual machine: /dev/kvm checks, memory slots, in-kernel irqchip and PIT, vCPUs, devices,
 * stop. */
#ifndef BERTH_VM_H
#define BERTH_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/bus.h"
#include "vmm/config.h"
#include "vmm/memory.h"
#include "vmm/pci.h"
#include "vmm/pm.h"
#include "vmm/serial.h"

struct evloop;
struct boot_image;
struct virtio_pci;
struct vmstate_mem;

enum stop_reason {
	STOP_NONE = 0,
	STOP_POWEROFF,
	STOP_REBOOT,
	STOP_CRASH,
	STOP_KVM_ERROR,
	STOP_TIMEOUT,
	STOP_SIGNAL,
	STOP_VMM_ERROR,
	STOP_QUIT,  /* the control socket's quit command */
	STOP_SAVED, /* the state was saved (control socket save): the VM ends here */
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	char tag[16];
};

/* What the host's KVM offers; read once, before any VM exists. */
struct kvm_host {
	int fd;
	int max_vcpus;
	size_t run_size;
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID */
};

struct vm {
	const struct vm_config *cfg;
	struct kvm_host *host;
	int fd;
	struct guest_mem mem;
	struct bus pio, mmio;
	struct vcpu *vcpus;
	unsigned ncpus;

	struct pci_bus pci;
	struct virtio_pci *virtio[PCI_MAX_SLOTS];
	unsigned nvirtio;

	/* GSI routing: the default irqchip routes plus one MSI route per allocated GSI. */
	pthread_mutex_t irq_lock;
	struct kvm_irq_routing *routes;
	unsigned next_gsi;

	struct serial com[2];
	bool com_present[2];
	struct pm pm;

	pthread_mutex_t stop_lock;
	volatile int stop_reason; /* enum stop_reason; the first reason wins */
	struct evloop *loop;	  /* woken when the VM stops */

	/* Pausing (vm_pause_vcpus): while pause_req is set, vCPU threads park on run_cond outside
	 * KVM_RUN. pause_depth counts the holders of a pause; nparked the threads parked. */
	pthread_mutex_t run_lock;
	pthread_cond_t run_cond; /* CLOCK_MONOTONIC; parkers and pausers wait here */
	volatile int pause_req;	 /* read by vCPU threads without the lock */
	unsigned pause_depth;
	unsigned nparked;
	uint64_t start_ns;	     /* CLOCK_MONOTONIC at vm_start */
	struct vmstate_mem *precopy; /* a save's memory pre-copy in progress (vmstate_mem.c) */
};

/* Open /dev/kvm and check every capability berth needs; message on failure. */
int kvm_host_open(struct kvm_host *h, char *msg, size_t msglen);
void kvm_host_close(struct kvm_host *h);

/* Create the VM, memory, irqchip, PIT, vCPUs (with CPUID) and devices. -errno, logged. */
int vm_create(struct vm *vm, struct kvm_host *h, const struct vm_config *cfg,
	      const struct mem_layout *layout, struct serial_backend *serial_be,
	      struct evloop *loop, const char *mem_file /* restore: RAM from this file, or NULL */);
/* Write ACPI tables and the boot image into memory and set the BSP's registers. */
int vm_load(struct vm *vm, const struct boot_image *img);
/* Start vCPU threads; vm_request_stop wakes the VM's loop when the VM stops. */
int vm_start(struct vm *vm);
/* Ask the VM to stop (any thread). The first reason is kept. */
void vm_request_stop(struct vm *vm, enum stop_reason reason);
/* Name of a stop reason for logs and control events ("poweroff", "quit", ...). */
const char *stop_reason_name(enum stop_reason r);

/*
 * Stop every vCPU outside KVM_RUN (each completes the exit it was handling, including pending
 * port/MMIO I/O) and keep it parked until vm_resume_vcpus(). Returns once all are parked. Pauses
 * nest: every successful call holds the VM paused until its matching vm_resume_vcpus(), so a
 * checkpoint can pause a VM a user already paused. -ETIMEDOUT when the vCPUs did not all park
 * within timeout_ms (the attempt is undone), -ECANCELED when the VM is stopping. Any thread but a
 * vCPU thread; it blocks.
 */
int vm_pause_vcpus(struct vm *vm, unsigned timeout_ms);
/* Before vm_start: hold one pause from the start, so no vCPU runs a single instruction until
 * the matching vm_resume_vcpus() (--start-paused). */
void vm_hold_paused(struct vm *vm);
/* Release one pause; the vCPUs run again when no pause is held. */
void vm_resume_vcpus(struct vm *vm);
/* True while at least one pause is held. */
bool vm_paused(struct vm *vm);

/* Kick and join vCPU threads. */
void vm_stop_vcpus(struct vm *vm);
void vm_destroy(struct vm *vm);

/*
 * KVM dirty logging of guest writes on every RAM slot (pre-copy of a save). vm_dirty_log_get ORs
 * the pages written since the last call (or since logging started) into bitmap, one bit per 4 KiB
 * page of RAM (offset from the start of RAM, not guest-physical), and clears KVM's log. -errno.
 */
int vm_dirty_log(struct vm *vm, bool on);
int vm_dirty_log_get(struct vm *vm, uint64_t *bitmap);

/* MSI plumbing for devices: a fresh GSI, its MSI route, an irqfd on it; doorbells by ioeventfd. */
int vm_alloc_gsi(struct vm *vm);
int vm_set_msi_route(struct vm *vm, unsigned gsi, uint64_t addr, uint32_t data);
int vm_irqfd(struct vm *vm, int efd, unsigned gsi, bool assign);
int vm_ioeventfd(struct vm *vm, int efd, uint64_t addr, unsigned len, bool assign);

/* Raise/lower an interrupt line (GSI) on the in-kernel irqchip. */
void vm_set_irq(void *opaque, unsigned gsi, int level);

/* vcpu.c */
void *vcpu_thread(void *arg);
void vcpu_kick(struct vcpu *v);
/* Write one MSR of a vCPU (KVM_SET_MSRS); -EINVAL if KVM refuses it. */
int vcpu_set_msr(struct vcpu *v, uint32_t index, uint64_t value);
/* Wait on run_cond while a pause is requested (called by the vCPU thread after KVM_RUN returned
 * EINTR). */
void vcpu_park(struct vcpu *v);
/* Log registers, segment state and the code bytes at RIP (crash reports). */
void vcpu_dump(struct vcpu *v, const uint8_t *insn, unsigned insn_len);

#endif
