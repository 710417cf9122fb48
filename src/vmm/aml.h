/* A tiny AML (ACPI Machine Language) emitter for the DSDT: names, packages, devices, resource
 * templates. */
#ifndef BERTH_AML_H
#define BERTH_AML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct aml {
	uint8_t *buf;
	size_t len, cap;
	bool overflow; /* set when cap was exceeded; further writes are dropped */
};

void aml_init(struct aml *a, uint8_t *buf, size_t cap);
void aml_bytes(struct aml *a, const void *p, size_t n);
void aml_byte(struct aml *a, uint8_t b);
/* Integer with the shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWordPrefix). */
void aml_integer(struct aml *a, uint64_t v);
/* A 4-character NameSeg or a path like "\\_SB_" / "_S5_". */
void aml_namestring(struct aml *a, const char *name);
/* EISA ID like "PNP0501" as a DWord. */
void aml_eisaid(struct aml *a, const char *id);
/* Name(name, <value>) where the value is in v. */
void aml_name(struct aml *a, const char *name, const struct aml *v);
/* Package { integers } */
void aml_package_ints(struct aml *a, const uint64_t *vals, unsigned n);
/* Package { n elements already encoded one after another in elements } */
void aml_package(struct aml *a, unsigned n, const struct aml *elements);
/* Scope(name) { body } and Device(name) { body } */
void aml_scope(struct aml *a, const char *name, const struct aml *body);
void aml_device(struct aml *a, const char *name, const struct aml *body);
/* Buffer { raw bytes } (a resource template body must end with an End Tag: aml_res_end). */
void aml_buffer(struct aml *a, const struct aml *raw);
/* Resource descriptors (raw bytes for aml_buffer). */
void aml_res_io(struct aml *a, uint16_t base, uint8_t len);
void aml_res_irq(struct aml *a, unsigned irq);
void aml_res_end(struct aml *a);
/* Address-space descriptors of a producer (a bridge window), min and max fixed. */
void aml_res_bus_numbers(struct aml *a, uint16_t min, uint16_t max);
void aml_res_mem32(struct aml *a, uint32_t min, uint32_t max, bool prefetchable);
void aml_res_mem64(struct aml *a, uint64_t min, uint64_t max, bool prefetchable);
/* Memory32Fixed (a consumer: reserved motherboard resources). */
void aml_res_mem32_fixed(struct aml *a, uint32_t base, uint32_t len);

#endif
