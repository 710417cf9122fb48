/* Untrusted request text the API parses itself: path patterns, entity tags (If-Match), booleans. */
#ifndef BERTH_DAEMON_ROUTE_H
#define BERTH_DAEMON_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#define ROUTE_PARAMS_MAX 4
#define ROUTE_PARAM_LEN_MAX 255

struct route_params {
	unsigned n;
	char v[ROUTE_PARAMS_MAX][ROUTE_PARAM_LEN_MAX + 1];
};

/*
 * Match a path against a pattern whose segments are literals or "{name}" (one non-empty segment,
 * at most ROUTE_PARAM_LEN_MAX bytes). Returns true and fills out on a match.
 */
bool route_match(const char *pattern, const char *path, struct route_params *out);

/*
 * An If-Match header (RFC 9110 13.1.1): "*" or a comma-separated list of entity tags. Our tags are
 * strong, "\"<generation>\"". Returns 1 if one matches generation (strong comparison, so W/ tags
 * never do), 0 if none does, -EINVAL if the header is malformed.
 */
int route_if_match(const char *header, int64_t generation);

/* "true" or "false" (a query parameter); -EINVAL otherwise. */
int route_parse_bool(const char *s, bool *out);

#endif
