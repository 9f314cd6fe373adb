/*
 * factcache.c
 *		validate()'s and issue()'s backend-local copies of the policy and
 *		merchant facts they read on every call, kept on PostgreSQL's cache
 *		invalidation.
 *
 * Of validate()'s three primary-key probes, two (a policy, a merchant) read
 * rows that change a few times a day; skipping them made validate() about
 * a third cheaper (docs/benchmarks.md).  issue() reads the same two rows
 * before it takes stock (since 0.11).  Each backend keeps the facts it
 * read in small hash tables: validate()'s view of a policy, issue()'s, and
 * each merchant's state.  The triggers policy_fact_change and
 * merchant_fact_change (AFTER UPDATE, ENABLE ALWAYS) call
 * coupon.note_fact_change(), which registers a relcache invalidation of
 * the changed table: PostgreSQL sends it when the transaction commits (at
 * COMMIT PREPARED for a prepared one, from whichever session runs it),
 * processes it locally at once and again on abort, and every backend
 * drops its copies when it arrives (the one invalidation path of
 * fetch.c).
 *
 * A commit becomes visible a moment before its invalidation is sent.  To
 * close that gap the trigger also takes SHARE on coupon.fact_change_guard,
 * held until the transaction ends, which is after the invalidation went
 * out; a reader uses its copies only when it can take ROW EXCLUSIVE on it
 * at once (the lock manager's fast path, released at once), and taking it
 * reads the invalidations that arrived.  So no change that the caller's
 * snapshot sees is missing from the copies.  Copies are filled from the
 * newest snapshot, so they may be newer than the caller's, which READ
 * COMMITTED callers accept; REPEATABLE READ and SERIALIZABLE callers
 * (snapshot rules, predicate locks) and standbys (no such lock is
 * replayed) read the rows.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "coupon.h"
#include "factcache.h"
#include "fetch.h"

PG_FUNCTION_INFO_V1(coupon_note_fact_change);

/* past this many copies of one kind, forget them all and start again */
#define FACTCACHE_MAX_ENTRIES 4096

typedef struct PolicyCopy
{
	int64		id;				/* hash key */
	CouponFacts facts;			/* only the policy part set; allowed in cache_cxt */
} PolicyCopy;

typedef struct MerchantCopy
{
	int64		id;				/* hash key */
	bool		active;
} MerchantCopy;

typedef struct IssueCopy
{
	int64		id;				/* hash key */
	PolicyIssueInfo info;		/* merchant_active not set: the merchant's copy has it */
} IssueCopy;

static MemoryContext cache_cxt = NULL;
static HTAB *policies = NULL;
static HTAB *merchants = NULL;
static HTAB *issues = NULL;

/*
 * Found with the triggers (InvalidOid: look again): the guard relation,
 * and whether both triggers fire on every change.
 */
static Oid	guard_relid = InvalidOid;
static bool triggers_ok = false;

/*
 * Resets so far, and as of the last factcache_open(): a copy read before an
 * invalidation that arrives during the call (opening a relation, or
 * detoasting, reads them) must not be kept.
 */
static uint64 resets = 0;
static uint64 resets_at_open = 0;

/* is the named trigger on the table, firing even in replica sessions? */
static bool
trigger_fires_always(Relation rel, const char *name)
{
	TriggerDesc *td = rel->trigdesc;

	for (int i = 0; td != NULL && i < td->numtriggers; i++)
		if (strcmp(td->triggers[i].tgname, name) == 0)
			return td->triggers[i].tgenabled == TRIGGER_FIRES_ALWAYS;
	return false;
}

/*
 * Check once (until an invalidation of the extension's tables) that the
 * guard exists and that both triggers fire on every change: a database
 * still at 0.7, or a trigger a superuser disabled, turns the copies off
 * instead of letting them go stale.
 */
static bool
check_triggers(void)
{
	Relation	policy;
	Relation	merchant;
	Oid			guard;

	if (OidIsValid(guard_relid))
		return triggers_ok;
	policy = fetch_open(FETCH_POLICY, AccessShareLock);
	merchant = fetch_open(FETCH_MERCHANT, AccessShareLock);
	guard = get_relname_relid("fact_change_guard", RelationGetNamespace(policy));
	triggers_ok = OidIsValid(guard) &&
		trigger_fires_always(policy, "policy_fact_change") &&
		trigger_fires_always(merchant, "merchant_fact_change");
	table_close(merchant, NoLock);
	table_close(policy, NoLock);
	guard_relid = OidIsValid(guard) ? guard : InvalidOid;
	return triggers_ok;
}

/* forget every copy; the tables are made again on the next put */
static void
forget_all(void)
{
	if (cache_cxt != NULL)
		MemoryContextReset(cache_cxt);
	policies = merchants = issues = NULL;
}

/* a hash table of copies keyed by id, in the cache's context */
static HTAB *
make_table(const char *name, Size entrysize)
{
	HASHCTL		ctl;

	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(CacheMemoryContext, "coupon fact cache",
										  ALLOCSET_SMALL_SIZES);
	ctl.keysize = sizeof(int64);
	ctl.entrysize = entrysize;
	ctl.hcxt = cache_cxt;
	return hash_create(name, 64, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* may this call use and fill the copies? (see factcache.h) */
bool
factcache_open(void)
{
	Oid			guard;

	if (IsolationUsesXactSnapshot() || RecoveryInProgress() || !check_triggers())
		return false;
	/* a change in flight holds SHARE on the guard until its invalidation is out */
	guard = guard_relid;
	if (!ConditionalLockRelationOid(guard, RowExclusiveLock))
		return false;
	/* taking it read the invalidations that arrived; it is not needed after */
	UnlockRelationOid(guard, RowExclusiveLock);
	/* one just read may have forgotten the copies, and the guard with them */
	resets_at_open = resets;
	return OidIsValid(guard_relid);
}

/* the copy of `id` in `table`, or NULL */
static void *
find_copy(HTAB *table, int64 id)
{
	return table == NULL ? NULL : hash_search(table, &id, HASH_FIND, NULL);
}

/* a new (or the old) copy of `id` in *table, made when missing or full */
static void *
enter_copy(HTAB **table, const char *name, Size entrysize, int64 id)
{
	if (*table != NULL && hash_get_num_entries(*table) >= FACTCACHE_MAX_ENTRIES)
		forget_all();
	if (*table == NULL)
		*table = make_table(name, entrysize);
	return hash_search(*table, &id, HASH_ENTER, NULL);
}

/* an allowed-merchants array copied into `cxt` */
static const int64_t *
copy_ids(MemoryContext cxt, const int64_t *ids, int n)
{
	int64_t    *copy = MemoryContextAlloc(cxt, sizeof(int64_t) * Max(n, 1));

	memcpy(copy, ids, sizeof(int64_t) * n);
	return copy;
}

/*
 * *f as read from policy_id, from its copy: the policy part set, the rest
 * zero; false if there is no copy.
 */
bool
factcache_get_policy(int64 policy_id, CouponFacts *f)
{
	PolicyCopy *copy = find_copy(policies, policy_id);

	if (copy == NULL)
		return false;
	*f = copy->facts;
	/* the caller's own array: an invalidation may empty the cache */
	if (f->allowed != NULL)
		f->allowed = copy_ids(CurrentMemoryContext, f->allowed, f->n_allowed);
	return true;
}

/* keep *f, holding only policy_id's part (a budgeted policy is not kept) */
void
factcache_put_policy(int64 policy_id, const CouponFacts *f)
{
	PolicyCopy *copy;

	if (f->has_budget || resets != resets_at_open)
		return;					/* budget_used changes with every hold; or stale */
	copy = enter_copy(&policies, "coupon policy copies", sizeof(PolicyCopy), policy_id);
	copy->facts = *f;
	if (f->allowed != NULL)
		copy->facts.allowed = copy_ids(cache_cxt, f->allowed, f->n_allowed);
}

/*
 * Is the merchant active (and does it exist)?  From its copy when `cached`
 * (factcache_open() said so), which a miss fills from the newest snapshot;
 * otherwise read under the call's.
 */
bool
factcache_load_merchant(int64 merchant_id, bool cached, bool *exists)
{
	MerchantCopy *copy = cached ? find_copy(merchants, merchant_id) : NULL;
	bool		active;

	*exists = true;
	if (copy != NULL)
		return copy->active;
	active = fetch_merchant_active(merchant_id, cached ? FETCH_NEWEST : FETCH_READ, exists);
	if (cached && *exists && resets == resets_at_open)
	{
		copy = enter_copy(&merchants, "coupon merchant copies", sizeof(MerchantCopy), merchant_id);
		copy->active = active;
	}
	return active;
}

/* *info as issue() read it from policy_id, from its copy; false if none */
bool
factcache_get_issue_info(int64 policy_id, PolicyIssueInfo *info)
{
	IssueCopy  *copy = find_copy(issues, policy_id);

	if (copy == NULL)
		return false;
	*info = copy->info;
	return true;
}

/*
 * Keep what issue() read of a policy (all of it is in the struct); not in
 * a transaction that has written: it may have created the policy, and
 * rolling that back sends no invalidation, while issue() is asked for a
 * policy by its id alone.
 */
void
factcache_put_issue_info(int64 policy_id, const PolicyIssueInfo *info)
{
	IssueCopy  *copy;

	if (resets != resets_at_open || TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;					/* read before an invalidation of this call, or see above */
	copy = enter_copy(&issues, "coupon issue copies", sizeof(IssueCopy), policy_id);
	copy->info = *info;
}

/*
 * Trigger coupon.note_fact_change(): every backend's copies of the table's
 * rows go when this transaction ends, and readers keep off them until then.
 */
Datum
coupon_note_fact_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("note_fact_change() must be called as a trigger")));
	if (!OidIsValid(guard_relid))
		(void) check_triggers();
	if (OidIsValid(guard_relid))
		LockRelationOid(guard_relid, ShareLock);
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}

/* forget every copy and what was found of the triggers (fetch.c's invalidation) */
void
factcache_reset(void)
{
	forget_all();
	guard_relid = InvalidOid;
	resets++;
}
