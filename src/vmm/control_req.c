/* Control-socket requests: envelope and argument validation from one command table, and the reply
 * and event messages. */
#include "vmm/control_req.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

/* Arguments are typed; each lands at an offset in struct control_request. */
enum arg_type { ARGT_UINT, ARGT_STR, ARGT_BOOL, ARGT_STRINGS };

struct arg_spec {
	const char *name;
	enum arg_type type;
	uint64_t min, max, def;
	bool required;
	size_t offset; /* of an unsigned, a const char * (borrowed) or a bool in the request */
};

struct cmd_spec {
	const char *name;
	enum control_cmd cmd;
	const struct arg_spec *args;
	unsigned nargs;
};

static const struct arg_spec pause_args[] = {
    {"timeout_ms", ARGT_UINT, 1, PAUSE_TIMEOUT_MS_MAX, PAUSE_TIMEOUT_MS_DEFAULT, false,
     offsetof(struct control_request, args.pause.timeout_ms)},
};

static const struct arg_spec save_args[] = {
    {"dir", ARGT_STR, 1, 4095, 0, true, offsetof(struct control_request, args.save.dir)},
    {"stop", ARGT_BOOL, 0, 1, 1, false, offsetof(struct control_request, args.save.stop)},
    {"timeout_ms", ARGT_UINT, 1, PAUSE_TIMEOUT_MS_MAX, PAUSE_TIMEOUT_MS_DEFAULT, false,
     offsetof(struct control_request, args.save.timeout_ms)},
};

static const struct arg_spec checkpoint_args[] = {
    {"dir", ARGT_STR, 1, 4095, 0, false, offsetof(struct control_request, args.checkpoint.dir)},
    {"overlays", ARGT_STRINGS, 0, 64, 0, false,
     offsetof(struct control_request, args.checkpoint.overlays)},
    {"timeout_ms", ARGT_UINT, 1, PAUSE_TIMEOUT_MS_MAX, PAUSE_TIMEOUT_MS_DEFAULT, false,
     offsetof(struct control_request, args.checkpoint.timeout_ms)},
};

static const struct arg_spec ckpt_create_args[] = {
    {"name", ARGT_STR, 1, 64, 0, false, offsetof(struct control_request, args.ckpt.name)},
    {"disk_only", ARGT_BOOL, 0, 1, 0, false, offsetof(struct control_request, args.ckpt.disk_only)},
    {"timeout_ms", ARGT_UINT, 1, PAUSE_TIMEOUT_MS_MAX, PAUSE_TIMEOUT_MS_DEFAULT, false,
     offsetof(struct control_request, args.ckpt.timeout_ms)},
};

static const struct arg_spec ckpt_ref_args[] = {
    {"checkpoint", ARGT_STR, 1, 64, 0, true, offsetof(struct control_request, args.ckpt.name)},
    {"timeout_ms", ARGT_UINT, 1, PAUSE_TIMEOUT_MS_MAX, PAUSE_TIMEOUT_MS_DEFAULT, false,
     offsetof(struct control_request, args.ckpt.timeout_ms)},
};

static const struct cmd_spec commands[] = {
    {"query-status", CMD_QUERY_STATUS, NULL, 0},
    {"query-stats", CMD_QUERY_STATS, NULL, 0},
    {"pause", CMD_PAUSE, pause_args, ARRAY_SIZE(pause_args)},
    {"resume", CMD_RESUME, NULL, 0},
    {"powerdown", CMD_POWERDOWN, NULL, 0},
    {"quit", CMD_QUIT, NULL, 0},
    {"save", CMD_SAVE, save_args, ARRAY_SIZE(save_args)},
    {"checkpoint", CMD_CHECKPOINT, checkpoint_args, ARRAY_SIZE(checkpoint_args)},
    {"checkpoint-create", CMD_CKPT_CREATE, ckpt_create_args, ARRAY_SIZE(ckpt_create_args)},
    {"checkpoint-list", CMD_CKPT_LIST, NULL, 0},
    {"checkpoint-apply", CMD_CKPT_APPLY, ckpt_ref_args, ARRAY_SIZE(ckpt_ref_args)},
    {"checkpoint-delete", CMD_CKPT_DELETE, ckpt_ref_args, ARRAY_SIZE(ckpt_ref_args)},
};

const char *control_cmd_name(enum control_cmd cmd)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (commands[i].cmd == cmd)
			return commands[i].name;
	return "?";
}

/* Cut a trailing incomplete UTF-8 sequence (left by truncation) so the text stays valid. */
static void utf8_trim(char *s)
{
	size_t n = strlen(s), i = n, cont = 0;
	while (i > 0 && cont < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--, cont++;
	if (i == 0)
		return;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
	if (want > 1 && cont + 1 < want)
		s[i - 1] = 0;
}

int control_fail(struct control_error *err, const char *code, const char *field, const char *fmt,
		 ...)
{
	va_list ap;
	err->code = code;
	err->has_field = field != NULL;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	utf8_trim(err->field);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	utf8_trim(err->message);
	return -EINVAL;
}

/* A key as shown in messages: at most 48 bytes, "..." when cut. */
static const char *shown(const char *key, char *buf, size_t cap)
{
	size_t n = strlen(key);
	if (n < cap) {
		memcpy(buf, key, n + 1);
	} else {
		memcpy(buf, key, cap - 4);
		buf[cap - 4] = 0;
		utf8_trim(buf);
		strcat(buf, "...");
	}
	return buf;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
		return "an integer";
	case JSON_REAL:
		return "a real number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "?";
}

/* args: the request's "args" object, or NULL. */
static int parse_args(const struct cmd_spec *c, json_t *args, struct control_request *out,
		      struct control_error *err)
{
	char kb[52], field[64];
	for (unsigned i = 0; i < c->nargs; i++) {
		char *at = (char *)out + c->args[i].offset;
		if (c->args[i].type == ARGT_UINT)
			*(unsigned *)at = (unsigned)c->args[i].def;
		else if (c->args[i].type == ARGT_BOOL)
			*(bool *)at = c->args[i].def != 0;
		else if (c->args[i].type == ARGT_STRINGS)
			*(json_t **)at = NULL;
		else
			*(const char **)at = NULL;
	}
	const char *key;
	json_t *v;
	json_object_foreach(args, key, v)
	{
		const struct arg_spec *a = NULL;
		for (unsigned i = 0; i < c->nargs; i++)
			if (!strcmp(c->args[i].name, key))
				a = &c->args[i];
		snprintf(field, sizeof(field), "args.%s", shown(key, kb, sizeof(kb)));
		if (!a)
			return control_fail(err, CERR_UNKNOWN_FIELD, field,
					    "%s takes no argument '%s'", c->name, kb);
		char *at = (char *)out + a->offset;
		if (a->type == ARGT_BOOL) {
			if (!json_is_boolean(v))
				return control_fail(err, CERR_INVALID_ARGUMENT, field,
						    "must be true or false, not %s", type_name(v));
			*(bool *)at = json_is_true(v);
			continue;
		}
		if (a->type == ARGT_STRINGS) {
			bool ok = json_is_array(v) && json_array_size(v) <= a->max;
			for (size_t k = 0; ok && k < json_array_size(v); k++) {
				json_t *s = json_array_get(v, k);
				ok = json_is_string(s) && json_string_length(s) > 0 &&
				     json_string_length(s) < 4096 &&
				     strlen(json_string_value(s)) == json_string_length(s);
			}
			if (!ok)
				return control_fail(err, CERR_INVALID_ARGUMENT, field,
						    "must be an array of at most %llu non-empty "
						    "strings",
						    (unsigned long long)a->max);
			*(json_t **)at = v;
			continue;
		}
		if (a->type == ARGT_STR) {
			size_t len = json_is_string(v) ? json_string_length(v) : 0;
			if (!json_is_string(v) || len < a->min || len > a->max ||
			    strlen(json_string_value(v)) != len)
				return control_fail(err, CERR_INVALID_ARGUMENT, field,
						    "must be a string of %llu to %llu bytes "
						    "without NUL, not %s",
						    (unsigned long long)a->min,
						    (unsigned long long)a->max,
						    json_is_string(v) ? "that" : type_name(v));
			*(const char **)at = json_string_value(v);
			continue;
		}
		json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
		if (!json_is_integer(v) || n < 0 || (uint64_t)n < a->min || (uint64_t)n > a->max)
			return control_fail(err, CERR_INVALID_ARGUMENT, field,
					    "must be an integer from %llu to %llu, not %s",
					    (unsigned long long)a->min, (unsigned long long)a->max,
					    json_is_integer(v) ? "out of range" : type_name(v));
		*(unsigned *)at = (unsigned)n;
	}
	for (unsigned i = 0; i < c->nargs; i++) {
		if (c->args[i].required && !json_object_get(args, c->args[i].name)) {
			snprintf(field, sizeof(field), "args.%s", c->args[i].name);
			return control_fail(err, CERR_MISSING_ARGUMENT, field, "%s needs '%s'",
					    c->name, c->args[i].name);
		}
	}
	return 0;
}

int control_req_parse(json_t *req, unsigned nfds, struct control_request *out,
		      struct control_error *err)
{
	char kb[52];
	memset(out, 0, sizeof(*out));
	if (!json_is_object(req))
		return control_fail(err, CERR_INVALID_REQUEST, NULL, "a request is a JSON object");
	out->id = json_object_get(req, "id");
	const char *key;
	json_t *v;
	json_object_foreach(req, key, v)
	{
		if (strcmp(key, "id") && strcmp(key, "cmd") && strcmp(key, "args"))
			return control_fail(err, CERR_UNKNOWN_FIELD, shown(key, kb, sizeof(kb)),
					    "unknown field '%s' (a request has id, cmd and args)",
					    kb);
	}
	json_t *cmd = json_object_get(req, "cmd");
	if (!cmd)
		return control_fail(err, CERR_INVALID_REQUEST, "cmd",
				    "the command name is missing");
	if (!json_is_string(cmd))
		return control_fail(err, CERR_INVALID_REQUEST, "cmd", "must be a string, not %s",
				    type_name(cmd));
	const struct cmd_spec *c = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(commands[i].name, json_string_value(cmd)))
			c = &commands[i];
	if (!c)
		return control_fail(err, CERR_UNKNOWN_COMMAND, "cmd", "unknown command '%s'",
				    shown(json_string_value(cmd), kb, sizeof(kb)));
	out->cmd = c->cmd;
	json_t *args = json_object_get(req, "args");
	if (args && !json_is_object(args))
		return control_fail(err, CERR_INVALID_REQUEST, "args", "must be an object, not %s",
				    type_name(args));
	if (nfds)
		return control_fail(err, CERR_UNEXPECTED_FDS, NULL,
				    "%s takes no file descriptors (%u received and closed)",
				    c->name, nfds);
	return parse_args(c, args, out, err); /* args may be NULL: defaults only */
}

/* json_string that never fails on our own text: invalid UTF-8 becomes a fixed text. */
static json_t *text(const char *s)
{
	json_t *j = json_string(s);
	return j ? j : json_string("(not valid UTF-8)");
}

json_t *control_reply_ok(json_t *id, json_t *result)
{
	json_t *r = json_object();
	if (!r) {
		json_decref(result);
		return NULL;
	}
	json_object_set(r, "id", id ? id : json_null());
	json_object_set_new(r, "ok", json_true());
	json_object_set_new(r, "result", result ? result : json_object());
	return r;
}

json_t *control_reply_error(json_t *id, const struct control_error *err)
{
	json_t *r = json_object(), *e = json_object();
	if (!r || !e) {
		json_decref(r);
		json_decref(e);
		return NULL;
	}
	json_object_set_new(e, "code", json_string(err->code ? err->code : CERR_INTERNAL));
	json_object_set_new(e, "message", text(err->message));
	if (err->has_field)
		json_object_set_new(e, "field", text(err->field));
	json_object_set(r, "id", id ? id : json_null());
	json_object_set_new(r, "ok", json_false());
	json_object_set_new(r, "error", e);
	return r;
}

json_t *control_event_msg(const char *name, json_t *data)
{
	json_t *r = json_object();
	if (!r) {
		json_decref(data);
		return NULL;
	}
	json_object_set_new(r, "event", json_string(name));
	json_object_set_new(r, "data", data ? data : json_object());
	return r;
}
