/* ACPI tables built by the VMM (RSDP, RSDT/XSDT, FADT+FACS, DSDT, MADT, MCFG) and their fixed I/O
 * ports. */
#ifndef BERTH_ACPI_H
#define BERTH_ACPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* PM1 fixed-hardware registers (FADT PM1a_EVT_BLK / PM1a_CNT_BLK) and the reset register. */
#define ACPI_PM1A_EVT_PORT 0x600 /* 2 bytes status, 2 bytes enable */
#define ACPI_PM1A_CNT_PORT 0x604 /* 2 bytes */
#define ACPI_RESET_PORT 0xCF9
#define ACPI_RESET_VALUE 0x06
#define ACPI_SCI_IRQ 9
#define ACPI_SLP_TYP_S5 5 /* the value in the DSDT's \_S5 package */
#define ACPI_PM1_SLP_EN (1u << 13)
#define ACPI_PM1_SCI_EN (1u << 0)
/* PM1 status (write 1 to clear) and enable bits of the fixed power button. */
#define ACPI_PM1_PWRBTN_STS (1u << 8)
#define ACPI_PM1_PWRBTN_EN (1u << 8)

#define ACPI_MAX_CPUS 1024

struct acpi_params {
	unsigned ncpus;
	uint64_t ecam_base;
	uint8_t ecam_end_bus;
	unsigned com1_irq, com2_irq;	   /* 0 = port absent */
	uint64_t mmio32_base, mmio32_size; /* PCI windows of the host bridge */
	uint64_t mmio64_base, mmio64_size;
	unsigned intx_gsi_base; /* slot s, INTA# -> GSI base + s % 4 (0: no PCI) */
};

struct acpi_layout {
	uint64_t rsdp, rsdt, xsdt, fadt, facs, dsdt, madt, mcfg; /* guest-physical addresses */
	size_t size;						 /* bytes used in buf */
};

/* The parameters of a berth VM's platform: CPUs, COM ports present, PCI windows and ECAM. */
struct mem_layout;
void acpi_vm_params(struct acpi_params *p, const struct mem_layout *l, unsigned ncpus, bool com1,
		    bool com2);

/* Lay out and build every table into buf (to be copied to guest-physical base). -ENOSPC if cap is
 * too small. */
int acpi_build(uint8_t *buf, size_t cap, uint64_t base, const struct acpi_params *p,
	       struct acpi_layout *out);

/* Sum of bytes mod 256 (0 for a table with a correct checksum). */
uint8_t acpi_checksum(const void *data, size_t len);

#endif
