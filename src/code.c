/*
 * code.c
 *		coupon.generate_codes and coupon.redeem_code: coupons behind codes.
 *
 * A generated code becomes an 'unclaimed' coupon row that stores only the
 * HMAC-SHA256 of the code under coupon.code_secret; the plain code is
 * returned once and never stored or logged.  Wrong codes count against the
 * user in shared memory (throttle.c), which a rollback cannot undo.
 *
 * A code is a secret, and the statement that carries it may be logged: an
 * error raised while redeem_code() runs is logged without its STATEMENT
 * line (log_min_error_statement would otherwise put the code, perhaps
 * someone else's valid code, into the server log).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "codefmt.h"
#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "idempotency.h"
#include "policy.h"
#include "spi_util.h"
#include "tenant.h"
#include "throttle.h"

PG_FUNCTION_INFO_V1(coupon_generate_codes);
PG_FUNCTION_INFO_V1(coupon_redeem_code);

#define MAX_CODES_PER_CALL 100000

/* a redeem_code() call is running in this backend: keep statements out of the log */
static bool hiding_statement = false;
static emit_log_hook_type prev_emit_log_hook = NULL;

/* emit_log_hook: while a code is being redeemed, no message shows the statement */
static void
code_emit_log_hook(ErrorData *edata)
{
	if (hiding_statement)
		edata->hide_stmt = true;
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/* an error ended the call: statements show again */
static void
code_xact_callback(XactEvent event, void *arg)
{
	hiding_statement = false;
}

/* the same for an error caught by a savepoint (an EXCEPTION block) */
static void
code_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		hiding_statement = false;
}

/* install the log hook and the callbacks that end its watch */
void
coupon_code_init(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = code_emit_log_hook;
	RegisterXactCallback(code_xact_callback, NULL);
	RegisterSubXactCallback(code_subxact_callback, NULL);
}

static SavedPlan lock_policy_plan = {
	.sql = "SELECT merchant_id, issue_method, status, total_quantity, codes_generated"
	"  FROM coupon.policy WHERE id = $1 FOR NO KEY UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan insert_codes_plan = {
	.sql = "INSERT INTO coupon.coupon (policy_id, code_hash, status, balance)"
	" SELECT p.id, h, 'unclaimed',"
	"        CASE WHEN p.discount_type = 'balance' THEN p.discount_value END"
	"   FROM coupon.policy p, unnest($2::bytea[]) h WHERE p.id = $1",
	.nargs = 2,
	.argtypes = {INT8OID, BYTEAARRAYOID}
};

static SavedPlan count_codes_plan = {
	.sql = "UPDATE coupon.policy SET codes_generated = codes_generated + $2,"
	" updated_at = now() WHERE id = $1",
	.nargs = 2,
	.argtypes = {INT8OID, INT8OID}
};

static SavedPlan find_code_plan = {
	.sql = "SELECT id, policy_id, user_id, status FROM coupon.coupon WHERE code_hash = $1",
	.nargs = 1,
	.argtypes = {BYTEAOID}
};

static SavedPlan own_coupon_plan = {
	.sql = "SELECT * FROM coupon.coupon WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan replay_plan = {
	.sql = "SELECT * FROM jsonb_populate_record(NULL::coupon.coupon, $1)",
	.nargs = 1,
	.argtypes = {JSONBOID}
};

static SavedPlan claim_plan = {
	.sql = "UPDATE coupon.coupon c SET user_id = $2, user_seq = $3, status = 'issued',"
	"       issued_at = now(), updated_at = now(),"
	"       expires_at = LEAST(p.valid_until, now() + p.valid_days * interval '1 day')"
	"  FROM coupon.policy p"
	" WHERE c.id = $1 AND p.id = c.policy_id AND c.status = 'unclaimed'"
	" RETURNING c.*",
	.nargs = 3,
	.argtypes = {INT8OID, TEXTOID, INT4OID}
};

/* the configured secret, or an error saying how to set it */
static const char *
code_secret(void)
{
	if (coupon_code_secret == NULL || coupon_code_secret[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("coupon.code_secret is not set"),
				 errhint("Set coupon.code_secret in postgresql.conf to a long random string and reload.")));
	return coupon_code_secret;
}

/* HMAC-SHA256 of a canonical code under the secret, as bytea */
static bytea *
code_hash(const char *secret, const char *code)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	bytea	   *result = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

	if (ctx == NULL)
		elog(ERROR, "out of memory");
	if (pg_hmac_init(ctx, (const uint8 *) secret, strlen(secret)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) code, strlen(code)) < 0 ||
		pg_hmac_final(ctx, (uint8 *) VARDATA(result), PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute HMAC-SHA256: %s", pg_hmac_error(ctx));
	pg_hmac_free(ctx);
	SET_VARSIZE(result, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
	return result;
}

/* coupon.generate_codes(policy_id, count): the plain codes, once */
Datum
coupon_generate_codes(PG_FUNCTION_ARGS)
{
	int64		policy_id = arg_int64(fcinfo, 0, "policy_id");
	int32		count = arg_int32_range(fcinfo, 1, "count", 1, MAX_CODES_PER_CALL,
										REASON_INVALID_COUNT);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	const char *secret = code_secret();
	Datum	   *hashes;
	char	  **codes;
	uint8		random[CODE_BODY_LEN];
	Datum		args[2];
	bool		isnull;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	/* the codes outlive the call's SPI memory: they are returned after it */
	codes = palloc(sizeof(char *) * count);
	for (int i = 0; i < count; i++)
		codes[i] = palloc(CODE_DISPLAY_LEN + 1);

	call_begin(CALL_VOLATILE);
	args[0] = Int64GetDatum(policy_id);
	if (spi_run(&lock_policy_plan, args, NULL, false, 1) == 0)
		coupon_error(REASON_POLICY_NOT_FOUND, json_id("policy_id", policy_id),
					 "policy %lld does not exist", (long long) policy_id);
	tenant_check(spi_int64(0, 1, NULL));
	if (strcmp(spi_text(0, 2), "code") != 0)
		coupon_error(REASON_WRONG_ISSUE_METHOD, json_id("policy_id", policy_id),
					 "policy %lld does not issue coupons by code", (long long) policy_id);
	if (strcmp(spi_text(0, 3), "retired") == 0)
		coupon_error(REASON_POLICY_INACTIVE, json_id("policy_id", policy_id),
					 "policy %lld is retired", (long long) policy_id);
	{
		int64		total = spi_int64(0, 4, &isnull);
		int64		done = spi_int64(0, 5, NULL);

		if (!isnull && done + count > total)
			coupon_error(REASON_QUANTITY_EXCEEDED, json_id("policy_id", policy_id),
						 "policy %lld allows " INT64_FORMAT " more code(s), not %d",
						 (long long) policy_id, total - done, count);
	}

	hashes = palloc(sizeof(Datum) * count);
	for (int i = 0; i < count; i++)
	{
		char		canonical[CODE_LEN + 1];

		if (!pg_strong_random(random, sizeof(random)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes")));
		code_from_random(random, canonical);
		hashes[i] = PointerGetDatum(code_hash(secret, canonical));
		code_display(canonical, codes[i]);
	}
	explicit_bzero(random, sizeof(random));

	args[1] = PointerGetDatum(construct_array(hashes, count, BYTEAOID, -1, false,
											  TYPALIGN_INT));
	spi_run(&insert_codes_plan, args, NULL, false, 0);
	args[1] = Int64GetDatum((int64) count);
	spi_run(&count_codes_plan, args, NULL, false, 0);
	call_end(CALL_VOLATILE);

	for (int i = 0; i < count; i++)
	{
		Datum		value = CStringGetTextDatum(codes[i]);
		bool		null = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &null);
	}
	return (Datum) 0;
}


/* coupon.redeem_code(code, user_id): claim the coupon behind a code */
Datum
coupon_redeem_code(PG_FUNCTION_ARGS)
{
	char	   *user_id;
	text	   *typed;
	char		canonical[CODE_LEN + 1];
	PolicyIssueInfo policy;
	int64		coupon_id;
	char	   *holder;
	Datum		args[3];
	int32		user_seq;
	Datum		result;
	text	   *key = idem_key_header();
	IdemRequest idem;
	char	   *signature;

	hiding_statement = true;
	require_arg(fcinfo, 0, "code");
	user_id = arg_id_text(fcinfo, 1, "user_id", REASON_INVALID_USER_ID);
	typed = PG_GETARG_TEXT_PP(0);
	if (!code_normalize(VARDATA_ANY(typed), VARSIZE_ANY_EXHDR(typed), canonical))
		coupon_error(REASON_INVALID_CODE, NULL, "this is not a valid coupon code");
	/* counted as a failure at once, in one step with the check (a guess) */
	if (!throttle_begin_attempt(user_id, THROTTLE_CODE))
		coupon_error(REASON_TOO_MANY_CODE_ATTEMPTS, NULL,
					 "too many wrong codes were entered for this user");

	call_begin(CALL_VOLATILE);
	args[0] = PointerGetDatum(code_hash(code_secret(), canonical));
	explicit_bzero(canonical, sizeof(canonical));
	/* a request is the code (by its HMAC, never the code itself) and the user */
	signature = psprintf("redeem_code|%s|%s",
						 DatumGetCString(DirectFunctionCall1(byteaout, args[0])), user_id);
	if (spi_run(&find_code_plan, args, NULL, false, 1) == 0)
		coupon_error(REASON_CODE_NOT_FOUND, NULL, "no coupon has this code");
	coupon_id = spi_int64(0, 1, NULL);
	holder = spi_text(0, 3);
	if (holder != NULL && strcmp(holder, user_id) != 0)
		coupon_error(REASON_CODE_REDEEMED, NULL, "this code was already redeemed");
	/* a code of the user's own or free to claim: not a guess, not counted */
	throttle_forgive(user_id);
	policy_load_issue_info(spi_int64(0, 2, NULL), &policy);
	tenant_check_for(policy.merchant_id, user_id);
	if (key != NULL)
	{
		Datum		replay = idem_begin(&idem, policy.merchant_id, key, signature);

		if (replay != (Datum) 0)
		{
			spi_run(&replay_plan, &replay, NULL, true, 1);
			result = spi_result_row(fcinfo);
			call_end(CALL_VOLATILE);
			hiding_statement = false;
			PG_RETURN_DATUM(tenant_coupon_shown(result));
		}
	}

	args[0] = Int64GetDatum(coupon_id);
	if (holder != NULL && strcmp(holder, user_id) == 0)
	{
		/* the same user again (a retried request): the same coupon */
		spi_run(&own_coupon_plan, args, NULL, false, 1);
		result = spi_result_row(fcinfo);
		call_end(CALL_VOLATILE);
		hiding_statement = false;
		PG_RETURN_DATUM(tenant_coupon_shown(result));
	}

	policy_check_issuable(&policy);
	user_seq = policy_take_user_slot(&policy, user_id);
	args[1] = CStringGetTextDatum(user_id);
	args[2] = Int32GetDatum(user_seq);
	if (spi_run(&claim_plan, args, user_seq == 0 ? "  n" : NULL, false, 1) == 0)
		coupon_error(REASON_CODE_REDEEMED, NULL, "this code was already redeemed");
	result = spi_result_row(fcinfo);
	if (key != NULL)
		idem_finish(&idem, result);
	call_end(CALL_VOLATILE);
	hiding_statement = false;
	PG_RETURN_DATUM(tenant_coupon_shown(result));
}
