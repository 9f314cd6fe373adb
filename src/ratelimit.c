/*
 * ratelimit.c
 *		Requests per minute of a merchant's clients, counted in shared
 *		memory: a token bucket per client (docs/postgrest.md).
 *
 * A bucket holds up to a minute's worth of requests and refills at the
 * merchant's rate, so a client may burst that many at once and then go on
 * at the rate.  Buckets live in a fixed table of slots keyed by a 64-bit
 * hash of the merchant and the client, probed linearly; when every probed
 * slot is taken, the one used longest ago is reused (its client starts
 * again with a full bucket).  Without shared memory (not preloaded) nothing
 * is limited.
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "coupon.h"
#include "fetch.h"
#include "shmem.h"
#include "tenant.h"

PG_FUNCTION_INFO_V1(coupon_take_request_token);

#define RATE_PROBE 8

/* the slot of `key`, or the one to reuse for it; caller holds the lock */
static RateSlot *
find_bucket(CouponShared *s, uint64 key, bool *found)
{
	uint32		start = (uint32) (key % RATE_SLOTS);
	RateSlot   *victim = NULL;

	for (int i = 0; i < RATE_PROBE; i++)
	{
		RateSlot   *slot = &s->rate[(start + i) % RATE_SLOTS];

		if (slot->key == key || slot->key == 0)
		{
			*found = (slot->key == key);
			return slot;
		}
		if (victim == NULL || slot->at < victim->at)
			victim = slot;
	}
	*found = false;
	return victim;
}

/*
 * Take one request from the client's bucket: 0 when it may go on now (and
 * is counted), else how many milliseconds until a request is back.
 */
static int64
take_token(const char *client, int per_minute)
{
	CouponShared *s = coupon_shared();
	uint64		key;
	RateSlot   *slot;
	bool		found;
	TimestampTz now = GetCurrentTimestamp();
	int64		wait_ms = 0;

	if (s == NULL)
		return 0;
	key = hash_bytes_extended((const unsigned char *) client, strlen(client), 0x72617465ULL);
	if (key == 0)
		key = 1;
	LWLockAcquire(s->throttle_lock, LW_EXCLUSIVE);
	slot = find_bucket(s, key, &found);
	if (!found)
	{
		slot->key = key;
		slot->tokens = per_minute;
	}
	else
		slot->tokens = Min((double) per_minute,
						   slot->tokens + (double) (now - slot->at) * per_minute / (60.0 * USECS_PER_SEC));
	slot->at = now;
	if (slot->tokens >= 1.0)
		slot->tokens -= 1.0;
	else
		wait_ms = (int64) ceil((1.0 - slot->tokens) * 60000.0 / per_minute);
	LWLockRelease(s->throttle_lock);
	return wait_ms;
}

/*
 * coupon.take_request_token(merchant_id, client): for pre_request(), the
 * milliseconds the client must wait before this request (0: go on, and it
 * is counted) under the merchant's rate_limit_per_minute (NULL: no limit).
 */
Datum
coupon_take_request_token(PG_FUNCTION_ARGS)
{
	static const char *const cols[] = {"rate_limit_per_minute"};
	int64		merchant_id;
	char	   *client;
	Datum		per_minute;
	bool		isnull = true;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT64(0);
	merchant_id = PG_GETARG_INT64(0);
	/* only for the caller's own merchant: nobody drains another's buckets */
	tenant_check(merchant_id);
	client = psprintf("%u:" INT64_FORMAT ":%s", MyDatabaseId, merchant_id,
					  text_to_cstring(PG_GETARG_TEXT_PP(1)));
	/* one primary-key probe under the request's snapshot, as validate() reads */
	if (!fetch_columns(FETCH_MERCHANT, merchant_id, 1, cols, &per_minute, &isnull) || isnull)
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(take_token(client, DatumGetInt32(per_minute)));
}
