/*
 * credentials.c
 *		Merchants' client credentials for the partner API: issued, rotated
 *		with a grace period, revoked, and checked (docs/postgrest.md).
 *
 * A merchant has one client id ("ci_" and 24 hex digits) and a secret ("cs_"
 * and 64 hex digits: 256 random bits), shown once by merchant_credentials()
 * and stored only as its SHA-256.  A secret that random needs no slow hash:
 * nobody can search 2^256 secrets for one that matches.  Rotating keeps the
 * previous secret's hash valid until a grace period ends, so servers can
 * move to the new secret without an outage.  Checking compares hashes in
 * constant time, and counts failures per client id in the shared throttle
 * (a rolled-back transaction cannot erase them).  No secret reaches an
 * error message or the server log.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "pgcompat.h"
#include "spi_util.h"
#include "tenant.h"
#include "throttle.h"

PG_FUNCTION_INFO_V1(coupon_merchant_credentials);
PG_FUNCTION_INFO_V1(coupon_revoke_merchant_credentials);
PG_FUNCTION_INFO_V1(coupon_authenticate_client);

#define SECRET_BYTES 32
#define CLIENT_ID_BYTES 12
#define MAX_GRACE_USECS (7 * USECS_PER_DAY)

static SavedPlan lock_plan = {
	.sql = "SELECT client_id, client_secret_hash FROM coupon.merchant WHERE id = $1 FOR UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan rotate_plan = {
	.sql = "UPDATE coupon.merchant SET client_id = $2, client_secret_hash = $3,"
	"       previous_secret_hash = CASE WHEN $4 > interval '0' THEN client_secret_hash END,"
	"       previous_secret_until = CASE WHEN $4 > interval '0' AND client_secret_hash IS NOT NULL"
	"                                    THEN now() + $4 END"
	" WHERE id = $1 RETURNING previous_secret_until",
	.nargs = 4,
	.argtypes = {INT8OID, TEXTOID, TEXTOID, INTERVALOID}
};

static SavedPlan revoke_plan = {
	.sql = "WITH old AS (SELECT id, client_id FROM coupon.merchant WHERE id = $1 FOR UPDATE)"
	" UPDATE coupon.merchant m SET client_id = NULL, client_secret_hash = NULL,"
	"        previous_secret_hash = NULL, previous_secret_until = NULL"
	"   FROM old WHERE m.id = old.id RETURNING old.client_id IS NOT NULL",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan client_plan = {
	.sql = "SELECT id, client_secret_hash, previous_secret_hash,"
	"       previous_secret_until > now()"
	"  FROM coupon.merchant WHERE client_id = $1",
	.nargs = 1,
	.argtypes = {TEXTOID}
};

/* the SHA-256 of a secret, in hex (64 characters) */
static char *
secret_hash(const char *secret)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex = palloc(2 * PG_SHA256_DIGEST_LENGTH + 1);

	coupon_sha256(secret, strlen(secret), digest);
	for (int i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	return hex;
}

/* are two hashes equal?  Every character is compared, whatever differs */
static bool
hashes_equal(const char *a, const char *b)
{
	size_t		n = 2 * PG_SHA256_DIGEST_LENGTH;
	unsigned char diff = 0;

	if (a == NULL || b == NULL || strlen(a) != n || strlen(b) != n)
		return false;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char) (a[i] ^ b[i]);
	return diff == 0;
}

/*
 * coupon.merchant_credentials(merchant_id, grace): a new secret for the
 * merchant's client id (a client id too, the first time), shown this once.
 * The previous secret stays valid for `grace` (default one hour; 0 ends it
 * now).  The platform or the merchant itself.
 */
Datum
coupon_merchant_credentials(PG_FUNCTION_ARGS)
{
	int64		merchant_id = arg_int64(fcinfo, 0, "merchant_id");
	Interval   *grace;
	Interval	default_grace = {.time = USECS_PER_HOUR, .day = 0, .month = 0};
	char	   *client_id;
	char	   *secret;
	Datum		args[4];
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	TupleDesc	desc;
	HeapTuple	tuple;
	MemoryContext caller = CurrentMemoryContext;

	grace = PG_ARGISNULL(1) ? &default_grace : PG_GETARG_INTERVAL_P(1);
	if (grace->month != 0 || grace->day < 0 || grace->time < 0 ||
		grace->time + (int64) grace->day * USECS_PER_DAY > MAX_GRACE_USECS)
		coupon_error(REASON_INVALID_GRACE, json_text("argument", "grace"),
					 "grace must be between 0 and 7 days");
	tenant_check(merchant_id);
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "merchant_credentials must return a row");

	call_begin(CALL_VOLATILE);
	args[0] = Int64GetDatum(merchant_id);
	if (spi_run(&lock_plan, args, NULL, false, 1) == 0)
		coupon_error(REASON_MERCHANT_NOT_FOUND, json_id("merchant_id", merchant_id),
					 "merchant %lld does not exist", (long long) merchant_id);
	client_id = spi_text(0, 1);
	if (client_id == NULL)
		client_id = coupon_random_hex("ci_", CLIENT_ID_BYTES);
	secret = coupon_random_hex("cs_", SECRET_BYTES);
	args[1] = CStringGetTextDatum(client_id);
	args[2] = CStringGetTextDatum(secret_hash(secret));
	args[3] = IntervalPGetDatum(grace);
	spi_run(&rotate_plan, args, NULL, false, 1);
	/* the answer outlives SPI's memory, which call_end frees */
	client_id = MemoryContextStrdup(caller, client_id);
	secret = MemoryContextStrdup(caller, secret);
	values[2] = spi_datum(0, 1, &nulls[2]);	/* a timestamptz: by value */
	call_end(CALL_VOLATILE);

	values[0] = CStringGetTextDatum(client_id);
	values[1] = CStringGetTextDatum(secret);
	tuple = heap_form_tuple(BlessTupleDesc(desc), values, nulls);
	PG_RETURN_DATUM(HeapTupleGetDatum(tuple));
}

/*
 * coupon.revoke_merchant_credentials(merchant_id): the client id and every
 * secret of the merchant stop working at once; true if it had any.
 */
Datum
coupon_revoke_merchant_credentials(PG_FUNCTION_ARGS)
{
	int64		merchant_id = arg_int64(fcinfo, 0, "merchant_id");
	Datum		arg = Int64GetDatum(merchant_id);
	bool		had;

	tenant_check(merchant_id);
	call_begin(CALL_VOLATILE);
	if (spi_run(&revoke_plan, &arg, NULL, false, 1) == 0)
		coupon_error(REASON_MERCHANT_NOT_FOUND, json_id("merchant_id", merchant_id),
					 "merchant %lld does not exist", (long long) merchant_id);
	had = spi_bool(0, 1);
	call_end(CALL_VOLATILE);
	PG_RETURN_BOOL(had);
}

/*
 * coupon.authenticate_client(client_id, client_secret): the merchant whose
 * credentials these are, or PT401 invalid_credentials, the same for an
 * unknown client id and a wrong secret; after coupon.code_max_failures
 * failures of one client id within coupon.code_failure_window, PT429 until
 * the window ends.  For coupon.pre_request().
 */
Datum
coupon_authenticate_client(PG_FUNCTION_ARGS)
{
	char	   *client_id = PG_ARGISNULL(0) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *secret = PG_ARGISNULL(1) ? "" : text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *throttle_key;
	char	   *given;
	Datum		arg;
	bool		known;
	bool		match;
	int64		merchant_id = 0;

	if (client_id[0] == '\0' || secret[0] == '\0')
		coupon_error(REASON_INVALID_CREDENTIALS, NULL,
					 "a client id and a client secret are both required");
	throttle_key = psprintf("client:%s", client_id);
	if (!throttle_begin_attempt(throttle_key, THROTTLE_CLIENT))
		coupon_error(REASON_TOO_MANY_CREDENTIAL_ATTEMPTS, NULL,
					 "too many failed attempts for this client id");

	given = secret_hash(secret);
	call_begin(CALL_VOLATILE);
	arg = CStringGetTextDatum(client_id);
	known = spi_run(&client_plan, &arg, NULL, true, 1) > 0;
	if (known)
	{
		char	   *current = spi_text(0, 2);
		char	   *previous = spi_text(0, 3);
		bool		previous_valid = spi_bool(0, 4);

		merchant_id = spi_int64(0, 1, NULL);
		/* both compared, in constant time, whichever matches */
		match = hashes_equal(given, current);
		match = (previous_valid && hashes_equal(given, previous)) || match;
	}
	else
		match = false;			/* (client ids are not secret) */
	call_end(CALL_VOLATILE);
	if (!match)
		coupon_error(REASON_INVALID_CREDENTIALS, NULL,
					 "the client id or the client secret is wrong");
	throttle_forgive(throttle_key);
	PG_RETURN_INT64(merchant_id);
}
