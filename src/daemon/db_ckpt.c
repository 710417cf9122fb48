/* The inventory's mirror of the VMs' checkpoint trees (berth-vmm's tree.json stays the truth). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/db_int.h"

int db_ckpt_replace(struct db *db, const char *vm_uuid, const json_t *api_list)
{
	sqlite3_stmt *del = NULL, *ins = NULL;
	json_t *c;
	size_t i;
	int ret = 0;

	if (sqlite3_prepare_v2(db->h, "DELETE FROM checkpoints WHERE vm = ?1", -1, &del, NULL) !=
		SQLITE_OK ||
	    sqlite3_prepare_v2(db->h,
			       "INSERT INTO checkpoints (vm, id, name, parent, created, disk_only) "
			       "SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM vms "
			       "WHERE uuid = ?1)",
			       -1, &ins, NULL) != SQLITE_OK) {
		ret = db_sql_fail(db, "checkpoints");
		goto out;
	}
	sqlite3_bind_text(del, 1, vm_uuid, -1, SQLITE_STATIC);
	if (sqlite3_step(del) != SQLITE_DONE) {
		ret = db_sql_fail(db, "delete checkpoints");
		goto out;
	}
	json_array_foreach(json_object_get(api_list, "checkpoints"), i, c)
	{
		const char *parent = json_string_value(json_object_get(c, "parent"));
		const char *kind = json_string_value(json_object_get(c, "kind"));
		sqlite3_reset(ins);
		sqlite3_bind_text(ins, 1, vm_uuid, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 2, json_string_value(json_object_get(c, "id")), -1,
				  SQLITE_STATIC);
		sqlite3_bind_text(ins, 3, json_string_value(json_object_get(c, "name")), -1,
				  SQLITE_STATIC);
		if (parent)
			sqlite3_bind_text(ins, 4, parent, -1, SQLITE_STATIC);
		else
			sqlite3_bind_null(ins, 4);
		sqlite3_bind_text(ins, 5, json_string_value(json_object_get(c, "created")), -1,
				  SQLITE_STATIC);
		sqlite3_bind_int(ins, 6, kind && !strcmp(kind, "disk-only"));
		if (sqlite3_step(ins) != SQLITE_DONE) {
			ret = db_sql_fail(db, "insert checkpoint");
			goto out;
		}
		if (sqlite3_changes(db->h) == 0) {
			ret = -ENOENT;
			goto out;
		}
	}
out:
	sqlite3_finalize(del);
	sqlite3_finalize(ins);
	return ret;
}
