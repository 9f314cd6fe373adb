/*
 * issue.c
 *		coupon.issue: direct and first-come-first-served issuance.
 *
 * A limited policy's stock is split over up to 64 shard rows
 * (coupon.policy_stock).  An issuer decrements one shard picked at random
 * and falls back to the others in turn, passing over shards that another
 * issuer holds, so concurrent issuers queue on a row only when every shard
 * with stock is held; the count never goes below zero (a conditional write
 * backed by a CHECK).  A sold-out policy is answered from the shards'
 * index (no shard with stock), without locking any.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "callctx.h"
#include "coupon.h"
#include "error.h"
#include "idempotency.h"
#include "policy.h"
#include "rowwrite.h"
#include "spi_util.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_issue);

/* what one attempt on a stock shard found */
typedef enum ShardTake
{
	SHARD_TAKEN,				/* one unit taken; the shard stays locked */
	SHARD_EMPTY,				/* no stock left in it */
	SHARD_BUSY					/* another transaction holds it (skip_locked) */
} ShardTake;

static SavedPlan candidates_plan = {
	.sql = "SELECT shard FROM coupon.policy_stock"
	" WHERE policy_id = $1 AND remaining > 0"
	" ORDER BY (shard + " CppAsString2(COUPON_STOCK_SHARDS) " - $2)"
	"          % " CppAsString2(COUPON_STOCK_SHARDS),
	.nargs = 2,
	.argtypes = {INT8OID, INT4OID}
};

/* the columns an issued coupon is written with; the id is its identity */
static const char *const coupon_cols[] = {
	"policy_id", "user_id", "user_seq", "status", "balance", "issued_at", "expires_at",
	"updated_at"
};

static SavedPlan replay_plan = {
	.sql = "SELECT * FROM jsonb_populate_record(NULL::coupon.coupon, $1)",
	.nargs = 1,
	.argtypes = {JSONBOID}
};

/* shards tried at random before the issuer asks which shards have stock */
#define RANDOM_TRIES 3

/* a shard number picked at random among the policy's nshards */
static int32
random_shard(int32 nshards)
{
	return (int32) pg_prng_uint64_range(&pg_global_prng_state, 0, nshards - 1);
}

/*
 * Take one unit from a shard if it has any, as UPDATE ... SET remaining =
 * remaining - 1 WHERE remaining > 0 would: a shard empty in a fresh
 * snapshot is passed over without waiting or locking; otherwise it is
 * locked and its latest version decides.  With skip_locked, a shard that
 * another transaction holds is not waited for: the answer is SHARD_BUSY.
 */
static ShardTake
take_shard(int64 policy_id, int32 shard, bool skip_locked)
{
	static const char *const cols[] = {"remaining"};
	Datum		v;
	bool		n;
	ItemPointerData tid;
	FetchResult r;

	if (fetch_stock_row(policy_id, shard, FETCH_READ, 1, cols, &v, &n, &tid) != FETCH_FOUND ||
		DatumGetInt64(v) <= 0)
		return SHARD_EMPTY;
	r = fetch_lock_found(FETCH_POLICY_STOCK, skip_locked, 1, cols, &v, &n, &tid);
	if (r == FETCH_BUSY)
		return SHARD_BUSY;
	if (r != FETCH_FOUND || DatumGetInt64(v) <= 0)
		return SHARD_EMPTY;
	v = Int64GetDatum(DatumGetInt64(v) - 1);
	row_update(FETCH_POLICY_STOCK, &tid, 1, cols, &v, &n, false);
	return SHARD_TAKEN;
}

/*
 * Take one unit of stock without queueing behind another issuer.  First a
 * few shards picked at random, each taken only if no other transaction
 * holds it (as SKIP LOCKED would): colliding issuers scatter rather than
 * all moving on to the same next shard, and the common case asks no SQL.
 * Then every shard that had stock in a fresh snapshot, in turn from
 * another random one, the same way.  Only when every shard with stock was
 * busy does the issuer wait, on those shards in that order, one at a time.
 * Each take is one conditional write of one row (take_shard), so an issuer
 * keeps locked only a shard it took from, or one that a concurrent taker
 * emptied while it waited (as UPDATE's recheck would).  Stock only goes
 * down, so a shard committed at zero stays empty: when no candidate is
 * left the policy is sold out.
 */
static bool
take_stock(int64 policy_id, int64 total)
{
	int32		nshards = (int32) Min(total, COUPON_STOCK_SHARDS);
	int32		shards[COUPON_STOCK_SHARDS];
	int32		busy[COUPON_STOCK_SHARDS];
	int			nbusy = 0;
	ShardTake	t;
	uint64		n;
	Datum		args[2];

	for (int i = 0; i < Min(nshards, RANDOM_TRIES); i++)
	{
		int32		shard = random_shard(nshards);

		if (take_shard(policy_id, shard, true) == SHARD_TAKEN)
			return true;
	}

	args[0] = Int64GetDatum(policy_id);
	args[1] = Int32GetDatum(random_shard(nshards));
	n = spi_run(&candidates_plan, args, NULL, false, COUPON_STOCK_SHARDS);
	for (uint64 i = 0; i < n; i++)
		shards[i] = spi_int32(i, 1, NULL);
	for (uint64 i = 0; i < n; i++)
	{
		t = take_shard(policy_id, shards[i], true);
		if (t == SHARD_TAKEN)
			return true;
		if (t == SHARD_BUSY)
			busy[nbusy++] = shards[i];
	}
	for (int i = 0; i < nbusy; i++)
		if (take_shard(policy_id, busy[i], false) == SHARD_TAKEN)
			return true;
	return false;
}

/*
 * Write the new coupon and return it: a balance coupon starts with the
 * policy's value, and it expires at the policy's valid_until or valid_days
 * after now, whichever comes first (days counted in the session's time
 * zone, as timestamptz + interval counts them).
 */
static Datum
insert_coupon(const PolicyIssueInfo *p, const char *user_id, int32 user_seq)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		v[lengthof(coupon_cols)];
	bool		n[lengthof(coupon_cols)] = {false};
	bool		has_expiry = p->has_valid_until;
	TimestampTz expires_at = p->valid_until;

	if (p->has_valid_days)
	{
		Interval	days = {.time = 0, .day = p->valid_days, .month = 0};
		TimestampTz t = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
																TimestampTzGetDatum(now),
																PointerGetDatum(&days)));

		if (!has_expiry || t < expires_at)
			expires_at = t;
		has_expiry = true;
	}
	v[0] = Int64GetDatum(p->id);
	v[1] = CStringGetTextDatum(user_id);
	v[2] = Int32GetDatum(user_seq);
	n[2] = (user_seq == 0);
	v[3] = CStringGetTextDatum("issued");
	v[4] = Int64GetDatum(p->discount_value);
	n[4] = !p->is_balance;
	v[5] = TimestampTzGetDatum(now);
	v[6] = TimestampTzGetDatum(expires_at);
	n[6] = !has_expiry;
	v[7] = TimestampTzGetDatum(now);
	return row_insert(FETCH_COUPON, lengthof(coupon_cols), coupon_cols, v, n);
}

/* coupon.issue(policy_id, user_id, idempotency_key) */
Datum
coupon_issue(PG_FUNCTION_ARGS)
{
	int64		policy_id = arg_int64(fcinfo, 0, "policy_id");
	char	   *user_id = arg_id_text(fcinfo, 1, "user_id", REASON_INVALID_USER_ID);
	text	   *key = idem_key_arg(fcinfo, 2);
	PolicyIssueInfo policy;
	IdemRequest idem;
	int32		user_seq;
	Datum		result;

	call_begin(CALL_VOLATILE);
	policy_load_issue_info(policy_id, &policy);
	if (caller_kind() == CALLER_CUSTOMER && strcmp(policy.issue_method, "fcfs") != 0)
		coupon_error(REASON_WRONG_TENANT, json_id("policy_id", policy_id),
					 "customers may claim only first-come-first-served coupons");
	tenant_check_for(policy.merchant_id, user_id);

	if (key != NULL)
	{
		Datum		replay = idem_begin(&idem, policy.merchant_id, key,
										psprintf("issue|%lld|%s", (long long) policy_id,
												 user_id));

		if (replay != (Datum) 0)
		{
			spi_run(&replay_plan, &replay, NULL, true, 1);
			result = spi_result_row(fcinfo);
			call_end(CALL_VOLATILE);
			PG_RETURN_DATUM(tenant_coupon_shown(result));
		}
	}

	if (strcmp(policy.issue_method, "code") == 0)
		coupon_error(REASON_WRONG_ISSUE_METHOD, json_id("policy_id", policy_id),
					 "policy %lld issues coupons by code only", (long long) policy_id);
	policy_check_issuable(&policy);
	user_seq = policy_take_user_slot(&policy, user_id);
	if (policy.has_total && !take_stock(policy_id, policy.total_quantity))
		coupon_error(REASON_SOLD_OUT, json_id("policy_id", policy_id),
					 "policy %lld is sold out", (long long) policy_id);

	result = insert_coupon(&policy, user_id, user_seq);
	if (key != NULL)
		idem_finish(&idem, result);
	result = SPI_datumTransfer(result, false, -1);
	call_end(CALL_VOLATILE);
	PG_RETURN_DATUM(tenant_coupon_shown(result));
}
