/*
 * relay_cache.c
 *		The Redis read caches the relay keeps (docs/events.md): a hash per
 *		policy (status, total, remaining) and per balance coupon (balance,
 *		status), refreshed after each batch of events for what the batch
 *		touched, and refilled from the tables when rebuild_redis_caches()
 *		asks.  Also the Redis key names under coupon.redis_prefix, which
 *		the event stream shares.
 *
 * The caches are never authoritative: the relay worker decides what a
 * failure here means (relay_worker.c).  Everything runs inside its
 * transactions and SPI.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"

#include "coupon.h"
#include "relay.h"
#include "relay_cache.h"
#include "spi_util.h"

/* caches refilled per statement by a rebuild */
#define REBUILD_CHUNK		5000

/* what a policy's and a balance coupon's cache hold (append_*_cache read them) */
#define POLICY_CACHE_SELECT "SELECT p.id, p.status, p.total_quantity," \
	" (SELECT sum(s.remaining) FROM coupon.policy_stock s WHERE s.policy_id = p.id)::bigint" \
	" FROM coupon.policy p"
#define BALANCE_CACHE_SELECT "SELECT id, balance, status FROM coupon.coupon WHERE balance IS NOT NULL"

static SavedPlan policy_cache_plan = {
	.sql = POLICY_CACHE_SELECT " WHERE p.id = ANY($1)",
	.nargs = 1,
	.argtypes = {INT8ARRAYOID}
};

static SavedPlan balance_cache_plan = {
	.sql = BALANCE_CACHE_SELECT " AND id = ANY($1)",
	.nargs = 1,
	.argtypes = {INT8ARRAYOID}
};

static SavedPlan all_policies_plan = {
	.sql = POLICY_CACHE_SELECT " WHERE p.id > $1 ORDER BY p.id LIMIT $2",
	.nargs = 2,
	.argtypes = {INT8OID, INT8OID}
};

static SavedPlan all_balances_plan = {
	.sql = BALANCE_CACHE_SELECT " AND id > $1 ORDER BY id LIMIT $2",
	.nargs = 2,
	.argtypes = {INT8OID, INT8OID}
};

/* a Redis key: the configured prefix, ':' and the rest */
char *
relay_key(const char *fmt,...)
{
	StringInfoData key;
	va_list		args;

	initStringInfo(&key);
	appendStringInfo(&key, "%s:", coupon_redis_prefix);
	for (;;)
	{
		int			needed;

		va_start(args, fmt);
		needed = appendStringInfoVA(&key, fmt, args);
		va_end(args);
		if (needed == 0)
			break;
		enlargeStringInfo(&key, needed);
	}
	return key.data;
}

/* queue an HSET of a policy's cache from row `row` of the current result */
static void
append_policy_cache(RedisLink *link, int row)
{
	char	   *key = relay_key("policy:" INT64_FORMAT, spi_int64(row, 1, NULL));
	char	   *total = spi_isnull(row, 3) ? "" : psprintf(INT64_FORMAT, spi_int64(row, 3, NULL));
	char	   *left = spi_isnull(row, 4) ? "" : psprintf(INT64_FORMAT, spi_int64(row, 4, NULL));
	const char *argv[] = {"HSET", key, "status", spi_text(row, 2), "total", total, "remaining", left};

	redis_append(link, lengthof(argv), argv, NULL);
}

/* queue an HSET of a balance coupon's cache from row `row` */
static void
append_balance_cache(RedisLink *link, int row)
{
	char	   *key = relay_key("balance:" INT64_FORMAT, spi_int64(row, 1, NULL));
	char	   *balance = psprintf(INT64_FORMAT, spi_int64(row, 2, NULL));
	const char *argv[] = {"HSET", key, "balance", balance, "status", spi_text(row, 3)};

	redis_append(link, lengthof(argv), argv, NULL);
}

/* queue the cache refreshes of what a batch touched (see relay_cache.h) */
void
relay_cache_refresh(RedisLink *link, Datum policy_ids, Datum coupon_ids)
{
	uint64		n;

	if (policy_ids != (Datum) 0)
	{
		n = spi_run(&policy_cache_plan, &policy_ids, NULL, true, 0);
		for (uint64 i = 0; i < n; i++)
			append_policy_cache(link, (int) i);
	}
	if (coupon_ids != (Datum) 0)
	{
		n = spi_run(&balance_cache_plan, &coupon_ids, NULL, true, 0);
		for (uint64 i = 0; i < n; i++)
			append_balance_cache(link, (int) i);
	}
}

/* queue the HSETs of one chunk of caches (a result of `plan`); the last id read */
static int64
append_cache_chunk(RedisLink *link, SavedPlan *plan, Datum *args, uint64 *n,
				   void (*append) (RedisLink *, int))
{
	int64		last;

	*n = spi_run(plan, args, NULL, true, 0);
	for (uint64 i = 0; i < *n; i++)
		append(link, (int) i);
	last = (*n > 0) ? spi_int64(*n - 1, 1, NULL) : 0;
	SPI_freetuptable(SPI_tuptable);
	return last;
}

/*
 * Empty the caches and refill them from the tables, a chunk at a time, the
 * memory of each chunk given back before the next.
 */
bool
relay_cache_rebuild(RedisLink *link, char *err, size_t errlen)
{
	SavedPlan  *plans[] = {&all_policies_plan, &all_balances_plan};
	void		(*appends[]) (RedisLink *, int) = {append_policy_cache, append_balance_cache};
	MemoryContext chunk_cxt = AllocSetContextCreate(CurrentMemoryContext, "coupon relay rebuild",
													ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(chunk_cxt);
	bool		ok = redis_delete_matching(link, relay_key("policy:*"), err, errlen) &&
		redis_delete_matching(link, relay_key("balance:*"), err, errlen);

	for (int k = 0; k < 2 && ok; k++)
	{
		Datum		args[2] = {Int64GetDatum(0), Int64GetDatum(REBUILD_CHUNK)};
		uint64		n;

		do
		{
			args[0] = Int64GetDatum(append_cache_chunk(link, plans[k], args, &n, appends[k]));
			ok = redis_flush(link, err, errlen);
			MemoryContextReset(chunk_cxt);
		} while (ok && n == REBUILD_CHUNK);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(chunk_cxt);
	return ok;
}
