/*
 * throttle.c
 *		Counting failed code attempts per user in shared memory, where a
 *		rolled-back transaction cannot erase them.
 *
 * A fixed table of slots keyed by a 64-bit hash of the user id, probed
 * linearly; when every probed slot is busy the one whose window started
 * earliest is reused.  Without shared memory (not preloaded) nothing is
 * throttled and a warning says so once per backend.  The attempts refused
 * are counted per kind (codes, client ids) for throttle_status().
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "coupon.h"
#include "shmem.h"
#include "throttle.h"

/* the 64-bit hash of a user id; 0 is reserved for empty slots */
static uint64
user_key(const char *user_id)
{
	uint64		h = hash_bytes_extended((const unsigned char *) user_id,
										strlen(user_id), 0x636f75706f6eULL);

	return h == 0 ? 1 : h;
}

/* the shared table, warning once when it is missing */
static CouponShared *
throttle_table(void)
{
	static bool warned = false;
	CouponShared *s = coupon_shared();

	if (s == NULL && !warned)
	{
		ereport(WARNING,
				(errmsg("wrong-code throttling is off"),
				 errhint("Add coupon to shared_preload_libraries.")));
		warned = true;
	}
	return s;
}

/* the slot of `key` (or the one to reuse for it); caller holds the lock */
static ThrottleSlot *
find_slot(CouponShared *s, uint64 key, bool *found)
{
	uint32		start = (uint32) (key % THROTTLE_SLOTS);
	ThrottleSlot *victim = NULL;

	for (int i = 0; i < THROTTLE_PROBE; i++)
	{
		ThrottleSlot *slot = &s->throttle[(start + i) % THROTTLE_SLOTS];

		if (slot->key == key)
		{
			*found = true;
			return slot;
		}
		if (slot->key == 0)
		{
			*found = false;
			return slot;
		}
		if (victim == NULL || slot->window_start < victim->window_start)
			victim = slot;
	}
	*found = false;
	return victim;
}

/* is the slot's window still open at `now`? */
static bool
window_open(const ThrottleSlot *slot, TimestampTz now)
{
	return now - slot->window_start <
		(TimestampTz) coupon_code_failure_window * USECS_PER_SEC;
}

/*
 * Start an attempt of the user: false if the user already has too many
 * recent failures; otherwise the attempt is counted as a failure at once,
 * in the same step as the check, so concurrent attempts can never get past
 * the limit together.  A successful attempt is forgiven afterwards
 * (throttle_forgive); one whose transaction fails later stays counted.
 */
bool
throttle_begin_attempt(const char *user_id, ThrottleKind kind)
{
	CouponShared *s = throttle_table();
	TimestampTz now = GetCurrentTimestamp();
	uint64		key;
	bool		found;
	bool		allowed = true;
	ThrottleSlot *slot;

	if (s == NULL)
		return true;
	key = user_key(user_id);
	LWLockAcquire(s->throttle_lock, LW_EXCLUSIVE);
	slot = find_slot(s, key, &found);
	if (!found || !window_open(slot, now))
	{
		slot->key = key;
		slot->window_start = now;
		slot->failures = 0;
	}
	if (slot->failures >= coupon_code_max_failures)
		allowed = false;
	else
		slot->failures++;
	LWLockRelease(s->throttle_lock);
	if (!allowed)
		pg_atomic_fetch_add_u64(&s->throttle_blocked[kind], 1);
	return allowed;
}

/* an attempt begun with throttle_begin_attempt succeeded: take its count back */
void
throttle_forgive(const char *user_id)
{
	CouponShared *s = throttle_table();
	uint64		key;
	bool		found;
	ThrottleSlot *slot;

	if (s == NULL)
		return;
	key = user_key(user_id);
	LWLockAcquire(s->throttle_lock, LW_EXCLUSIVE);
	slot = find_slot(s, key, &found);
	if (found && slot->failures > 0)
		slot->failures--;
	LWLockRelease(s->throttle_lock);
}

PG_FUNCTION_INFO_V1(coupon_throttle_status);

/*
 * coupon.throttle_status(): attempts refused by the throttle since the
 * server started, per kind, for monitoring; no rows when not preloaded
 * (nothing is throttled then).  Atomic reads: it never waits for the lock
 * that redeem_code() takes.
 */
Datum
coupon_throttle_status(PG_FUNCTION_ARGS)
{
	static const char *const kind_names[THROTTLE_KINDS] = {
		[THROTTLE_CODE] = "code",
		[THROTTLE_CLIENT] = "client",
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CouponShared *s = coupon_shared();

	InitMaterializedSRF(fcinfo, 0);
	if (s == NULL)
		return (Datum) 0;
	for (int k = 0; k < THROTTLE_KINDS; k++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(kind_names[k]);
		values[1] = Int64GetDatum((int64) pg_atomic_read_u64(&s->throttle_blocked[k]));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
