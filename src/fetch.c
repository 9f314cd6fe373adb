/*
 * fetch.c
 *		Reading, and row-locking, one row of the extension's tables by
 *		primary key (or another unique index) straight through the index,
 *		without SPI or the executor.
 *
 * validate() is called once per checkout screen and has to cost little more
 * than a trivial query: planning-free SPI still pays executor start-up for a
 * four-table join, while three or four primary-key probes cost a few index
 * page visits.  The same holds for the row locks of a checkout, which are
 * taken here the way SELECT ... FOR NO KEY UPDATE takes them, and for the
 * lookups a checkout or an issue makes before writing (rowwrite.c): the
 * order's other coupons, a coupon's live hold, a unit of stock.  The relation
 * and index ids are looked up once per backend and forgotten on any relcache
 * invalidation of them (cacheinval.c; DROP EXTENSION and a new CREATE
 * EXTENSION give new ids).
 *
 * Reads use the snapshot of the call context (callctx.c) and run as the
 * table's owner; a lock ends the call's statement.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "callctx.h"
#include "coupon.h"
#include "fetch.h"

/* the attribute numbers of one caller's column list, by its names array */
typedef struct ColumnMap
{
	const char *const *names;
	int			ncols;
	AttrNumber	attnums[FETCH_MAX_COLUMNS];
} ColumnMap;

#define MAPS_PER_TARGET 8

typedef struct FetchTarget
{
	const char *relname;
	const char *indexname;
	Oid			relid;
	Oid			indexid;
	int			nmaps;
	ColumnMap	maps[MAPS_PER_TARGET];
} FetchTarget;

static FetchTarget targets[FETCH_TABLE_COUNT] = {
	[FETCH_MERCHANT] = {"merchant", "merchant_pkey"},
	[FETCH_POLICY] = {"policy", "policy_pkey"},
	[FETCH_COUPON] = {"coupon", "coupon_pkey"},
	[FETCH_RESERVATION] = {"reservation", "reservation_pkey"},
	[FETCH_POLICY_STOCK] = {"policy_stock", "policy_stock_pkey"},
	/* not a primary key: unique among held reservations only */
	[FETCH_HELD_RESERVATION] = {"reservation", "reservation_one_hold_idx"},
	/* walked by fetch_walk(): every visible row of a key */
	[FETCH_ORDER_RESERVATIONS] = {"reservation", "reservation_order_idx"},
	[FETCH_USER_COUPONS] = {"coupon", "coupon_policy_user_idx"},
	[FETCH_OUTBOX] = {"outbox", "outbox_pkey"},
	[FETCH_OUTBOX_QUEUE] = {"outbox_queue", NULL},
};

/* forget every cached id and column map (cacheinval.c) */
void
fetch_reset(void)
{
	for (int i = 0; i < FETCH_TABLE_COUNT; i++)
	{
		targets[i].relid = targets[i].indexid = InvalidOid;
		targets[i].nmaps = 0;
	}
}

/*
 * Look up the relation and primary-key index of a table (the relation
 * alone for one without an index) unless known; false if missing.
 */
static bool
find_target(FetchTarget *t)
{
	Oid			nsp;
	Oid			relid;
	Oid			indexid = InvalidOid;

	if (OidIsValid(t->relid) && (t->indexname == NULL || OidIsValid(t->indexid)))
		return true;
	nsp = get_namespace_oid("coupon", false);
	relid = get_relname_relid(t->relname, nsp);
	if (t->indexname != NULL)
		indexid = get_relname_relid(t->indexname, nsp);
	if (!OidIsValid(relid) || (t->indexname != NULL && !OidIsValid(indexid)))
		return false;
	t->relid = relid;
	t->indexid = indexid;
	cacheinval_watch(relid);
	if (OidIsValid(indexid))
		cacheinval_watch(indexid);
	return true;
}

/* the relation and primary-key index of a table, looked up once */
static FetchTarget *
fetch_target(FetchTable table)
{
	FetchTarget *t = &targets[table];

	if (!find_target(t))
		elog(ERROR, "relation coupon.%s or its primary key is missing", t->relname);
	return t;
}

/* does the table exist?  see fetch.h */
bool
fetch_present(FetchTable table)
{
	return find_target(&targets[table]);
}

/* open a table of the extension, by its cached id */
Relation
fetch_open(FetchTable table, LOCKMODE lockmode)
{
	return table_open(fetch_target(table)->relid, lockmode);
}

/*
 * The attribute numbers of `names` in the table, resolved by name once per
 * names array (callers pass static arrays) and kept until the table's ids
 * are forgotten; a column that does not exist is an internal error.
 */
static const AttrNumber *
column_map(FetchTarget *t, TupleDesc desc, int ncols, const char *const *names,
		   AttrNumber *scratch)
{
	ColumnMap  *map = NULL;

	if (ncols > FETCH_MAX_COLUMNS)
		elog(ERROR, "fetch_columns reads at most %d columns", FETCH_MAX_COLUMNS);
	for (int i = 0; i < t->nmaps; i++)
		if (t->maps[i].names == names && t->maps[i].ncols == ncols)
			return t->maps[i].attnums;
	if (t->nmaps < MAPS_PER_TARGET)
		map = &t->maps[t->nmaps];
	for (int i = 0; i < ncols; i++)
	{
		int			attnum = SPI_fnumber(desc, names[i]);

		if (attnum <= 0)
			elog(ERROR, "coupon.%s has no column \"%s\"", t->relname, names[i]);
		scratch[i] = (AttrNumber) attnum;
	}
	if (map == NULL)
		return scratch;
	memcpy(map->attnums, scratch, sizeof(AttrNumber) * ncols);
	map->names = names;
	map->ncols = ncols;
	t->nmaps++;
	return map->attnums;
}

/* column_map() for the other parts of the module (rowwrite.c) */
const AttrNumber *
fetch_attnums(FetchTable table, TupleDesc desc, int ncols, const char *const *names,
			  AttrNumber *scratch)
{
	return column_map(&targets[table], desc, ncols, names, scratch);
}

/* copy the columns `names` of the row in `slot` out of it */
static void
copy_columns(FetchTarget *t, TupleDesc desc, TupleTableSlot *slot, int ncols,
			 const char *const *names, Datum *values, bool *nulls)
{
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums = column_map(t, desc, ncols, names, scratch);

	slot_getallattrs(slot);
	for (int i = 0; i < ncols; i++)
	{
		int			attnum = attnums[i];
		Form_pg_attribute att = TupleDescAttr(desc, attnum - 1);

		nulls[i] = slot->tts_isnull[attnum - 1];
		values[i] = nulls[i] ? (Datum) 0
			: datumCopy(slot->tts_values[attnum - 1], att->attbyval, att->attlen);
	}
}

/*
 * Row-lock the version of a row that the index scan found, FOR NO KEY
 * UPDATE, as the executor's LockRows node does: under READ COMMITTED the
 * latest version is locked (and left in the slot) even if the row changed
 * after the snapshot; under REPEATABLE READ or SERIALIZABLE such a change
 * is a serialization failure.  Returns FETCH_FOUND, FETCH_BUSY (skip_locked
 * and another transaction holds it) or FETCH_MISSING (deleted meanwhile).
 */
static FetchResult
lock_row(Relation rel, TupleTableSlot *slot, Snapshot snapshot, bool skip_locked)
{
	ItemPointerData tid = slot->tts_tid;
	TM_FailureData tmfd;
	uint8		flags = TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS;
	TM_Result	res;

	if (!IsolationUsesXactSnapshot())
		flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
	res = table_tuple_lock(rel, &tid, snapshot, slot, GetCurrentCommandId(true),
						   LockTupleNoKeyExclusive,
						   skip_locked ? LockWaitSkip : LockWaitBlock, flags, &tmfd);
	if (res == TM_Ok)
		return FETCH_FOUND;
	if (res == TM_WouldBlock)
		return FETCH_BUSY;
	if ((res == TM_Updated || res == TM_Deleted) && IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (res != TM_Deleted)
		elog(ERROR, "unexpected table_tuple_lock status %d", (int) res);
	return FETCH_MISSING;
}

/*
 * The snapshot of a read: the call's, or for FETCH_NEWEST (filling
 * validate()'s copies, which must be no older than any statement's
 * snapshot) what a statement starting now would see.  Registered; the
 * caller unregisters it.
 */
static Snapshot
read_snapshot(FetchHow how)
{
	if (how == FETCH_NEWEST)
		return RegisterSnapshot(GetLatestSnapshot());
	return RegisterSnapshot(GetActiveSnapshot());
}

/*
 * Find the row whose primary key is `keys` under the call's snapshot, lock
 * it if asked, copy its columns, and say where the version it found (or
 * locked) is.  With no keys, lock the version at *tid instead, which a read
 * under the same snapshot found: the one the index scan would find again.
 */
static FetchResult
fetch_by_key(FetchTable table, int nkeys, ScanKey keys, FetchHow how, int ncols,
			 const char *const *names, Datum *values, bool *nulls, ItemPointer tid)
{
	FetchTarget *t = fetch_target(table);

	/*
	 * Copy the ids first: opening the table processes invalidations, and
	 * the callback may clear the cache under our feet.
	 */
	Oid			relid = t->relid;
	Oid			indexid = t->indexid;
	bool		locking = (how == FETCH_LOCK || how == FETCH_LOCK_SKIP);
	Relation	rel = table_open(relid, locking ? RowShareLock : AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = read_snapshot(how);
	FetchResult result = FETCH_FOUND;
	CallUser	caller;

	Assert(nkeys > 0 || locking);
	call_become_owner(rel, &caller);
	if (nkeys > 0)
	{
		Relation	index = index_open(indexid, AccessShareLock);
		IndexScanDesc scan = index_beginscan(rel, index, snapshot, nkeys, 0);

		index_rescan(scan, keys, nkeys, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, slot))
			result = FETCH_MISSING;
		index_endscan(scan);
		/* like the executor, keep the locks until the transaction ends */
		index_close(index, NoLock);
	}
	else
		slot->tts_tid = *tid;

	if (result == FETCH_FOUND && locking)
		result = lock_row(rel, slot, snapshot, how == FETCH_LOCK_SKIP);
	/* t may have been reset by the opens above; the map is rebuilt then */
	if (result == FETCH_FOUND && ncols > 0)
		copy_columns(t, RelationGetDescr(rel), slot, ncols, names, values, nulls);
	if (result == FETCH_FOUND && tid != NULL)
		*tid = slot->tts_tid;

	call_restore_user(&caller);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	if (locking && result == FETCH_FOUND)
		call_next_statement();
	return result;
}

/* lock a row version that a FETCH_READ in this statement found; see fetch.h */
FetchResult
fetch_lock_found(FetchTable table, bool skip_locked, int ncols, const char *const *names,
				 Datum *values, bool *nulls, ItemPointer tid)
{
	return fetch_by_key(table, 0, NULL, skip_locked ? FETCH_LOCK_SKIP : FETCH_LOCK, ncols,
						names, values, nulls, tid);
}

/* fetch_by_key() for the tables whose primary key is one bigint id */
FetchResult
fetch_row(FetchTable table, int64 id, FetchHow how, int ncols,
		  const char *const *names, Datum *values, bool *nulls, ItemPointer tid)
{
	ScanKeyData key;

	Assert(table != FETCH_POLICY_STOCK);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	return fetch_by_key(table, 1, &key, how, ncols, names, values, nulls, tid);
}

/* fetch_by_key() for one stock shard of a policy */
FetchResult
fetch_stock_row(int64 policy_id, int32 shard, FetchHow how, int ncols,
				const char *const *names, Datum *values, bool *nulls, ItemPointer tid)
{
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(policy_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(shard));
	return fetch_by_key(FETCH_POLICY_STOCK, 2, keys, how, ncols, names, values, nulls, tid);
}

/* fetch_row() for callers that do not need to know where the row is */
FetchResult
fetch_columns_how(FetchTable table, int64 id, FetchHow how, int ncols,
				  const char *const *names, Datum *values, bool *nulls)
{
	return fetch_row(table, id, how, ncols, names, values, nulls, NULL);
}

/* columns of the row with primary key `id`; false if there is none */
bool
fetch_columns(FetchTable table, int64 id, int ncols, const char *const *names,
			  Datum *values, bool *nulls)
{
	return fetch_columns_how(table, id, FETCH_READ, ncols, names, values, nulls) == FETCH_FOUND;
}

/* is the merchant active, under `how`? (false, and *exists false, if there is none) */
bool
fetch_merchant_active(int64 merchant_id, FetchHow how, bool *exists)
{
	static const char *const cols[] = {"status"};
	Datum		v[1];
	bool		n[1];

	*exists = fetch_columns_how(FETCH_MERCHANT, merchant_id, how, 1, cols, v, n) == FETCH_FOUND;
	return *exists && strcmp(TextDatumGetCString(v[0]), "active") == 0;
}

/* stops a walk when it returns true */
typedef bool (*WalkVisit) (const Datum *values, const bool *nulls, void *arg);

/*
 * Walk the rows that the index of `table` finds for `keys`, visible in the
 * call's snapshot (with `latest`, the latest one even under REPEATABLE
 * READ), passing columns `names` of each to `visit` until it returns true.
 * Returns whether it did.
 */
static bool
fetch_walk(FetchTable table, int nkeys, ScanKey keys, int ncols, const char *const *names,
		   bool latest, WalkVisit visit, void *arg)
{
	FetchTarget *t = fetch_target(table);
	Oid			indexid = t->indexid;	/* the opens may reset t */
	Relation	rel = table_open(t->relid, AccessShareLock);
	Relation	index = index_open(indexid, AccessShareLock);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	Snapshot	snapshot = read_snapshot(latest ? FETCH_NEWEST : FETCH_READ);
	IndexScanDesc scan;
	bool		stopped = false;
	CallUser	caller;

	call_become_owner(rel, &caller);

	/* text keys compare under the index column's collation */
	for (int i = 0; i < nkeys; i++)
		keys[i].sk_collation = index->rd_indcollation[keys[i].sk_attno - 1];

	scan = index_beginscan(rel, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);
	while (!stopped && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		Datum		values[FETCH_MAX_COLUMNS];
		bool		nulls[FETCH_MAX_COLUMNS];

		copy_columns(t, RelationGetDescr(rel), slot, ncols, names, values, nulls);
		stopped = visit(values, nulls, arg);
	}
	index_endscan(scan);
	call_restore_user(&caller);
	UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, NoLock);
	table_close(rel, NoLock);
	return stopped;
}

/* fetch_order_has_other()'s visit: a live reservation of another coupon */
static bool
is_other_live_coupon(const Datum *values, const bool *nulls, void *arg)
{
	char	   *status = TextDatumGetCString(values[1]);

	return DatumGetInt64(values[0]) != *(int64 *) arg &&
		(strcmp(status, "held") == 0 || strcmp(status, "confirmed") == 0);
}

/*
 * Is a coupon other than `coupon_id` held or spent for this order?  The
 * caller holds the order's lock (call_advisory_lock), and the call's
 * snapshot, taken since, sees what the last holder of that lock committed.
 */
bool
fetch_order_has_other(int64 merchant_id, const char *order_id, int64 coupon_id)
{
	static const char *const cols[] = {"coupon_id", "status"};
	ScanKeyData keys[2];

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(merchant_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(order_id));
	return fetch_walk(FETCH_ORDER_RESERVATIONS, 2, keys, 2, cols, false, is_other_live_coupon,
					  &coupon_id);
}

/* fetch_user_coupons()'s visit: one more */
static bool
count_row(const Datum *values, const bool *nulls, void *arg)
{
	(*(int64 *) arg)++;
	return false;
}

/*
 * How many coupons of the policy the user holds, in any status.  The
 * caller holds the user's per-policy lock, and the latest snapshot of the
 * walk sees what the last holder of that lock committed, also under
 * REPEATABLE READ, whose own snapshot may predate it: counting only what
 * that one shows would pass the limit, or take a user_seq already taken.
 */
int64
fetch_user_coupons(int64 policy_id, const char *user_id)
{
	ScanKeyData keys[2];
	int64		n = 0;

	ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(policy_id));
	ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ, CStringGetTextDatum(user_id));
	fetch_walk(FETCH_USER_COUPONS, 2, keys, 0, NULL, true, count_row, &n);
	return n;
}
