/* berthd's inventory: SQLite (WAL) with versioned migrations, VMs and the audit events log. */
#include "daemon/db.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/db_int.h"

#define BUSY_TIMEOUT_MS 5000

/*
 * The schema, one migration per version, applied in order, each in its own transaction. Never
 * edit a released entry: add a new one. Version N is MIGRATIONS[N - 1].
 */
static const char *const MIGRATIONS[] = {
    /* 1: VM definitions and the audit log */
    "CREATE TABLE vms ("
    " uuid TEXT PRIMARY KEY NOT NULL,"
    " name TEXT NOT NULL UNIQUE,"
    " config TEXT NOT NULL CHECK (json_valid(config)),"
    " generation INTEGER NOT NULL CHECK (generation >= 1),"
    " state TEXT NOT NULL DEFAULT 'off' CHECK (state IN ('off', 'starting', 'running',"
    "  'paused', 'saved', 'stopping', 'crashed')),"
    " state_reason TEXT,"
    " created TEXT NOT NULL,"
    " modified TEXT NOT NULL"
    ") STRICT;"
    "CREATE TABLE events ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " ts TEXT NOT NULL,"
    " vm TEXT,"
    " kind TEXT NOT NULL,"
    " detail TEXT NOT NULL CHECK (json_valid(detail))"
    ") STRICT;"
    "CREATE INDEX events_vm ON events (vm);",
    /* 2: the VMM running a VM (pid and /proc start time, to recognise it after a restart of
     * berthd) and whether to start the VM again at the next daemon start (start-if-running) */
    "ALTER TABLE vms ADD COLUMN vmm_pid INTEGER;"
    "ALTER TABLE vms ADD COLUMN vmm_start_time INTEGER;"
    "ALTER TABLE vms ADD COLUMN resume_on_start INTEGER NOT NULL DEFAULT 0;",
    /* 3: virtual switches (the VMs' NICs name them in their config) */
    "CREATE TABLE switches ("
    " uuid TEXT PRIMARY KEY NOT NULL,"
    " name TEXT NOT NULL UNIQUE,"
    " kind TEXT NOT NULL CHECK (kind IN ('external', 'internal', 'private')),"
    " host_nic TEXT UNIQUE CHECK ((kind = 'external') = (host_nic IS NOT NULL)),"
    " address TEXT CHECK ((kind = 'internal') = (address IS NOT NULL)),"
    " bridge TEXT NOT NULL UNIQUE,"
    " generation INTEGER NOT NULL CHECK (generation >= 1),"
    " created TEXT NOT NULL"
    ") STRICT;",
    /* managed disks: image files berthd created in its pool (a qcow2 may have another managed
     * disk as its backing file) */
    "CREATE TABLE disks ("
    " uuid TEXT PRIMARY KEY NOT NULL,"
    " name TEXT NOT NULL UNIQUE,"
    " path TEXT NOT NULL UNIQUE,"
    " format TEXT NOT NULL CHECK (format IN ('raw', 'qcow2')),"
    " size INTEGER NOT NULL CHECK (size > 0),"
    " backing TEXT REFERENCES disks (uuid),"
    " created TEXT NOT NULL,"
    " generation INTEGER NOT NULL CHECK (generation >= 1)"
    ") STRICT;",
    /* API tokens for remote callers: only a SHA-256 of each secret is kept */
    "CREATE TABLE tokens ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " name TEXT NOT NULL UNIQUE,"
    " role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),"
    " hash TEXT NOT NULL CHECK (length(hash) = 64),"
    " created TEXT NOT NULL,"
    " last_used TEXT,"
    " expires TEXT"
    ") STRICT;",
    /* checkpoints: a mirror of each VM's checkpoint tree (berth-vmm's tree.json is the truth) */
    "CREATE TABLE checkpoints ("
    " vm TEXT NOT NULL REFERENCES vms (uuid) ON DELETE CASCADE,"
    " id TEXT NOT NULL,"
    " name TEXT NOT NULL,"
    " parent TEXT,"
    " created TEXT NOT NULL,"
    " disk_only INTEGER NOT NULL CHECK (disk_only IN (0, 1)),"
    " PRIMARY KEY (vm, id),"
    " UNIQUE (vm, name)"
    ") STRICT;",
};

int db_schema_version_known(void)
{
	return (int)ARRAY_SIZE(MIGRATIONS);
}

static int exec(struct db *db, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;
	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db->h));
	sqlite3_free(msg);
	return -EIO;
}

/* One integer from a query of one row and one column. */
static int query_int(struct db *db, const char *sql, int64_t *out)
{
	sqlite3_stmt *st = NULL;
	int ret = -EIO;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		goto out;
	if (sqlite3_step(st) != SQLITE_ROW)
		goto out;
	*out = sqlite3_column_int64(st, 0);
	ret = 0;
out:
	sqlite3_finalize(st);
	return ret;
}

static int migrate(struct db *db, const char *path, char *err, size_t errlen)
{
	char sql[128];
	int64_t version;
	int known = db_schema_version_known();

	if (exec(db,
		 "BEGIN IMMEDIATE;"
		 "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT;"
		 "INSERT INTO schema_version (version) SELECT 0 WHERE NOT EXISTS "
		 "(SELECT 1 FROM schema_version);"
		 "COMMIT;",
		 err, errlen))
		goto fail;
	if (query_int(db, "SELECT version FROM schema_version", &version)) {
		snprintf(err, errlen, "reading schema_version: %s", sqlite3_errmsg(db->h));
		return -EIO;
	}
	if (version > known || version < 0) {
		snprintf(err, errlen,
			 "%s has inventory schema version %lld; this berthd knows versions up to "
			 "%d: run a newer berthd (the database is left untouched)",
			 path, (long long)version, known);
		return -EPROTO;
	}
	for (int v = (int)version + 1; v <= known; v++) {
		snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %d;", v);
		if (exec(db, "BEGIN IMMEDIATE;", err, errlen))
			goto fail;
		if (exec(db, MIGRATIONS[v - 1], err, errlen) || exec(db, sql, err, errlen) ||
		    exec(db, "COMMIT;", err, errlen)) {
			char e2[64];
			exec(db, "ROLLBACK;", e2, sizeof(e2));
			log_err("db", "migration to schema version %d failed: %s", v, err);
			return -EIO;
		}
		log_info("db", "%s: schema migrated to version %d", path, v);
	}
	return 0;
fail:
	log_err("db", "preparing the schema: %s", err);
	char e2[64];
	exec(db, "ROLLBACK;", e2, sizeof(e2));
	return -EIO;
}

int db_open(const char *path, struct db **out, char *err, size_t errlen)
{
	struct db *db = calloc(1, sizeof(*db));
	char *mode = NULL;
	int ret;

	if (!db)
		return -ENOMEM;
	pthread_mutex_init(&db->lock, NULL);
	if (sqlite3_open_v2(path, &db->h,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
			    NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 db->h ? sqlite3_errmsg(db->h) : "cannot open");
		ret = -EIO;
		goto fail;
	}
	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, BUSY_TIMEOUT_MS);
	/* WAL: readers never block the writer; synchronous=FULL: a commit survives power loss. */
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db->h, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		mode = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (!mode || strcmp(mode, "wal")) {
		snprintf(err, errlen, "%s: cannot use write-ahead logging (journal mode %s): %s",
			 path, mode ? mode : "unknown", sqlite3_errmsg(db->h));
		ret = -EIO;
		goto fail;
	}
	if ((ret = exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL;", err, errlen)))
		goto fail;
	if ((ret = migrate(db, path, err, errlen)))
		goto fail;
	free(mode);
	*out = db;
	return 0;
fail:
	free(mode);
	db_close(db);
	return ret;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	if (db->h && sqlite3_close(db->h) != SQLITE_OK)
		log_err("db", "closing the inventory: %s", sqlite3_errmsg(db->h));
	pthread_mutex_destroy(&db->lock);
	free(db);
}

int db_begin(struct db *db, bool write)
{
	char err[256];
	pthread_mutex_lock(&db->lock);
	if (exec(db, write ? "BEGIN IMMEDIATE" : "BEGIN", err, sizeof(err))) {
		log_err("db", "begin: %s", err);
		pthread_mutex_unlock(&db->lock);
		return -EIO;
	}
	return 0;
}

int db_commit(struct db *db)
{
	char err[256];
	int ret = 0;
	int64_t ev = db->tx_event;
	db->tx_event = 0;
	if (exec(db, "COMMIT", err, sizeof(err))) {
		log_err("db", "commit: %s", err);
		exec(db, "ROLLBACK", err, sizeof(err));
		ret = -EIO;
	}
	void (*hook)(void *, int64_t) = db->hook;
	void *arg = db->hook_arg;
	pthread_mutex_unlock(&db->lock);
	if (!ret && ev && hook)
		hook(arg, ev);
	return ret;
}

void db_rollback(struct db *db)
{
	char err[256];
	db->tx_event = 0;
	if (exec(db, "ROLLBACK", err, sizeof(err)))
		log_err("db", "rollback: %s", err);
	pthread_mutex_unlock(&db->lock);
}

void db_set_event_hook(struct db *db, void (*fn)(void *arg, int64_t id), void *arg)
{
	pthread_mutex_lock(&db->lock);
	db->hook = fn;
	db->hook_arg = arg;
	pthread_mutex_unlock(&db->lock);
}

int db_event_last(struct db *db, const char *before_ts, int64_t *id)
{
	sqlite3_stmt *st = NULL;
	const char *sql = before_ts ? "SELECT COALESCE(MAX(id), 0) FROM events WHERE ts < ?"
				    : "SELECT COALESCE(MAX(id), 0) FROM events";
	int ret = 0;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "last event");
	if (before_ts)
		sqlite3_bind_text(st, 1, before_ts, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		*id = sqlite3_column_int64(st, 0);
	else
		ret = db_sql_fail(db, "last event");
	sqlite3_finalize(st);
	return ret;
}

int db_events_after(struct db *db, int64_t after, unsigned limit,
		    int (*fn)(const struct db_event *ev, void *arg), void *arg)
{
	static const char sql[] = "SELECT e.id, e.ts, e.vm, v.name, e.kind, e.detail FROM events e"
				  " LEFT JOIN vms v ON v.uuid = e.vm WHERE e.id > ? ORDER BY e.id"
				  " LIMIT ?";
	sqlite3_stmt *st = NULL;
	int ret = 0, r;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "read events");
	sqlite3_bind_int64(st, 1, after);
	sqlite3_bind_int64(st, 2, limit);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct db_event ev = {
		    .id = sqlite3_column_int64(st, 0),
		    .ts = (const char *)sqlite3_column_text(st, 1),
		    .vm = (const char *)sqlite3_column_text(st, 2),
		    .name = (const char *)sqlite3_column_text(st, 3),
		    .kind = (const char *)sqlite3_column_text(st, 4),
		    .detail = (const char *)sqlite3_column_text(st, 5),
		};
		if ((ret = fn(&ev, arg)))
			goto out;
	}
	if (r != SQLITE_DONE)
		ret = db_sql_fail(db, "read events");
out:
	sqlite3_finalize(st);
	return ret;
}

void db_vm_clear(struct db_vm *vm)
{
	free(vm->name);
	free(vm->config);
	free(vm->state);
	free(vm->state_reason);
	free(vm->created);
	free(vm->modified);
	memset(vm, 0, sizeof(*vm));
}

char *db_col_dup(sqlite3_stmt *st, int i)
{
	const unsigned char *s = sqlite3_column_text(st, i);
	return s ? strdup((const char *)s) : NULL;
}

#define VM_COLUMNS                                                                                 \
	"uuid, name, config, generation, state, state_reason, created, modified, vmm_pid, "        \
	"vmm_start_time, resume_on_start"

static int vm_from_row(sqlite3_stmt *st, struct db_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->uuid, sizeof(vm->uuid), "%s", (const char *)sqlite3_column_text(st, 0));
	vm->name = db_col_dup(st, 1);
	vm->config = db_col_dup(st, 2);
	vm->generation = sqlite3_column_int64(st, 3);
	vm->state = db_col_dup(st, 4);
	vm->state_reason = db_col_dup(st, 5);
	vm->created = db_col_dup(st, 6);
	vm->modified = db_col_dup(st, 7);
	vm->vmm_pid = sqlite3_column_int64(st, 8);
	vm->vmm_start_time = (uint64_t)sqlite3_column_int64(st, 9);
	vm->resume_on_start = sqlite3_column_int(st, 10) != 0;
	if (!vm->name || !vm->config || !vm->state || !vm->created || !vm->modified) {
		db_vm_clear(vm);
		return -ENOMEM;
	}
	return 0;
}

int db_sql_fail(struct db *db, const char *what)
{
	int code = sqlite3_extended_errcode(db->h);
	if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY)
		return -EEXIST;
	log_err("db", "%s: %s", what, sqlite3_errmsg(db->h));
	return -EIO;
}

int db_vm_find(struct db *db, const char *id, struct db_vm *out)
{
	static const char sql[] = "SELECT " VM_COLUMNS " FROM vms WHERE uuid = ?1 UNION ALL "
				  "SELECT " VM_COLUMNS " FROM vms WHERE name = ?1 LIMIT 1";
	sqlite3_stmt *st = NULL;
	int ret, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "find VM");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = vm_from_row(st, out);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_sql_fail(db, "find VM");
	sqlite3_finalize(st);
	return ret;
}

int db_vm_list(struct db *db, const char *name, int (*fn)(const struct db_vm *vm, void *arg),
	       void *arg)
{
	static const char sql[] = "SELECT " VM_COLUMNS " FROM vms WHERE ?1 IS NULL OR name = ?1 "
				  "ORDER BY name";
	sqlite3_stmt *st = NULL;
	struct db_vm vm;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "list VMs");
	if (name)
		sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((ret = vm_from_row(st, &vm)))
			break;
		ret = fn(&vm, arg);
		db_vm_clear(&vm);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, "list VMs");
	sqlite3_finalize(st);
	return ret;
}

int db_vm_insert(struct db *db, const struct db_vm *vm)
{
	static const char sql[] = "INSERT INTO vms (uuid, name, config, generation, created, "
				  "modified) VALUES (?, ?, ?, 1, ?, ?)";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "insert VM");
	sqlite3_bind_text(st, 1, vm->uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vm->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, vm->config, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, vm->created, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, vm->created, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "insert VM");
	sqlite3_finalize(st);
	return ret;
}

/* After an UPDATE/DELETE guarded by generation matched no row: gone, or changed meanwhile. */
static int why_no_row(struct db *db, const char *uuid)
{
	struct db_vm vm;
	int ret = db_vm_find(db, uuid, &vm);
	if (ret == 0) {
		db_vm_clear(&vm);
		return -ESTALE;
	}
	return ret;
}

int db_vm_update(struct db *db, const struct db_vm *vm)
{
	static const char sql[] = "UPDATE vms SET name = ?, config = ?, generation = ?, "
				  "modified = ? WHERE uuid = ? AND generation = ?";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "update VM");
	sqlite3_bind_text(st, 1, vm->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, vm->config, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, vm->generation);
	sqlite3_bind_text(st, 4, vm->modified, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, vm->uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 6, vm->generation - 1);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "update VM");
	else if (sqlite3_changes(db->h) != 1)
		ret = why_no_row(db, vm->uuid);
	sqlite3_finalize(st);
	return ret;
}

int db_vm_delete(struct db *db, const char *uuid, int64_t generation)
{
	static const char sql[] = "DELETE FROM vms WHERE uuid = ? AND generation = ?";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "delete VM");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, generation);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "delete VM");
	else if (sqlite3_changes(db->h) != 1)
		ret = why_no_row(db, uuid);
	sqlite3_finalize(st);
	return ret;
}

int db_vm_set_state(struct db *db, const char *uuid, const char *state, const char *reason,
		    int64_t pid, uint64_t start_time, bool resume)
{
	static const char sql[] = "UPDATE vms SET state = ?, state_reason = ?, vmm_pid = ?, "
				  "vmm_start_time = ?, resume_on_start = ? WHERE uuid = ?";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "set VM state");
	sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	if (reason)
		sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
	if (pid > 0) {
		sqlite3_bind_int64(st, 3, pid);
		sqlite3_bind_int64(st, 4, (sqlite3_int64)start_time);
	}
	sqlite3_bind_int(st, 5, resume ? 1 : 0);
	sqlite3_bind_text(st, 6, uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "set VM state");
	else if (sqlite3_changes(db->h) != 1)
		ret = -ENOENT;
	sqlite3_finalize(st);
	return ret;
}

int db_event_add(struct db *db, const char *ts, const char *vm_uuid, const char *kind,
		 json_t *detail)
{
	static const char sql[] = "INSERT INTO events (ts, vm, kind, detail) VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	char *text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
	int ret = 0;

	if (!text)
		return -ENOMEM;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		ret = db_sql_fail(db, "add event");
		goto out;
	}
	sqlite3_bind_text(st, 1, ts, -1, SQLITE_STATIC);
	if (vm_uuid)
		sqlite3_bind_text(st, 2, vm_uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, text, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "add event");
	else
		db->tx_event = sqlite3_last_insert_rowid(db->h);
out:
	sqlite3_finalize(st);
	free(text);
	return ret;
}
