/* Power management I/O: ACPI PM1 event/control registers (power button, SCI, S5 power-off),
 * reset register 0xCF9, i8042 reset. */
#ifndef BERTH_PM_H
#define BERTH_PM_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct vm;

struct pm {
	struct vm *vm;
	pthread_mutex_t lock;
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	uint8_t rst_cnt;
	int sci_level; /* what the SCI line was last set to */
};

/* Registers PM1a event/control, 0xCF9 and the i8042 ports on the PIO bus. */
int pm_init(struct pm *pm, struct vm *vm);
void pm_destroy(struct pm *pm);
/* Press the fixed ACPI power button: PWRBTN_STS is set and the SCI raised while the guest has
 * PWRBTN_EN set. Returns whether PWRBTN_EN was set (an ACPI OS listening). Any thread. */
bool pm_power_button(struct pm *pm);

/* Save/restore the PM1 and reset-control registers (the SCI line follows). */
json_t *pm_save(struct pm *pm);
int pm_load(struct pm *pm, json_t *o, char *msg, size_t msglen);

#endif
