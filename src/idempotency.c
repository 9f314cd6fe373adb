/*
 * idempotency.c
 *		Idempotency keys per merchant, kept 24 hours.
 *
 * The key row is written in the same transaction as the effect, so a
 * rollback leaves no key behind; a transaction-scoped try-lock on the key
 * answers idempotency_in_progress at once instead of queueing behind a
 * request that is still running.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/sha2.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "idempotency.h"
#include "spi_util.h"
#include "tenant.h"

#define IDEM_MAX_KEY_LEN 300

static SavedPlan lookup_plan = {
	.sql = "SELECT request_hash, response FROM coupon.idempotency_key"
	" WHERE merchant_id = $1 AND actor = $3 AND key = $2"
	"   AND created_at > now() - interval '24 hours'",
	.nargs = 3,
	.argtypes = {INT8OID, TEXTOID, TEXTOID}
};

static SavedPlan store_plan = {
	.sql = "INSERT INTO coupon.idempotency_key (merchant_id, key, request_hash, response, actor)"
	" VALUES ($1, $2, $3, $4::jsonb, $5)"
	" ON CONFLICT (merchant_id, actor, key) DO UPDATE"
	" SET request_hash = excluded.request_hash, response = excluded.response,"
	"     created_at = now()",
	.nargs = 5,
	.argtypes = {INT8OID, TEXTOID, BYTEAOID, JSONOID, TEXTOID}
};

/* a key checked: PT400 when empty or over 300 characters */
static text *
checked_key(text *key)
{
	int			len = pg_mbstrlen_with_len(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));

	if (len == 0)
		coupon_error(REASON_INVALID_KEY, NULL, "the idempotency key must not be empty");
	if (len > IDEM_MAX_KEY_LEN)
		coupon_error(REASON_KEY_TOO_LONG, json_id("length", len),
					 "the idempotency key is longer than 300 characters");
	return key;
}

/*
 * The Idempotency-Key header of a PostgREST request (request.headers, names
 * in lower case), checked; NULL when there is none.
 */
text *
idem_key_header(void)
{
	JsonbValue *v = request_setting_member("request.headers", "idempotency-key");

	if (v == NULL || v->type != jbvString)
		return NULL;
	return checked_key(cstring_to_text_with_len(v->val.string.val, v->val.string.len));
}

/* the key argument, else the Idempotency-Key header, checked; NULL when neither */
text *
idem_key_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		return idem_key_header();
	return checked_key(PG_GETARG_TEXT_PP(argno));
}

/* SHA-256 of the request signature, as bytea */
static bytea *
signature_hash(const char *signature)
{
	bytea	   *result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	coupon_sha256(signature, strlen(signature), (uint8 *) VARDATA(result));
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return result;
}

/* claim the key for this transaction; the stored response if a replay */
Datum
idem_begin(IdemRequest *req, int64 merchant_id, text *key, const char *signature)
{
	uint32		h;
	Datum		args[3];

	req->merchant_id = merchant_id;
	req->key = key;
	req->actor = tenant_actor();
	req->hash = signature_hash(signature);

	h = hash_bytes_extended((const unsigned char *) VARDATA_ANY(key),
							VARSIZE_ANY_EXHDR(key), (uint64) merchant_id) ^
		hash_bytes((const unsigned char *) req->actor, strlen(req->actor));
	if (!call_try_advisory_lock(COUPON_LOCK_IDEMPOTENCY, (int32) h))
		coupon_error(REASON_IDEMPOTENCY_IN_PROGRESS, json_id("merchant_id", merchant_id),
					 "a request with this idempotency key is still running");

	args[0] = Int64GetDatum(merchant_id);
	args[1] = PointerGetDatum(key);
	args[2] = CStringGetTextDatum(req->actor);
	if (spi_run(&lookup_plan, args, NULL, false, 1) == 0)
		return (Datum) 0;

	{
		bool		isnull;
		bytea	   *stored = DatumGetByteaPP(spi_datum(0, 1, &isnull));

		if (VARSIZE_ANY_EXHDR(stored) != PG_SHA256_DIGEST_LENGTH ||
			memcmp(VARDATA_ANY(stored), VARDATA(req->hash), PG_SHA256_DIGEST_LENGTH) != 0)
			coupon_error(REASON_IDEMPOTENCY_MISMATCH, json_id("merchant_id", merchant_id),
						 "this idempotency key was used for a different request");
		return spi_datum(0, 2, &isnull);
	}
}

/* remember the response in the same transaction as the effect */
void
idem_finish(IdemRequest *req, Datum response_row)
{
	Datum		args[5];

	args[0] = Int64GetDatum(req->merchant_id);
	args[1] = PointerGetDatum(req->key);
	args[2] = PointerGetDatum(req->hash);
	args[3] = DirectFunctionCall1(row_to_json, response_row);
	args[4] = CStringGetTextDatum(req->actor);
	spi_run(&store_plan, args, NULL, false, 0);
}
