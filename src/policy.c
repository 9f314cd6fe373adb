/*
 * policy.c
 *		coupon.create_policy and coupon.set_policy_status, and the policy
 *		checks that issuance shares.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "factcache.h"
#include "fetch.h"
#include "policy.h"
#include "spi_util.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_create_policy);
PG_FUNCTION_INFO_V1(coupon_set_policy_status);

#define MAX_TOTAL_QUANTITY	INT64CONST(1000000000)
#define MAX_PER_USER_LIMIT	1000000
#define MAX_VALID_DAYS		3650
#define MAX_ALLOWED_MERCHANTS 1000

/* argument positions of create_policy */
enum
{
	A_MERCHANT, A_NAME, A_TYPE, A_VALUE, A_METHOD, A_TOTAL, A_PER_USER,
	A_MAX_DISCOUNT, A_MIN_ORDER, A_VALID_FROM, A_VALID_UNTIL, A_VALID_DAYS,
	A_ISSUE_START, A_ISSUE_END, A_ALLOWED, A_SHARE, A_BUDGET, A_STACKABLE,
	A_STATUS, A_COUNT
};

static SavedPlan merchant_plan = {
	.sql = "SELECT status = 'active' FROM coupon.merchant WHERE id = $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/* how many of the listed merchants exist, and how many keep another currency than $2 */
static SavedPlan count_merchants_plan = {
	.sql = "SELECT count(*), count(*) FILTER (WHERE m.currency <> i.currency)"
	"  FROM coupon.merchant m, coupon.merchant i"
	" WHERE m.id = ANY ($1) AND i.id = $2",
	.nargs = 2,
	.argtypes = {INT8ARRAYOID, INT8OID}
};

static SavedPlan insert_plan = {
	.sql = "INSERT INTO coupon.policy (merchant_id, name, discount_type, discount_value,"
	" issue_method, total_quantity, per_user_limit, max_discount, min_order_amount,"
	" valid_from, valid_until, valid_days, issue_starts_at, issue_ends_at,"
	" allowed_merchants, merchant_share_bp, budget, stackable, status)"
	" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
	" $16, $17, $18, $19) RETURNING *",
	.nargs = 19,
	.argtypes = {INT8OID, TEXTOID, TEXTOID, INT8OID, TEXTOID, INT8OID, INT4OID, INT8OID,
		INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, INT8ARRAYOID, INT4OID, INT8OID, BOOLOID, TEXTOID}
};

static SavedPlan stock_plan = {
	.sql = "INSERT INTO coupon.policy_stock (policy_id, shard, remaining)"
	" SELECT $1, s, $2 / $3 + (s < $2 % $3)::int"
	"   FROM generate_series(0, $3 - 1) s",
	.nargs = 3,
	.argtypes = {INT8OID, INT8OID, INT8OID}
};

static SavedPlan lock_policy_plan = {
	.sql = "SELECT * FROM coupon.policy WHERE id = $1 FOR NO KEY UPDATE",
	.nargs = 1,
	.argtypes = {INT8OID}
};

static SavedPlan set_status_plan = {
	.sql = "UPDATE coupon.policy SET status = $2, updated_at = now() WHERE id = $1 RETURNING *",
	.nargs = 2,
	.argtypes = {INT8OID, TEXTOID}
};

/* raise the PT400 of a bad create_policy field */
static void
bad_field(CouponReason reason, const char *field, const char *sentence)
{
	coupon_error(reason, json_text("argument", field), "%s", sentence);
}

/* an optional bigint argument within [lo, hi] */
static void
check_optional_int64(FunctionCallInfo fcinfo, int argno, const char *name,
					 int64 lo, int64 hi, CouponReason reason)
{
	if (!PG_ARGISNULL(argno))
	{
		int64		v = PG_GETARG_INT64(argno);

		if (v < lo || v > hi)
			bad_field(reason, name,
					  psprintf("%s must be between " INT64_FORMAT " and " INT64_FORMAT,
							   name, lo, hi));
	}
}

/*
 * allowed_merchants: existing ids, each once, no NULLs, at most 1000, all
 * in the issuer's currency (a discount is only ever taken off an amount of
 * the same currency).  Naming a merchant other than the issuer makes a
 * policy the platform funds there, so only the platform may do it.
 */
static void
check_allowed_merchants(ArrayType *arr, int64 issuer_id)
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Datum		args[2];

	if (ARR_NDIM(arr) > 1)
		bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
				  "allowed_merchants must be a one-dimensional array");
	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	if (n < 1 || n > MAX_ALLOWED_MERCHANTS)
		bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
				  "allowed_merchants must list 1 to 1000 merchants");
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
					  "allowed_merchants must not contain nulls");
		for (int j = 0; j < i; j++)
			if (DatumGetInt64(elems[i]) == DatumGetInt64(elems[j]))
				bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
						  "allowed_merchants must list each merchant once");
	}
	args[0] = PointerGetDatum(arr);
	args[1] = Int64GetDatum(issuer_id);
	spi_run(&count_merchants_plan, args, NULL, true, 1);
	if (spi_int64(0, 1, NULL) != n)
		bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
				  "allowed_merchants lists a merchant that does not exist");
	if (spi_int64(0, 2, NULL) != 0)
		bad_field(REASON_INVALID_MERCHANTS, "allowed_merchants",
				  "allowed_merchants lists a merchant with another currency than the issuer's");
	for (int i = 0; i < n; i++)
		if (DatumGetInt64(elems[i]) != issuer_id && !tenant_is_platform())
			coupon_error(REASON_MERCHANT_NOT_ALLOWED,
						 json_join(json_id("merchant_id", issuer_id),
								  json_id("allowed_merchant_id", DatumGetInt64(elems[i]))),
						 "only the platform may make a policy that can be spent at merchant %lld",
						 (long long) DatumGetInt64(elems[i]));
}

/* the fields that do not need the database */
static void
check_policy_fields(FunctionCallInfo fcinfo, DiscountType *type)
{
	PolicyStatus status;
	char	   *s;
	int64		value;

	(void) arg_id_text(fcinfo, A_NAME, "name", REASON_INVALID_NAME);

	require_arg(fcinfo, A_TYPE, "discount_type");
	if (!discount_type_from_name(text_to_cstring(PG_GETARG_TEXT_PP(A_TYPE)), type))
		bad_field(REASON_INVALID_DISCOUNT, "discount_type",
				  "discount_type must be fixed, percent or balance");
	value = arg_int64(fcinfo, A_VALUE, "discount_value");
	if (*type == DISCOUNT_PERCENT ? (value < 1 || value > 10000)
		: (value < 1 || value > COUPON_MAX_AMOUNT))
		bad_field(REASON_INVALID_DISCOUNT, "discount_value",
				  *type == DISCOUNT_PERCENT
				  ? "a percent discount_value must be between 1 and 10000 basis points"
				  : "discount_value must be between 1 and 10^15");
	if (!PG_ARGISNULL(A_MAX_DISCOUNT) && *type != DISCOUNT_PERCENT)
		bad_field(REASON_INVALID_DISCOUNT, "max_discount",
				  "max_discount applies to percent discounts only");
	check_optional_int64(fcinfo, A_MAX_DISCOUNT, "max_discount", 1, COUPON_MAX_AMOUNT,
						 REASON_INVALID_DISCOUNT);
	(void) arg_amount(fcinfo, A_MIN_ORDER, "min_order_amount");

	require_arg(fcinfo, A_METHOD, "issue_method");
	s = text_to_cstring(PG_GETARG_TEXT_PP(A_METHOD));
	if (strcmp(s, "direct") != 0 && strcmp(s, "code") != 0 && strcmp(s, "fcfs") != 0)
		bad_field(REASON_INVALID_ISSUE_METHOD, "issue_method",
				  "issue_method must be direct, code or fcfs");
	if (strcmp(s, "fcfs") == 0 && PG_ARGISNULL(A_TOTAL))
		bad_field(REASON_INVALID_QUANTITY, "total_quantity",
				  "a first-come-first-served policy needs a total_quantity");
	check_optional_int64(fcinfo, A_TOTAL, "total_quantity", 1, MAX_TOTAL_QUANTITY,
						 REASON_INVALID_QUANTITY);
	if (!PG_ARGISNULL(A_PER_USER))
		(void) arg_int32_range(fcinfo, A_PER_USER, "per_user_limit", 1,
							   MAX_PER_USER_LIMIT, REASON_INVALID_LIMIT);

	if (!PG_ARGISNULL(A_VALID_FROM) && !PG_ARGISNULL(A_VALID_UNTIL) &&
		PG_GETARG_TIMESTAMPTZ(A_VALID_FROM) >= PG_GETARG_TIMESTAMPTZ(A_VALID_UNTIL))
		bad_field(REASON_INVALID_WINDOW, "valid_until", "valid_until must be after valid_from");
	if (!PG_ARGISNULL(A_ISSUE_START) && !PG_ARGISNULL(A_ISSUE_END) &&
		PG_GETARG_TIMESTAMPTZ(A_ISSUE_START) >= PG_GETARG_TIMESTAMPTZ(A_ISSUE_END))
		bad_field(REASON_INVALID_WINDOW, "issue_ends_at",
				  "issue_ends_at must be after issue_starts_at");
	if (!PG_ARGISNULL(A_ISSUE_END) && !PG_ARGISNULL(A_VALID_UNTIL) &&
		PG_GETARG_TIMESTAMPTZ(A_ISSUE_END) > PG_GETARG_TIMESTAMPTZ(A_VALID_UNTIL))
		bad_field(REASON_INVALID_WINDOW, "issue_ends_at",
				  "issue_ends_at must not be after valid_until");
	if (!PG_ARGISNULL(A_ISSUE_START) && !PG_ARGISNULL(A_VALID_UNTIL) &&
		PG_GETARG_TIMESTAMPTZ(A_ISSUE_START) >= PG_GETARG_TIMESTAMPTZ(A_VALID_UNTIL))
		bad_field(REASON_INVALID_WINDOW, "issue_starts_at",
				  "issue_starts_at must be before valid_until");
	if (!PG_ARGISNULL(A_VALID_DAYS))
		(void) arg_int32_range(fcinfo, A_VALID_DAYS, "valid_days", 1, MAX_VALID_DAYS,
							   REASON_INVALID_WINDOW);

	(void) arg_int32_range(fcinfo, A_SHARE, "merchant_share_bp", 0, 10000,
						   REASON_INVALID_SHARE);
	check_optional_int64(fcinfo, A_BUDGET, "budget", 1, COUPON_MAX_AMOUNT,
						 REASON_INVALID_AMOUNT);
	require_arg(fcinfo, A_STACKABLE, "stackable");

	require_arg(fcinfo, A_STATUS, "status");
	if (!policy_status_from_name(text_to_cstring(PG_GETARG_TEXT_PP(A_STATUS)), &status) ||
		status == POLICY_RETIRED)
		bad_field(REASON_INVALID_STATUS, "status",
				  "a new policy's status must be draft, active or paused");
}

/* coupon.create_policy(merchant_id, name, discount_type, discount_value, ...) */
Datum
coupon_create_policy(PG_FUNCTION_ARGS)
{
	int64		merchant_id = arg_int64(fcinfo, A_MERCHANT, "merchant_id");
	DiscountType type;
	Datum		args[A_COUNT];
	char		nulls[A_COUNT];
	Datum		result;

	check_policy_fields(fcinfo, &type);
	tenant_check(merchant_id);

	call_begin(CALL_VOLATILE);
	args[0] = Int64GetDatum(merchant_id);
	if (spi_run(&merchant_plan, args, NULL, true, 1) == 0)
		coupon_error(REASON_MERCHANT_NOT_FOUND, json_id("merchant_id", merchant_id),
					 "merchant %lld does not exist", (long long) merchant_id);
	if (!spi_bool(0, 1))
		coupon_error(REASON_MERCHANT_INACTIVE, json_id("merchant_id", merchant_id),
					 "merchant %lld is suspended", (long long) merchant_id);
	if (!PG_ARGISNULL(A_ALLOWED))
		check_allowed_merchants(PG_GETARG_ARRAYTYPE_P(A_ALLOWED), merchant_id);

	for (int i = 0; i < A_COUNT; i++)
	{
		args[i] = PG_GETARG_DATUM(i);
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
	}
	spi_run(&insert_plan, args, nulls, false, 1);
	result = spi_result_row(fcinfo);

	/* limited direct and fcfs policies get their stock shards */
	if (!PG_ARGISNULL(A_TOTAL) &&
		strcmp(text_to_cstring(PG_GETARG_TEXT_PP(A_METHOD)), "code") != 0)
	{
		int64		total = PG_GETARG_INT64(A_TOTAL);
		Datum		sargs[3];
		bool		isnull;

		sargs[0] = spi_datum(0, 1, &isnull);	/* the new policy id */
		sargs[1] = Int64GetDatum(total);
		sargs[2] = Int64GetDatum(Min(total, COUPON_STOCK_SHARDS));
		spi_run(&stock_plan, sargs, NULL, false, 0);
	}
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/* coupon.set_policy_status(policy_id, status) */
Datum
coupon_set_policy_status(PG_FUNCTION_ARGS)
{
	int64		policy_id = arg_int64(fcinfo, 0, "policy_id");
	PolicyStatus to;
	PolicyStatus from;
	char	   *current;
	Datum		args[2];
	Datum		result;

	require_arg(fcinfo, 1, "status");
	if (!policy_status_from_name(text_to_cstring(PG_GETARG_TEXT_PP(1)), &to))
		coupon_error(REASON_INVALID_STATUS, NULL,
					 "status must be draft, active, paused or retired");

	call_begin(CALL_VOLATILE);
	args[0] = Int64GetDatum(policy_id);
	args[1] = CStringGetTextDatum(policy_status_name(to));
	if (spi_run(&lock_policy_plan, args, NULL, false, 1) == 0)
		coupon_error(REASON_POLICY_NOT_FOUND, json_id("policy_id", policy_id),
					 "policy %lld does not exist", (long long) policy_id);
	tenant_check(spi_int64(0, SPI_fnumber(SPI_tuptable->tupdesc, "merchant_id"), NULL));
	current = spi_text(0, SPI_fnumber(SPI_tuptable->tupdesc, "status"));
	if (!policy_status_from_name(current, &from))
		elog(ERROR, "policy %lld has unknown status \"%s\"", (long long) policy_id, current);
	if (!policy_status_transition_ok(from, to))
		coupon_error(REASON_INVALID_STATUS_TRANSITION, json_id("policy_id", policy_id),
					 "policy %lld cannot go from %s to %s", (long long) policy_id,
					 current, policy_status_name(to));
	if (from != to)
		spi_run(&set_status_plan, args, NULL, false, 1);
	result = spi_result_row(fcinfo);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(result);
}

/* a nullable timestamptz into (has, value) */
static void
read_ts(Datum d, bool isnull, bool *has, TimestampTz *value)
{
	*has = !isnull;
	*value = isnull ? 0 : DatumGetTimestampTz(d);
}

/* a policy's issue facts read by primary key under `how`; false if none */
static bool
read_issue_info(int64 policy_id, FetchHow how, PolicyIssueInfo *info)
{
	static const char *const cols[] = {
		"merchant_id", "issue_method", "status", "total_quantity", "per_user_limit",
		"issue_starts_at", "issue_ends_at", "valid_until", "created_at",
		"valid_days", "discount_type", "discount_value"
	};
	Datum		v[lengthof(cols)];
	bool		n[lengthof(cols)];
	char	   *s;

	if (fetch_columns_how(FETCH_POLICY, policy_id, how, lengthof(cols), cols, v, n) != FETCH_FOUND)
		return false;
	info->id = policy_id;
	info->merchant_id = DatumGetInt64(v[0]);
	text_to_cstring_buffer(DatumGetTextPP(v[1]), info->issue_method, sizeof(info->issue_method));
	s = TextDatumGetCString(v[2]);
	if (!policy_status_from_name(s, &info->status))
		elog(ERROR, "policy %lld has unknown status \"%s\"", (long long) policy_id, s);
	info->has_total = !n[3];
	info->total_quantity = n[3] ? 0 : DatumGetInt64(v[3]);
	info->has_limit = !n[4];
	info->per_user_limit = n[4] ? 0 : DatumGetInt32(v[4]);
	read_ts(v[5], n[5], &info->has_issue_start, &info->issue_starts_at);
	read_ts(v[6], n[6], &info->has_issue_end, &info->issue_ends_at);
	read_ts(v[7], n[7], &info->has_valid_until, &info->valid_until);
	info->created_at = DatumGetTimestampTz(v[8]);
	info->has_valid_days = !n[9];
	info->valid_days = n[9] ? 0 : DatumGetInt32(v[9]);
	info->is_balance = strcmp(TextDatumGetCString(v[10]), "balance") == 0;
	info->discount_value = DatumGetInt64(v[11]);
	return true;
}

/*
 * Load a policy for issuance by primary key; raises PT404 when missing.
 * The policy and its merchant come from the backend's copies when the call
 * may use them (factcache.c: READ COMMITTED, no change in flight), as
 * validate()'s do: an issue then reads no policy or merchant row.
 */
void
policy_load_issue_info(int64 policy_id, PolicyIssueInfo *info)
{
	bool		cached = factcache_open();
	bool		exists;

	if (!cached || !factcache_get_issue_info(policy_id, info))
	{
		if (!read_issue_info(policy_id, cached ? FETCH_NEWEST : FETCH_READ, info))
			coupon_error(REASON_POLICY_NOT_FOUND, json_id("policy_id", policy_id),
						 "policy %lld does not exist", (long long) policy_id);
		if (cached)
			factcache_put_issue_info(policy_id, info);
	}
	info->merchant_active = factcache_load_merchant(info->merchant_id, cached, &exists);
}

/* raise unless coupons of the policy may be issued now */
void
policy_check_issuable(const PolicyIssueInfo *p)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	char	   *ids = json_id("policy_id", p->id);

	if (p->status != POLICY_ACTIVE)
		coupon_error(REASON_POLICY_INACTIVE, ids, "policy %lld is %s",
					 (long long) p->id, policy_status_name(p->status));
	if (!p->merchant_active)
		coupon_error(REASON_MERCHANT_INACTIVE, ids, "the merchant of policy %lld is suspended",
					 (long long) p->id);
	if (p->has_issue_start && now < p->issue_starts_at)
		coupon_error(REASON_ISSUE_NOT_STARTED, ids, "issuance of policy %lld has not started",
					 (long long) p->id);
	if (p->has_issue_end && now >= p->issue_ends_at)
		coupon_error(REASON_ISSUE_ENDED, ids, "issuance of policy %lld has ended",
					 (long long) p->id);
	if (p->has_valid_until && now >= p->valid_until)
		coupon_error(REASON_EXPIRED, ids, "coupons of policy %lld are no longer valid",
					 (long long) p->id);
}

/*
 * Serialise the user's issuance of this policy with a transaction-scoped
 * advisory lock, then count under it: the limit is decided and written
 * under one lock.  The unique (policy_id, user_id, user_seq) index backs it
 * up at isolation levels where the count could miss a concurrent commit.
 */
int32
policy_take_user_slot(const PolicyIssueInfo *p, const char *user_id)
{
	uint64		h;
	int64		held;

	if (!p->has_limit)
		return 0;
	h = hash_bytes_extended((const unsigned char *) user_id, strlen(user_id),
							(uint64) p->id);
	call_advisory_lock(COUPON_LOCK_PER_USER, (int32) h);

	held = fetch_user_coupons(p->id, user_id);
	if (held >= p->per_user_limit)
		coupon_error(REASON_PER_USER_LIMIT, json_id("policy_id", p->id),
					 "the user already holds %lld coupon(s) of policy %lld, the most allowed",
					 (long long) held, (long long) p->id);
	return (int32) held + 1;
}
