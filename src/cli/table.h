/* berth CLI: human output — tables with aligned columns and "Key: value" blocks. */
#ifndef BERTH_CLI_TABLE_H
#define BERTH_CLI_TABLE_H

#include <stdio.h>

#define TABLE_MAX_COLS 12

struct table {
	int ncols;
	const char *head[TABLE_MAX_COLS];
	int nrows, cap;
	char **cells; /* nrows * ncols strings, owned */
};

void table_init(struct table *t, int ncols, const char *const *head);
/* Copy one row of ncols cells (NULL prints as "-"); -ENOMEM. */
int table_add(struct table *t, const char *const *cells);
/* Header and rows, columns separated by two spaces, the last one not padded. */
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* "Key:          value" with the values aligned at one column. */
void kv_print(FILE *f, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
