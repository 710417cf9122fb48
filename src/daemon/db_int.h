/* The inventory's internals shared by its files (db.c, db_switch.c): the connection, helpers. */
#ifndef BERTH_DAEMON_DB_INT_H
#define BERTH_DAEMON_DB_INT_H

#include <pthread.h>
#include <sqlite3.h>

#include "daemon/db.h"

struct db {
	sqlite3 *h;
	pthread_mutex_t lock;
	int64_t tx_event; /* the last event added in this transaction, 0 if none */
	void (*hook)(void *arg, int64_t id); /* told of committed events (db_set_event_hook) */
	void *hook_arg;
};

/* A text column as a new string (NULL if SQL NULL or out of memory). */
char *db_col_dup(sqlite3_stmt *st, int i);
/* -EEXIST for a unique or primary-key violation, else log and -EIO. */
int db_sql_fail(struct db *db, const char *what);

#endif
