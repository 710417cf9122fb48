/* ACPI fixed hardware (PM1a event: power button and SCI; control: SLP_EN with S5 powers off),
 * reset control 0xCF9, i8042 reset. */
#include "vmm/pm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "vmm/acpi.h"
#include "vmm/vm.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_CMD_RESET 0xfe
#define RST_CNT_SYS_RST 0x02
#define RST_CNT_RST_CPU 0x04

/* The SCI is level-triggered: asserted while an enabled fixed event's status bit is set. Called
 * with pm->lock held. */
static void update_sci(struct pm *pm)
{
	int level = (pm->pm1_sts & pm->pm1_en & ACPI_PM1_PWRBTN_STS) != 0;
	if (level == pm->sci_level)
		return;
	pm->sci_level = level;
	vm_set_irq(pm->vm, ACPI_SCI_IRQ, level);
}

bool pm_power_button(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts |= ACPI_PM1_PWRBTN_STS;
	bool enabled = pm->pm1_en & ACPI_PM1_PWRBTN_EN;
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return enabled;
}

static uint64_t pm1_evt_read(void *opaque, uint64_t off, unsigned size)
{
	struct pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	uint32_t v = pm->pm1_sts | (uint32_t)pm->pm1_en << 16;
	pthread_mutex_unlock(&pm->lock);
	v >>= 8 * off;
	return size >= 4 ? v : v & ((1u << (8 * size)) - 1);
}

static void pm1_evt_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	for (unsigned i = 0; i < size && off + i < 4; i++) {
		uint8_t b = (uint8_t)(val >> (8 * i));
		unsigned at = (unsigned)off + i;
		if (at < 2) /* status bits are write-one-to-clear */
			pm->pm1_sts &= (uint16_t) ~((uint16_t)b << (8 * at));
		else
			pm->pm1_en = (uint16_t)((pm->pm1_en & ~(0xffu << (8 * (at - 2)))) |
						(uint16_t)b << (8 * (at - 2)));
	}
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static uint64_t pm1_cnt_read(void *opaque, uint64_t off, unsigned size)
{
	struct pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	uint32_t v = (pm->pm1_cnt | ACPI_PM1_SCI_EN) >> (8 * off);
	pthread_mutex_unlock(&pm->lock);
	return size >= 2 ? v & 0xffff : v & 0xff;
}

static void pm1_cnt_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	uint16_t v = pm->pm1_cnt;
	if (off == 0 && size >= 2)
		v = (uint16_t)val;
	else if (off == 0)
		v = (uint16_t)((v & 0xff00) | (val & 0xff));
	else
		v = (uint16_t)((v & 0x00ff) | (val & 0xff) << 8);
	pm->pm1_cnt = v & (uint16_t)~ACPI_PM1_SLP_EN; /* SLP_EN is write-only */
	pthread_mutex_unlock(&pm->lock);
	if (v & ACPI_PM1_SLP_EN) {
		unsigned typ = (v >> 10) & 7;
		if (typ == ACPI_SLP_TYP_S5) {
			log_info("pm", "guest entered ACPI S5 (soft off)");
			vm_request_stop(pm->vm, STOP_POWEROFF);
		} else {
			log_warn("pm",
				 "guest asked for sleep type %u, which is not supported; ignored",
				 typ);
		}
	}
}

static uint64_t rst_read(void *opaque, uint64_t off, unsigned size)
{
	struct pm *pm = opaque;
	(void)off, (void)size;
	return pm->rst_cnt;
}

static void rst_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pm *pm = opaque;
	(void)off, (void)size;
	pm->rst_cnt = (uint8_t)(val & RST_CNT_SYS_RST);
	if (val & RST_CNT_RST_CPU) {
		log_info("pm", "guest reset through the reset control register (0xcf9)");
		vm_request_stop(pm->vm, STOP_REBOOT);
	}
}

/* Just enough of an 8042 for the classic "pulse reset line" reboot; no keyboard. */
static uint64_t i8042_read(void *opaque, uint64_t off, unsigned size)
{
	(void)opaque, (void)off, (void)size;
	return 0; /* status: output buffer empty, input buffer empty; data: 0 */
}

static void i8042_data_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	(void)opaque, (void)off, (void)size, (void)val;
}

static void i8042_cmd_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pm *pm = opaque;
	(void)size, (void)off;
	if ((val & 0xff) == I8042_CMD_RESET) {
		log_info("pm", "guest reset through the i8042 controller");
		vm_request_stop(pm->vm, STOP_REBOOT);
	}
}

static const struct bus_ops pm1_evt_ops = {pm1_evt_read, pm1_evt_write};
static const struct bus_ops pm1_cnt_ops = {pm1_cnt_read, pm1_cnt_write};
static const struct bus_ops rst_ops = {rst_read, rst_write};
static const struct bus_ops i8042_data_ops = {i8042_read, i8042_data_write};
static const struct bus_ops i8042_cmd_ops = {i8042_read, i8042_cmd_write};

int pm_init(struct pm *pm, struct vm *vm)
{
	memset(pm, 0, sizeof(*pm));
	pm->vm = vm;
	pthread_mutex_init(&pm->lock, NULL);
	int r = bus_register(&vm->pio, ACPI_PM1A_EVT_PORT, 4, &pm1_evt_ops, pm, "pm1-evt");
	r = r ? r : bus_register(&vm->pio, ACPI_PM1A_CNT_PORT, 2, &pm1_cnt_ops, pm, "pm1-cnt");
	r = r ? r : bus_register(&vm->pio, ACPI_RESET_PORT, 1, &rst_ops, pm, "reset");
	/* 0x60..0x64, but 0x61 belongs to the in-kernel PIT's speaker port. */
	r = r ? r : bus_register(&vm->pio, I8042_DATA, 1, &i8042_data_ops, pm, "i8042");
	r = r ? r : bus_register(&vm->pio, I8042_CMD, 1, &i8042_cmd_ops, pm, "i8042");
	return r;
}

void pm_destroy(struct pm *pm)
{
	pthread_mutex_destroy(&pm->lock);
}

/* ---- save/restore ---- */

json_t *pm_save(struct pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	json_t *o = json_pack("{s:i,s:i,s:i,s:i}", "pm1_sts", pm->pm1_sts, "pm1_en", pm->pm1_en,
			      "pm1_cnt", pm->pm1_cnt, "rst_cnt", pm->rst_cnt);
	pthread_mutex_unlock(&pm->lock);
	return o;
}

int pm_load(struct pm *pm, json_t *o, char *msg, size_t msglen)
{
	static const char *const keys[] = {"pm1_sts", "pm1_en", "pm1_cnt", "rst_cnt"};
	json_int_t v[4];
	for (unsigned i = 0; i < 4; i++) {
		json_t *j = json_object_get(o, keys[i]);
		if (!json_is_integer(j) || json_integer_value(j) < 0 ||
		    json_integer_value(j) > (i == 3 ? 0xff : 0xffff)) {
			snprintf(msg, msglen, "field 'pm.%s': missing or out of range", keys[i]);
			return -EINVAL;
		}
		v[i] = json_integer_value(j);
	}
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = (uint16_t)v[0];
	pm->pm1_en = (uint16_t)v[1];
	pm->pm1_cnt = (uint16_t)v[2];
	pm->rst_cnt = (uint8_t)v[3];
	pm->sci_level = -1; /* unknown: set the line from the restored state */
	update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
	return 0;
}
