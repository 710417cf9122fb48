/* API tokens: create (the secret shown once, only its SHA-256 kept), list, show, delete, and the
 * check of a bearer token on each request. */
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/vmspec.h"

#define SECRET_BYTES 32
#define SECRET_CHARS 43 /* base64url of 32 bytes, unpadded */
#define EXPIRES_DAYS_MAX 3650
#define TOUCH_EVERY_S 60 /* last_used is written at most this often per token */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url(const unsigned char *in, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		size_t n = len - i < 3 ? len - i : 3;
		if (n > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (n > 2)
			v |= in[i + 2];
		for (size_t k = 0; k <= n; k++)
			out[o++] = B64URL[(v >> (18 - 6 * k)) & 63];
	}
	out[o] = '\0';
}

/* SHA-256 of the secret's text as 64 lower-case hex digits. */
static int secret_hash(const char *secret, char hex[65])
{
	unsigned char d[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, secret, strlen(secret), d) < 0)
		return -EIO;
	for (size_t i = 0; i < sizeof(d); i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}

/* Equal strings of n bytes, in a time that does not depend on where they differ. */
static bool equal_ct(const char *a, const char *b, size_t n)
{
	volatile unsigned char acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= (unsigned char)(a[i] ^ b[i]);
	return acc == 0;
}

/* "2026-11-25T21:52:28.000Z" for t. */
static void iso_time(time_t t, char buf[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm);
}

enum api_role api_role_parse(const char *s)
{
	for (enum api_role r = ROLE_VIEWER; r <= ROLE_ADMIN; r++)
		if (s && !strcmp(s, api_role_name(r)))
			return r;
	return ROLE_NONE;
}

/* "berth_<id>_<secret>" into id and secret; false if it is not shaped like that. */
static bool token_split(const char *tok, int64_t *id, const char **secret)
{
	uint64_t n;
	char num[24];
	if (strncmp(tok, "berth_", 6))
		return false;
	tok += 6;
	size_t len = strspn(tok, "0123456789");
	if (!len || len >= sizeof(num) || tok[len] != '_')
		return false;
	memcpy(num, tok, len);
	num[len] = '\0';
	if (parse_u64(num, &n) || n > INT64_MAX)
		return false;
	*secret = tok + len + 1;
	if (strlen(*secret) != SECRET_CHARS || strspn(*secret, B64URL) != SECRET_CHARS)
		return false;
	*id = (int64_t)n;
	return true;
}

int api_token_check(struct api_ctx *ctx, const char *authorization, struct api_caller *who,
		    const char **why)
{
	struct db_token t = {0};
	const char *secret;
	char hex[65], now[32], stale[32];
	int64_t id;
	int ret;

	*why = "no Authorization: Bearer header";
	if (!authorization)
		return -EACCES;
	*why = "the Authorization header is not 'Bearer TOKEN'";
	if (strncasecmp(authorization, "Bearer ", 7))
		return -EACCES;
	authorization += 7;
	authorization += strspn(authorization, " ");
	*why = "the token is invalid, unknown or deleted";
	if (!token_split(authorization, &id, &secret))
		return -EACCES;
	if (secret_hash(secret, hex))
		return -EIO;
	if ((ret = db_begin(ctx->db, false)))
		return ret;
	ret = db_token_get(ctx->db, id, &t);
	db_rollback(ctx->db);
	if (ret == -ENOENT)
		return -EACCES;
	if (ret)
		return ret;
	ret = -EACCES;
	if (!equal_ct(hex, t.hash, 64))
		goto out;
	api_now(now);
	if (t.expires && strcmp(t.expires, now) <= 0) {
		*why = "the token has expired";
		goto out;
	}
	who->role = api_role_parse(t.role);
	who->token_id = t.id;
	snprintf(who->token_name, sizeof(who->token_name), "%s", t.name);
	iso_time(time(NULL) - TOUCH_EVERY_S, stale);
	if ((!t.last_used || strcmp(t.last_used, stale) < 0) && !db_begin(ctx->db, true)) {
		if (db_token_touch(ctx->db, id, now))
			db_rollback(ctx->db);
		else
			db_commit(ctx->db);
	}
	ret = who->role == ROLE_NONE ? -EACCES : 0;
out:
	db_token_clear(&t);
	return ret;
}

static json_t *token_json(const struct db_token *t)
{
	char now[32];
	api_now(now);
	return json_pack("{s:I, s:s, s:s, s:s, s:s?, s:s?, s:b}", "id", (json_int_t)t->id, "name",
			 t->name, "role", t->role, "created", t->created, "last_used", t->last_used,
			 "expires", t->expires, "expired",
			 t->expires && strcmp(t->expires, now) <= 0);
}

/* The POST body: name, role, expires_in_days. false with the response set. */
static bool check_body(json_t *body, const char **name, const char **role, int *days,
		       struct api_resp *resp)
{
	const char *key;
	json_t *v;

	json_object_foreach(body, key, v)
	{
		if (strcmp(key, "name") && strcmp(key, "role") && strcmp(key, "expires_in_days")) {
			bool ro = !strcmp(key, "id") || !strcmp(key, "token") ||
				  !strcmp(key, "created") || !strcmp(key, "last_used") ||
				  !strcmp(key, "expires") || !strcmp(key, "expired") ||
				  !strcmp(key, "hash");
			api_error(resp, 400, ro ? "invalid-argument" : "unknown-field", key,
				  ro ? "%s: is read-only (set by berthd)" : "unknown field '%s'",
				  key);
			return false;
		}
	}
	v = json_object_get(body, "name");
	*name = json_string_value(v);
	if (!*name || strlen(*name) != json_string_length(v) || !vmspec_name_valid(*name) ||
	    strspn(*name, "0123456789") == strlen(*name)) {
		api_error(resp, 400, "invalid-argument", "name",
			  "name: %s1 to %d characters of letters, digits, '.', '_' and '-', not "
			  "starting with '.' or '-', not all digits and not shaped like a UUID",
			  v ? "" : "required: ", VMSPEC_NAME_MAX);
		return false;
	}
	v = json_object_get(body, "role");
	*role = json_string_value(v);
	if (api_role_parse(*role) == ROLE_NONE) {
		api_error(resp, 400, "invalid-argument", "role",
			  "role: %smust be \"viewer\" (read only), \"operator\" (also starts, "
			  "stops and types on consoles) or \"admin\" (everything)",
			  v ? "" : "required: ");
		return false;
	}
	v = json_object_get(body, "expires_in_days");
	*days = 0;
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > EXPIRES_DAYS_MAX) {
			api_error(resp, 400, "invalid-argument", "expires_in_days",
				  "expires_in_days: a whole number of days from 1 to %d (or "
				  "null: never)",
				  EXPIRES_DAYS_MAX);
			return false;
		}
		*days = (int)json_integer_value(v);
	}
	return true;
}

void api_tokens_create(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct db_token t = {0}, row = {0};
	unsigned char raw[SECRET_BYTES];
	char secret[SECRET_CHARS + 1], hex[65], now[32], expires[32], token[96];
	const char *name, *role;
	json_t *detail = NULL;
	int days, ret;

	if (!check_body(req->json, &name, &role, &days, resp))
		return;
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw)) {
		api_error(resp, 500, "internal", NULL, "no random numbers for the secret");
		return;
	}
	b64url(raw, sizeof(raw), secret);
	explicit_bzero(raw, sizeof(raw));
	if (secret_hash(secret, hex)) {
		api_error(resp, 500, "internal", NULL, "cannot hash the secret");
		goto out;
	}
	api_now(now);
	if (days)
		iso_time(time(NULL) + (time_t)days * 86400, expires);
	t.name = (char *)name;
	t.role = (char *)role;
	t.hash = hex;
	t.created = now;
	t.expires = days ? expires : NULL;
	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		goto out;
	}
	if ((ret = db_token_insert(db, &t))) {
		db_rollback(db);
		if (ret == -EEXIST)
			api_error(resp, 409, "conflict", "name",
				  "a token named '%s' already exists", name);
		else
			api_db_failed(resp, ret);
		goto out;
	}
	detail = json_pack("{s:o, s:I, s:s, s:s, s:s?}", "actor", api_actor(req), "id",
			   (json_int_t)t.id, "name", name, "role", role, "expires", t.expires);
	if (!detail || (ret = db_event_add(db, now, NULL, "token-created", detail)) ||
	    (ret = db_token_get(db, t.id, &row))) {
		db_rollback(db);
		api_db_failed(resp, detail ? ret : -ENOMEM);
		goto out;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	log_info("api", "token %s (id %lld, %s) created by %s", name, (long long)t.id, role,
		 req->token_name ? req->token_name : "a local user");
	snprintf(token, sizeof(token), "berth_%lld_%s", (long long)t.id, secret);
	resp->body = token_json(&row);
	if (!resp->body ||
	    json_object_set_new(resp->body, "token", json_string(token))) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto out;
	}
	resp->status = 201;
	snprintf(resp->location, sizeof(resp->location), API_PREFIX "/tokens/%lld",
		 (long long)t.id);
out:
	explicit_bzero(secret, sizeof(secret));
	explicit_bzero(token, sizeof(token));
	db_token_clear(&row);
	json_decref(detail);
}

static int list_one(const struct db_token *t, void *arg)
{
	json_t *o = token_json(t);
	return !o || json_array_append_new(arg, o) ? -ENOMEM : 0;
}

static int list_all(struct db *db, json_t *list)
{
	return db_token_list(db, list_one, list);
}

void api_tokens_list(struct api_req *req, struct api_resp *resp)
{
	api_respond_list(req, resp, "tokens", list_all);
}

static int find_token(struct api_req *req, struct api_resp *resp, struct db_token *t)
{
	int ret = db_token_find(req->ctx->db, req->params.v[0], t);
	if (ret == -ENOENT)
		api_error(resp, 404, "not-found", NULL, "no token with the name or id '%s'",
			  req->params.v[0]);
	else if (ret)
		api_db_failed(resp, ret);
	return ret;
}

void api_tokens_get(struct api_req *req, struct api_resp *resp)
{
	struct db_token t = {0};
	int ret = db_begin(req->ctx->db, false);
	if (ret) {
		api_db_failed(resp, ret);
		return;
	}
	ret = find_token(req, resp, &t);
	db_rollback(req->ctx->db);
	if (!ret) {
		resp->body = token_json(&t);
		if (!resp->body)
			api_error(resp, 500, "internal", NULL, "out of memory");
		else
			resp->status = 200;
	}
	db_token_clear(&t);
}

void api_tokens_delete(struct api_req *req, struct api_resp *resp)
{
	struct db *db = req->ctx->db;
	struct db_token t = {0};
	json_t *detail = NULL;
	char now[32];
	int ret;

	if ((ret = db_begin(db, true))) {
		api_db_failed(resp, ret);
		return;
	}
	if (find_token(req, resp, &t))
		goto rollback;
	api_now(now);
	detail = json_pack("{s:o, s:I, s:s, s:s}", "actor", api_actor(req), "id", (json_int_t)t.id,
			   "name", t.name, "role", t.role);
	if (!detail) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto rollback;
	}
	if ((ret = db_token_delete(db, t.id)) ||
	    (ret = db_event_add(db, now, NULL, "token-deleted", detail))) {
		api_db_failed(resp, ret);
		goto rollback;
	}
	if ((ret = db_commit(db))) {
		api_db_failed(resp, ret);
		goto out;
	}
	log_info("api", "token %s (id %lld) deleted", t.name, (long long)t.id);
	resp->status = 204;
	goto out;
rollback:
	db_rollback(db);
out:
	db_token_clear(&t);
	json_decref(detail);
}
