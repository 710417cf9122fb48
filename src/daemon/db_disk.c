/* The inventory's managed disks and the queries over who uses them (VMs, other disks' backing). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/db_int.h"

#define DISK_COLUMNS "uuid, name, path, format, size, backing, created, generation"

void db_disk_clear(struct db_disk *d)
{
	free(d->name);
	free(d->path);
	free(d->format);
	free(d->backing);
	free(d->created);
	memset(d, 0, sizeof(*d));
}

static int disk_from_row(sqlite3_stmt *st, struct db_disk *d)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->uuid, sizeof(d->uuid), "%s", (const char *)sqlite3_column_text(st, 0));
	d->name = db_col_dup(st, 1);
	d->path = db_col_dup(st, 2);
	d->format = db_col_dup(st, 3);
	d->size = (uint64_t)sqlite3_column_int64(st, 4);
	d->backing = db_col_dup(st, 5);
	d->created = db_col_dup(st, 6);
	d->generation = sqlite3_column_int64(st, 7);
	if (!d->name || !d->path || !d->format || !d->created ||
	    (sqlite3_column_type(st, 5) != SQLITE_NULL && !d->backing)) {
		db_disk_clear(d);
		return -ENOMEM;
	}
	return 0;
}

/* One disk from a query with one text parameter; -ENOENT if none. */
static int find_one(struct db *db, const char *sql, const char *param, struct db_disk *out)
{
	sqlite3_stmt *st = NULL;
	int ret, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "find disk");
	sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = disk_from_row(st, out);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_sql_fail(db, "find disk");
	sqlite3_finalize(st);
	return ret;
}

int db_disk_find(struct db *db, const char *id, struct db_disk *out)
{
	return find_one(db,
			"SELECT " DISK_COLUMNS
			" FROM disks WHERE uuid = ?1 UNION ALL SELECT " DISK_COLUMNS
			" FROM disks WHERE name = ?1 LIMIT 1",
			id, out);
}

int db_disk_find_path(struct db *db, const char *path, struct db_disk *out)
{
	return find_one(db, "SELECT " DISK_COLUMNS " FROM disks WHERE path = ?1", path, out);
}

int db_disk_list(struct db *db, int (*fn)(const struct db_disk *d, void *arg), void *arg)
{
	static const char sql[] = "SELECT " DISK_COLUMNS " FROM disks ORDER BY name";
	sqlite3_stmt *st = NULL;
	struct db_disk d;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "list disks");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((ret = disk_from_row(st, &d)))
			break;
		ret = fn(&d, arg);
		db_disk_clear(&d);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, "list disks");
	sqlite3_finalize(st);
	return ret;
}

int db_disk_insert(struct db *db, const struct db_disk *d)
{
	static const char sql[] = "INSERT INTO disks (uuid, name, path, format, size, backing, "
				  "created, generation) VALUES (?, ?, ?, ?, ?, ?, ?, 1)";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "insert disk");
	sqlite3_bind_text(st, 1, d->uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, d->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, d->path, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, d->format, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, (sqlite3_int64)d->size);
	if (d->backing)
		sqlite3_bind_text(st, 6, d->backing, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, d->created, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "insert disk");
	sqlite3_finalize(st);
	return ret;
}

int db_disk_delete(struct db *db, const char *uuid)
{
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, "DELETE FROM disks WHERE uuid = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_sql_fail(db, "delete disk");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "delete disk");
	else if (sqlite3_changes(db->h) != 1)
		ret = -ENOENT;
	sqlite3_finalize(st);
	return ret;
}

int db_disk_set_size(struct db *db, const char *uuid, uint64_t size)
{
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h,
			       "UPDATE disks SET size = ?2, generation = generation + 1 WHERE "
			       "uuid = ?1",
			       -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "resize disk");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)size);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "resize disk");
	else if (sqlite3_changes(db->h) != 1)
		ret = -ENOENT;
	sqlite3_finalize(st);
	return ret;
}

/* Rows of three text columns from a query with one text parameter. */
static int each_triple(struct db *db, const char *sql, const char *param, const char *what,
		       int (*fn)(const char *a, const char *b, const char *c, void *arg), void *arg)
{
	sqlite3_stmt *st = NULL;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, what);
	sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *b = (const char *)sqlite3_column_text(st, 1);
		const char *c = (const char *)sqlite3_column_text(st, 2);
		if ((ret = fn(a ? a : "", b ? b : "", c ? c : "", arg)))
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, what);
	sqlite3_finalize(st);
	return ret;
}

int db_disk_users(struct db *db, const char *uuid,
		  int (*fn)(const char *vm, const char *vm_uuid, const char *state, void *arg),
		  void *arg)
{
	static const char sql[] =
	    "SELECT DISTINCT v.name, v.uuid, v.state FROM vms v, json_each(v.config, '$.disks') d "
	    "WHERE json_extract(d.value, '$.disk') = ?1 ORDER BY v.name";
	return each_triple(db, sql, uuid, "disk users", fn, arg);
}

int db_disk_writers(struct db *db, const char *uuid,
		    int (*fn)(const char *vm, const char *vm_uuid, const char *state, void *arg),
		    void *arg)
{
	static const char sql[] =
	    "SELECT DISTINCT v.name, v.uuid, v.state FROM vms v, json_each(v.config, '$.disks') d "
	    "WHERE json_extract(d.value, '$.disk') = ?1 AND json_extract(d.value, '$.readonly') = "
	    "0 "
	    "ORDER BY v.name";
	return each_triple(db, sql, uuid, "disk writers", fn, arg);
}

int db_disk_children(struct db *db, const char *uuid,
		     int (*fn)(const char *name, const char *uuid, const char *unused, void *arg),
		     void *arg)
{
	static const char sql[] =
	    "SELECT name, uuid, '' FROM disks WHERE backing = ?1 ORDER BY name";
	return each_triple(db, sql, uuid, "disk children", fn, arg);
}
