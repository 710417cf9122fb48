/* The inventory's virtual switches and the queries over the VMs' NICs (users, MAC addresses). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/db_int.h"

#define SWITCH_COLUMNS "uuid, name, kind, host_nic, address, bridge, generation, created"

void db_switch_clear(struct db_switch *s)
{
	free(s->name);
	free(s->kind);
	free(s->host_nic);
	free(s->address);
	free(s->bridge);
	free(s->created);
	memset(s, 0, sizeof(*s));
}

static int switch_from_row(sqlite3_stmt *st, struct db_switch *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->uuid, sizeof(s->uuid), "%s", (const char *)sqlite3_column_text(st, 0));
	s->name = db_col_dup(st, 1);
	s->kind = db_col_dup(st, 2);
	s->host_nic = db_col_dup(st, 3);
	s->address = db_col_dup(st, 4);
	s->bridge = db_col_dup(st, 5);
	s->generation = sqlite3_column_int64(st, 6);
	s->created = db_col_dup(st, 7);
	if (!s->name || !s->kind || !s->bridge || !s->created ||
	    (sqlite3_column_type(st, 3) != SQLITE_NULL && !s->host_nic) ||
	    (sqlite3_column_type(st, 4) != SQLITE_NULL && !s->address)) {
		db_switch_clear(s);
		return -ENOMEM;
	}
	return 0;
}

int db_switch_find(struct db *db, const char *id, struct db_switch *out)
{
	static const char sql[] = "SELECT " SWITCH_COLUMNS " FROM switches WHERE uuid = ?1 "
				  "UNION ALL SELECT " SWITCH_COLUMNS " FROM switches WHERE "
				  "name = ?1 LIMIT 1";
	sqlite3_stmt *st = NULL;
	int ret, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "find switch");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		ret = switch_from_row(st, out);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_sql_fail(db, "find switch");
	sqlite3_finalize(st);
	return ret;
}

int db_switch_list(struct db *db, int (*fn)(const struct db_switch *s, void *arg), void *arg)
{
	static const char sql[] = "SELECT " SWITCH_COLUMNS " FROM switches ORDER BY name";
	sqlite3_stmt *st = NULL;
	struct db_switch s;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "list switches");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((ret = switch_from_row(st, &s)))
			break;
		ret = fn(&s, arg);
		db_switch_clear(&s);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, "list switches");
	sqlite3_finalize(st);
	return ret;
}

int db_switch_insert(struct db *db, const struct db_switch *s)
{
	static const char sql[] = "INSERT INTO switches (uuid, name, kind, host_nic, address, "
				  "bridge, generation, created) VALUES (?, ?, ?, ?, ?, ?, 1, ?)";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "insert switch");
	sqlite3_bind_text(st, 1, s->uuid, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, s->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, s->kind, -1, SQLITE_STATIC);
	if (s->host_nic)
		sqlite3_bind_text(st, 4, s->host_nic, -1, SQLITE_STATIC);
	if (s->address)
		sqlite3_bind_text(st, 5, s->address, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, s->bridge, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 7, s->created, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "insert switch");
	sqlite3_finalize(st);
	return ret;
}

int db_switch_delete(struct db *db, const char *uuid)
{
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, "DELETE FROM switches WHERE uuid = ?", -1, &st, NULL) !=
	    SQLITE_OK)
		return db_sql_fail(db, "delete switch");
	sqlite3_bind_text(st, 1, uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "delete switch");
	else if (sqlite3_changes(db->h) != 1)
		ret = -ENOENT;
	sqlite3_finalize(st);
	return ret;
}

/* Rows of (text, text) from a query with one optional text parameter. */
static int each_pair(struct db *db, const char *sql, const char *param, const char *what,
		     int (*fn)(const char *a, const char *b, void *arg), void *arg)
{
	sqlite3_stmt *st = NULL;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, what);
	if (param)
		sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *a = (const char *)sqlite3_column_text(st, 0);
		const char *b = (const char *)sqlite3_column_text(st, 1);
		if ((ret = fn(a ? a : "", b ? b : "", arg)))
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, what);
	sqlite3_finalize(st);
	return ret;
}

struct users_arg {
	int (*fn)(const char *vm, void *arg);
	void *arg;
};

static int one_user(const char *vm, const char *unused, void *arg)
{
	struct users_arg *u = arg;
	(void)unused;
	return u->fn(vm, u->arg);
}

int db_switch_users(struct db *db, const char *name, int (*fn)(const char *vm, void *arg),
		    void *arg)
{
	static const char sql[] =
	    "SELECT DISTINCT v.name, '' FROM vms v, json_each(v.config, '$.nics') n "
	    "WHERE json_extract(n.value, '$.switch') = ?1 ORDER BY v.name";
	struct users_arg u = {fn, arg};
	return each_pair(db, sql, name, "switch users", one_user, &u);
}

int db_nic_macs(struct db *db, const char *except_uuid,
		int (*fn)(const char *vm, const char *mac, void *arg), void *arg)
{
	static const char sql[] =
	    "SELECT v.name, json_extract(n.value, '$.mac') FROM vms v, "
	    "json_each(v.config, '$.nics') n WHERE (?1 IS NULL OR v.uuid != ?1) "
	    "AND json_type(n.value, '$.mac') = 'text'";
	return each_pair(db, sql, except_uuid, "NIC MAC addresses", fn, arg);
}
