/* berthd's inventory: SQLite (WAL) with versioned migrations, VMs and the audit events log. */
#ifndef BERTH_DAEMON_DB_H
#define BERTH_DAEMON_DB_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db;

/* The newest schema version this binary knows. */
int db_schema_version_known(void);

/*
 * Open (creating if needed) the inventory at path and bring its schema up to date, each migration
 * in its own transaction. A database newer than this binary is refused with -EPROTO. On error,
 * err holds a message for the log.
 */
int db_open(const char *path, struct db **out, char *err, size_t errlen);
void db_close(struct db *db);

/*
 * One transaction at a time per daemon: db_begin takes the connection's lock and starts a
 * transaction (write: BEGIN IMMEDIATE, so it never fails half-way for a lock); every db_vm_* and
 * db_event_add call happens inside one. db_commit or db_rollback ends it and drops the lock.
 */
int db_begin(struct db *db, bool write);
int db_commit(struct db *db);
void db_rollback(struct db *db);

#define DB_UUID_LEN 36

/* One row of the vms table. Strings are owned by the row (db_vm_clear frees them). */
struct db_vm {
	char uuid[DB_UUID_LEN + 1];
	char *name;
	char *config; /* the spec as JSON text, without the name */
	int64_t generation;
	char *state;
	char *state_reason; /* NULL if none */
	char *created;
	char *modified;
	int64_t vmm_pid;	 /* the berth-vmm running it, 0 if none */
	uint64_t vmm_start_time; /* its start time (/proc/PID/stat field 22) */
	bool resume_on_start;	 /* running when berthd last stopped it (start-if-running) */
};

void db_vm_clear(struct db_vm *vm);

/* Look a VM up by UUID, else by name. -ENOENT if neither matches. */
int db_vm_find(struct db *db, const char *id, struct db_vm *out);
/* All VMs (or those named name, if not NULL), ordered by name; calls fn for each. */
int db_vm_list(struct db *db, const char *name, int (*fn)(const struct db_vm *vm, void *arg),
	       void *arg);
/* Insert a VM (uuid, name, config, created; generation 1). -EEXIST if the name is taken. */
int db_vm_insert(struct db *db, const struct db_vm *vm);
/*
 * Replace name and config of the VM whose generation is still vm->generation - 1, setting
 * generation and modified. -ESTALE if it changed meanwhile, -ENOENT, -EEXIST (name taken).
 */
int db_vm_update(struct db *db, const struct db_vm *vm);
/* Delete the VM whose generation is still generation. -ESTALE, -ENOENT. */
int db_vm_delete(struct db *db, const char *uuid, int64_t generation);

/*
 * Set the lifecycle state of a VM (reason may be NULL), the VMM's pid and start time (pid 0: none)
 * and the resume-on-start flag. The generation is not changed: it versions the spec. -ENOENT.
 */
int db_vm_set_state(struct db *db, const char *uuid, const char *state, const char *reason,
		    int64_t pid, uint64_t start_time, bool resume);

/* One row of the switches table (db_switch.c). Strings owned (db_switch_clear frees them). */
struct db_switch {
	char uuid[DB_UUID_LEN + 1];
	char *name;
	char *kind;	/* "external", "internal", "private" */
	char *host_nic; /* external: the enslaved host NIC; else NULL */
	char *address;	/* internal: the host's address on it, "10.0.0.1/24"; else NULL */
	char *bridge;	/* the Linux bridge */
	int64_t generation;
	char *created;
};

void db_switch_clear(struct db_switch *s);
/* By UUID, else by name. -ENOENT. */
int db_switch_find(struct db *db, const char *id, struct db_switch *out);
/* All switches ordered by name; fn for each (a non-zero return stops and is returned). */
int db_switch_list(struct db *db, int (*fn)(const struct db_switch *s, void *arg), void *arg);
/* Insert (generation 1). -EEXIST if the name, the host NIC or the bridge is taken. */
int db_switch_insert(struct db *db, const struct db_switch *s);
/* Delete by UUID. -ENOENT. */
int db_switch_delete(struct db *db, const char *uuid);
/* Names of the VMs with a NIC on the switch named name; fn for each. */
int db_switch_users(struct db *db, const char *name, int (*fn)(const char *vm, void *arg),
		    void *arg);
/* Every NIC MAC of every VM but except_uuid (NULL: none excepted); fn for each. */
int db_nic_macs(struct db *db, const char *except_uuid,
		int (*fn)(const char *vm, const char *mac, void *arg), void *arg);

/* One row of the disks table (db_disk.c): a managed disk image in berthd's pool. Strings owned
 * (db_disk_clear frees them). */
struct db_disk {
	char uuid[DB_UUID_LEN + 1];
	char *name;
	char *path;    /* the image file, absolute */
	char *format;  /* "raw" or "qcow2" */
	uint64_t size; /* virtual size in bytes */
	char *backing; /* the UUID of the managed disk below it, or NULL */
	char *created;
	int64_t generation;
};

void db_disk_clear(struct db_disk *d);
/* By UUID, else by name; by image path. -ENOENT. */
int db_disk_find(struct db *db, const char *id, struct db_disk *out);
int db_disk_find_path(struct db *db, const char *path, struct db_disk *out);
/* All disks ordered by name; fn for each (a non-zero return stops and is returned). */
int db_disk_list(struct db *db, int (*fn)(const struct db_disk *d, void *arg), void *arg);
/* Insert (generation 1). -EEXIST if the name or path is taken. */
int db_disk_insert(struct db *db, const struct db_disk *d);
/* Delete by UUID. -ENOENT. */
int db_disk_delete(struct db *db, const char *uuid);
/* Set the virtual size and bump the generation. -ENOENT. */
int db_disk_set_size(struct db *db, const char *uuid, uint64_t size);
/* The VMs whose spec refers to the disk (name, UUID, state); fn for each. */
int db_disk_users(struct db *db, const char *uuid,
		  int (*fn)(const char *vm, const char *vm_uuid, const char *state, void *arg),
		  void *arg);
/* Likewise, only the VMs that have it writable (readonly false). */
int db_disk_writers(struct db *db, const char *uuid,
		    int (*fn)(const char *vm, const char *vm_uuid, const char *state, void *arg),
		    void *arg);
/* The disks whose backing is the disk (name, UUID); fn for each. */
int db_disk_children(struct db *db, const char *uuid,
		     int (*fn)(const char *name, const char *uuid, const char *unused, void *arg),
		     void *arg);

/* One row of the tokens table (db_token.c). Strings owned (db_token_clear frees them). */
struct db_token {
	int64_t id;
	char *name;
	char *role; /* "viewer", "operator", "admin" */
	char *hash; /* SHA-256 of the secret, 64 hex digits */
	char *created;
	char *last_used; /* NULL: never */
	char *expires;	 /* NULL: never */
};

void db_token_clear(struct db_token *t);
/* By id (a decimal number), else by name. -ENOENT. */
int db_token_find(struct db *db, const char *id, struct db_token *out);
/* By numeric id only. -ENOENT. */
int db_token_get(struct db *db, int64_t id, struct db_token *out);
/* All tokens ordered by name; fn for each (a non-zero return stops and is returned). */
int db_token_list(struct db *db, int (*fn)(const struct db_token *t, void *arg), void *arg);
/* Insert name, role, hash, created, expires; t->id is set. -EEXIST if the name is taken. */
int db_token_insert(struct db *db, struct db_token *t);
int db_token_delete(struct db *db, int64_t id);
int db_token_touch(struct db *db, int64_t id, const char *ts);

/* Replace the checkpoints of a VM (db_ckpt.c) with those of an API list (ckpt_api_list); NULL:
 * none. -ENOENT if the VM is gone. */
int db_ckpt_replace(struct db *db, const char *vm_uuid, const json_t *api_list);

/* Append an audit event (vm_uuid may be NULL; detail a JSON object, not stolen). */
int db_event_add(struct db *db, const char *ts, const char *vm_uuid, const char *kind,
		 json_t *detail);

/* One row of the events table; strings valid during the callback only (vm, name may be NULL:
 * name is the VM's current name, NULL once it is deleted). */
struct db_event {
	int64_t id;
	const char *ts, *vm, *name, *kind, *detail;
};

/* fn(arg, id) runs after every commit that added events (id: the newest), outside the lock. */
void db_set_event_hook(struct db *db, void (*fn)(void *arg, int64_t id), void *arg);
/* The newest event's id (0 if none), or with before_ts the newest older than that time. */
int db_event_last(struct db *db, const char *before_ts, int64_t *id);
/* At most limit events with an id above after, oldest first; fn's non-zero return stops. */
int db_events_after(struct db *db, int64_t after, unsigned limit,
		    int (*fn)(const struct db_event *ev, void *arg), void *arg);

#endif
