/*
 * factcache.c
 *		validate()'s backend-local copies of the policy and merchant facts it
 *		reads on every call, and the shared counters that say when a copy
 *		may have gone stale.
 *
 * Of validate()'s three primary-key probes, two (a policy, a merchant) read
 * rows that change a few times a day; skipping them made validate() about
 * a third cheaper (docs/benchmarks.md).  Each backend keeps the facts it
 * read in two small hash tables.  Triggers policy_fact_change and
 * merchant_fact_change (AFTER UPDATE, ENABLE ALWAYS) call
 * coupon.note_fact_change(), which counts the transaction as a writer in
 * flight; when it ends, it first advances the generation, then stops being
 * a writer.  A reader uses its copies only when it sees no writer and the
 * generation it made them under, and fills them from a snapshot taken after
 * reading both counters.  So a copy is never older than what a snapshot
 * taken before the check could see: a change the caller's statement sees
 * was committed before the check, and either still counted as a writer or
 * had advanced the generation by then.  A copy may be newer than the
 * caller's snapshot, which READ COMMITTED callers accept; REPEATABLE READ
 * and SERIALIZABLE callers (snapshot rules, predicate locks) read the rows.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "port/atomics.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "coupon.h"
#include "factcache.h"
#include "fetch.h"
#include "shmem.h"

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

static MemoryContext cache_cxt = NULL;
static HTAB *policies = NULL;
static HTAB *merchants = NULL;
static uint64 cache_generation = 0;

/* the triggers were found enabled on these relations (InvalidOid: check again) */
static Oid	checked_policy_relid = InvalidOid;
static Oid	checked_merchant_relid = InvalidOid;
static bool triggers_ok = false;

/* this transaction changed a policy or merchant and counts as a writer */
static bool wrote_facts = false;

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
 * Check once (until a relcache invalidation of either table) that both
 * triggers fire on every change: a database still at 0.5, or a trigger a
 * superuser disabled, turns the copies off instead of letting them go stale.
 */
static bool
check_triggers(void)
{
	Relation	policy;
	Relation	merchant;

	if (OidIsValid(checked_policy_relid) && OidIsValid(checked_merchant_relid))
		return triggers_ok;
	policy = fetch_open(FETCH_POLICY, AccessShareLock);
	merchant = fetch_open(FETCH_MERCHANT, AccessShareLock);
	triggers_ok = trigger_fires_always(policy, "policy_fact_change") &&
		trigger_fires_always(merchant, "merchant_fact_change");
	checked_policy_relid = RelationGetRelid(policy);
	checked_merchant_relid = RelationGetRelid(merchant);
	table_close(merchant, NoLock);
	table_close(policy, NoLock);
	return triggers_ok;
}

/* forget every copy; the tables are made again on the next put */
static void
forget_all(void)
{
	if (cache_cxt != NULL)
		MemoryContextReset(cache_cxt);
	policies = merchants = NULL;
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
	CouponShared *sh = coupon_shared();
	uint64		generation;

	/* a standby replays changes without triggers */
	if (sh == NULL || wrote_facts || IsolationUsesXactSnapshot() || RecoveryInProgress() ||
		!check_triggers())
		return false;
	if (pg_atomic_read_u32(&sh->facts.c.writers) != 0)
		return false;
	/* a writer advances the generation before it stops counting */
	pg_read_barrier();
	generation = pg_atomic_read_u64(&sh->facts.c.generation);
	if (generation != cache_generation)
	{
		forget_all();
		cache_generation = generation;
	}
	return true;
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

	if (f->has_budget)
		return;					/* budget_used changes with every hold */
	copy = enter_copy(&policies, "coupon policy copies", sizeof(PolicyCopy), policy_id);
	copy->facts = *f;
	if (f->allowed != NULL)
		copy->facts.allowed = copy_ids(cache_cxt, f->allowed, f->n_allowed);
}

/* whether the merchant is active, from its copy; false if none */
bool
factcache_get_merchant(int64 merchant_id, bool *active)
{
	MerchantCopy *copy = find_copy(merchants, merchant_id);

	if (copy == NULL)
		return false;
	*active = copy->active;
	return true;
}

/* keep an existing merchant's state */
void
factcache_put_merchant(int64 merchant_id, bool active)
{
	MerchantCopy *copy = enter_copy(&merchants, "coupon merchant copies",
									sizeof(MerchantCopy), merchant_id);

	copy->active = active;
}

/*
 * Trigger coupon.note_fact_change(): count this transaction as a writer
 * of facts until it ends.
 */
Datum
coupon_note_fact_change(PG_FUNCTION_ARGS)
{
	CouponShared *sh = coupon_shared();

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("note_fact_change() must be called as a trigger")));
	if (sh != NULL && !wrote_facts)
	{
		pg_atomic_fetch_add_u32(&sh->facts.c.writers, 1);
		wrote_facts = true;
	}
	return PointerGetDatum(NULL);
}

/*
 * At the end of a transaction that changed facts: advance the generation
 * (its changes are visible by now), then stop counting as a writer.  Such
 * a transaction cannot be prepared: its commit would come from another
 * session, which would not advance the generation.
 */
static void
factcache_xact_callback(XactEvent event, void *arg)
{
	CouponShared *sh;

	if (!wrote_facts)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that changed a coupon policy or merchant"),
					 errhint("Commit such changes in a transaction of their own.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			sh = coupon_shared();
			pg_atomic_fetch_add_u64(&sh->facts.c.generation, 1);
			pg_atomic_fetch_sub_u32(&sh->facts.c.writers, 1);
			wrote_facts = false;
			break;
		default:
			break;
	}
}

/* a table of the copies changed shape, was dropped, or its triggers changed */
static void
factcache_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == checked_policy_relid || relid == checked_merchant_relid)
	{
		checked_policy_relid = checked_merchant_relid = InvalidOid;
		/* the copies go at the next factcache_open(), not under a caller */
		cache_generation = PG_UINT64_MAX;
	}
}

/* register the transaction and relcache callbacks */
void
coupon_factcache_init(void)
{
	RegisterXactCallback(factcache_xact_callback, NULL);
	CacheRegisterRelcacheCallback(factcache_relcache_callback, (Datum) 0);
}
