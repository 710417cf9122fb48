/* The inventory's API tokens: name, role, the secret's hash, creation, last use and expiry. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "daemon/db_int.h"

#define TOKEN_COLUMNS "id, name, role, hash, created, last_used, expires"

void db_token_clear(struct db_token *t)
{
	free(t->name);
	free(t->role);
	free(t->hash);
	free(t->created);
	free(t->last_used);
	free(t->expires);
	memset(t, 0, sizeof(*t));
}

static int token_from_row(sqlite3_stmt *st, struct db_token *t)
{
	memset(t, 0, sizeof(*t));
	t->id = sqlite3_column_int64(st, 0);
	t->name = db_col_dup(st, 1);
	t->role = db_col_dup(st, 2);
	t->hash = db_col_dup(st, 3);
	t->created = db_col_dup(st, 4);
	t->last_used = db_col_dup(st, 5);
	t->expires = db_col_dup(st, 6);
	if (!t->name || !t->role || !t->hash || !t->created ||
	    (sqlite3_column_type(st, 5) != SQLITE_NULL && !t->last_used) ||
	    (sqlite3_column_type(st, 6) != SQLITE_NULL && !t->expires)) {
		db_token_clear(t);
		return -ENOMEM;
	}
	return 0;
}

static int find_one(struct db *db, sqlite3_stmt *st, struct db_token *out)
{
	int rc = sqlite3_step(st), ret;
	if (rc == SQLITE_ROW)
		ret = token_from_row(st, out);
	else if (rc == SQLITE_DONE)
		ret = -ENOENT;
	else
		ret = db_sql_fail(db, "find token");
	sqlite3_finalize(st);
	return ret;
}

int db_token_get(struct db *db, int64_t id, struct db_token *out)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db->h, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE id = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return db_sql_fail(db, "find token");
	sqlite3_bind_int64(st, 1, id);
	return find_one(db, st, out);
}

int db_token_find(struct db *db, const char *id, struct db_token *out)
{
	uint64_t n;
	if (!parse_u64(id, &n) && n <= INT64_MAX) {
		int ret = db_token_get(db, (int64_t)n, out);
		if (ret != -ENOENT)
			return ret;
	}
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(db->h, "SELECT " TOKEN_COLUMNS " FROM tokens WHERE name = ?", -1,
			       &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "find token");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	return find_one(db, st, out);
}

int db_token_list(struct db *db, int (*fn)(const struct db_token *t, void *arg), void *arg)
{
	sqlite3_stmt *st = NULL;
	struct db_token t;
	int ret = 0, rc;

	if (sqlite3_prepare_v2(db->h, "SELECT " TOKEN_COLUMNS " FROM tokens ORDER BY name", -1, &st,
			       NULL) != SQLITE_OK)
		return db_sql_fail(db, "list tokens");
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if ((ret = token_from_row(st, &t)))
			break;
		ret = fn(&t, arg);
		db_token_clear(&t);
		if (ret)
			break;
	}
	if (!ret && rc != SQLITE_DONE)
		ret = db_sql_fail(db, "list tokens");
	sqlite3_finalize(st);
	return ret;
}

int db_token_insert(struct db *db, struct db_token *t)
{
	static const char sql[] = "INSERT INTO tokens (name, role, hash, created, expires) "
				  "VALUES (?, ?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, "insert token");
	sqlite3_bind_text(st, 1, t->name, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, t->role, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, t->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, t->created, -1, SQLITE_STATIC);
	if (t->expires)
		sqlite3_bind_text(st, 5, t->expires, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, "insert token");
	else
		t->id = sqlite3_last_insert_rowid(db->h);
	sqlite3_finalize(st);
	return ret;
}

static int exec_id(struct db *db, const char *sql, int64_t id, const char *ts, const char *what)
{
	sqlite3_stmt *st = NULL;
	int ret = 0;
	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK)
		return db_sql_fail(db, what);
	sqlite3_bind_int64(st, 1, id);
	if (ts)
		sqlite3_bind_text(st, 2, ts, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE)
		ret = db_sql_fail(db, what);
	else if (sqlite3_changes(db->h) != 1)
		ret = -ENOENT;
	sqlite3_finalize(st);
	return ret;
}

int db_token_delete(struct db *db, int64_t id)
{
	return exec_id(db, "DELETE FROM tokens WHERE id = ?", id, NULL, "delete token");
}

int db_token_touch(struct db *db, int64_t id, const char *ts)
{
	return exec_id(db, "UPDATE tokens SET last_used = ?2 WHERE id = ?1", id, ts,
		       "token last use");
}
