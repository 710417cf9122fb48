/* berth CLI: human output — tables with aligned columns and "Key: value" blocks. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/table.h"

#define KV_WIDTH 16

void table_init(struct table *t, int ncols, const char *const *head)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols > TABLE_MAX_COLS ? TABLE_MAX_COLS : ncols;
	for (int i = 0; i < t->ncols; i++)
		t->head[i] = head[i];
}

int table_add(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		int cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, (size_t)cap * (size_t)t->ncols * sizeof(*c));
		if (!c)
			return -ENOMEM;
		t->cells = c;
		t->cap = cap;
	}
	char **row = t->cells + (size_t)t->nrows * (size_t)t->ncols;
	for (int i = 0; i < t->ncols; i++) {
		row[i] = strdup(cells[i] ? cells[i] : "-");
		if (!row[i]) {
			while (i--)
				free(row[i]);
			return -ENOMEM;
		}
	}
	t->nrows++;
	return 0;
}

static void print_row(const struct table *t, const char *const *row, const size_t *w, FILE *f)
{
	for (int i = 0; i < t->ncols; i++) {
		if (i == t->ncols - 1)
			fprintf(f, "%s\n", row[i]);
		else
			fprintf(f, "%-*s  ", (int)w[i], row[i]);
	}
}

void table_print(const struct table *t, FILE *f)
{
	size_t w[TABLE_MAX_COLS];
	for (int i = 0; i < t->ncols; i++) {
		w[i] = strlen(t->head[i]);
		for (int r = 0; r < t->nrows; r++) {
			size_t l = strlen(t->cells[(size_t)r * (size_t)t->ncols + (size_t)i]);
			if (l > w[i])
				w[i] = l;
		}
	}
	print_row(t, t->head, w, f);
	for (int r = 0; r < t->nrows; r++)
		print_row(t, (const char *const *)t->cells + (size_t)r * (size_t)t->ncols, w, f);
}

void table_free(struct table *t)
{
	for (size_t i = 0; i < (size_t)t->nrows * (size_t)t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

void kv_print(FILE *f, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n = *key ? fprintf(f, "%s:", key) : 0; /* "" continues the previous key */
	fprintf(f, "%*s", n < KV_WIDTH ? KV_WIDTH - n : 1, "");
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}
