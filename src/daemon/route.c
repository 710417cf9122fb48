/* Untrusted request text the API parses itself: path patterns, entity tags (If-Match), booleans. */
#include "daemon/route.h"

#include <errno.h>
#include <string.h>

bool route_match(const char *pattern, const char *path, struct route_params *out)
{
	const char *p = pattern, *s = path;

	out->n = 0;
	while (*p && *s) {
		if (*p != '{') {
			if (*p != *s)
				return false;
			p++, s++;
			continue;
		}
		const char *close = strchr(p, '}');
		if (!close || out->n == ROUTE_PARAMS_MAX)
			return false;
		size_t len = strcspn(s, "/");
		if (len == 0 || len > ROUTE_PARAM_LEN_MAX)
			return false;
		memcpy(out->v[out->n], s, len);
		out->v[out->n][len] = '\0';
		out->n++;
		p = close + 1;
		s += len;
	}
	return *p == '\0' && *s == '\0';
}

static const char *skip_ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

int route_if_match(const char *header, int64_t generation)
{
	const char *s = skip_ows(header);
	int found = 0;

	if (*s == '*')
		return *skip_ows(s + 1) == '\0' ? 1 : -EINVAL;
	if (!*s)
		return -EINVAL;
	for (;;) {
		bool weak = false;
		if (s[0] == 'W' && s[1] == '/') {
			weak = true;
			s += 2;
		}
		if (*s != '"')
			return -EINVAL;
		const char *tag = ++s;
		/* etagc = "!" / %x23-7E / obs-text */
		while (*s && *s != '"') {
			unsigned char c = (unsigned char)*s;
			if (c < 0x21 || c == 0x7f)
				return -EINVAL;
			s++;
		}
		if (*s != '"')
			return -EINVAL;
		size_t len = (size_t)(s - tag);
		s++;
		if (!weak && len > 0 && len <= 18) {
			/* our tags are decimal generations without leading zeros */
			int64_t v = 0;
			size_t i;
			for (i = 0; i < len && tag[i] >= '0' && tag[i] <= '9'; i++)
				v = v * 10 + (tag[i] - '0');
			if (i == len && (len == 1 || tag[0] != '0') && v == generation)
				found = 1;
		}
		s = skip_ows(s);
		if (!*s)
			return found;
		if (*s != ',')
			return -EINVAL;
		s = skip_ows(s + 1);
	}
}

int route_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true"))
		*out = true;
	else if (!strcmp(s, "false"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}
