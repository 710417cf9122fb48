/* VM lifecycle: berthd's VMMs, their state machine, actions as operations, reattach. */
#ifndef BERTH_DAEMON_VMCTL_H
#define BERTH_DAEMON_VMCTL_H

#include <jansson.h>
#include <stdbool.h>

#include "daemon/ops.h"
#include "daemon/spawn.h"

struct db;
struct vmctl;

struct vmctl_opts {
	const char *state_dir;	     /* per-VM files in <state>/vms/<uuid> */
	const char *run_dir;	     /* control and console sockets */
	const char *vmm_path;	     /* berth-vmm */
	const struct vmm_user *user; /* VMMs run as this user (user->set), else as root */
};

/* Prepare the directories and start supervising (no VMM is touched yet). -errno. */
int vmctl_new(struct db *db, struct ops *ops, const struct vmctl_opts *o, struct vmctl **out);
/* At daemon start: reconnect to the VMMs of VMs the inventory says are active (or settle their
 * state), then apply each VM's automatic start action. */
void vmctl_reattach(struct vmctl *vc);
void vmctl_autostart(struct vmctl *vc);
/* Stop supervising: operations in progress are abandoned at their next wait, VMMs keep running.
 * -EBUSY if an operation thread did not finish in time (then do not free vc or the database). */
int vmctl_stop(struct vmctl *vc);
void vmctl_free(struct vmctl *vc);

enum vm_action {
	ACT_START,
	ACT_SHUTDOWN,
	ACT_TURN_OFF,
	ACT_RESTART,
	ACT_PAUSE,
	ACT_RESUME,
	ACT_SAVE,
	ACT_COUNT
};

/* "start", "shutdown", "turn-off", ...; -1 if unknown. */
int vmctl_action_parse(const char *name);
const char *vmctl_action_name(enum vm_action a);

/* Why an action or a hold was refused: HTTP status, stable code, message. */
struct vmctl_err {
	unsigned status;
	const char *code;
	const char *field; /* the offending request field, NULL if none */
	char msg[256];
};

/*
 * Check that the VM (name or UUID) may take the action in its state and that no other action
 * runs on it, then run the action as an operation in its own thread; op_id names it. timeout_s
 * is the shutdown grace period. origin is "api" or "auto-start"; actor (NULL: none; copied) is
 * written into the operation's vm-state events. -errno with e filled.
 */
int vmctl_action(struct vmctl *vc, const char *id, enum vm_action a, int timeout_s,
		 const char *origin, const json_t *actor, char op_id[OP_ID_LEN + 1],
		 struct vmctl_err *e);

/* Apply every active VM's automatic stop action (the host shuts down), as one operation; actor
 * as for vmctl_action. */
int vmctl_host_stop(struct vmctl *vc, int timeout_s, const json_t *actor, char op_id[OP_ID_LEN + 1],
		    struct vmctl_err *e);

/*
 * Where the serial console of a VM (name or UUID) is served by its VMM: the VM must have one
 * (running, paused, or stopping); uuid and name of the VM are filled too. -errno with e filled
 * (404, 409 invalid-state).
 */
int vmctl_console(struct vmctl *vc, const char *id, char path[108], char uuid[37], char name[64],
		  struct vmctl_err *e);

/* Checkpoints (vmctl_ckpt.c), Hyper-V style: of a running or paused VM through its VMM, of a VM
 * that is off or saved through a maintenance VMM started paused (the VM's state does not change
 * meanwhile). */
enum ckpt_op { CKPT_CREATE, CKPT_APPLY, CKPT_DELETE };

/* The checkpoints of a VM (name or UUID) in the API's form (ckpt_api_list); uuid receives the
 * VM's. -errno with e filled (404, 500 for a damaged tree). */
int vmctl_ckpt_list(struct vmctl *vc, const char *id, json_t **list, char uuid[37],
		    struct vmctl_err *e);
/*
 * Create (arg: the new name; disk_only), apply or delete (arg: a checkpoint id or name) as an
 * operation; actor (borrowed) goes into the audit event. -errno with e filled: 404 not-found (the
 * VM, or the checkpoint: field "checkpoint"), 409 conflict (name taken: field "name"), 409 busy,
 * 409 invalid-state.
 */
int vmctl_ckpt_op(struct vmctl *vc, const char *id, enum ckpt_op kind, const char *arg,
		  bool disk_only, json_t *actor, char op_id[OP_ID_LEN + 1], struct vmctl_err *e);

/*
 * Keep actions off a VM while its definition changes (PATCH, DELETE): -EBUSY if an operation
 * runs on it. vmctl_release ends the hold; vmctl_forget ends it for a deleted VM and removes its
 * files (the checkpoints directory is kept if not empty).
 */
int vmctl_hold(struct vmctl *vc, const char *uuid);
void vmctl_release(struct vmctl *vc, const char *uuid);
void vmctl_forget(struct vmctl *vc, const char *uuid);

#endif
