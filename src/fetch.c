/*
 * fetch.c
 *		Reading one row of the extension's tables by primary key straight
 *		through its index, without SPI or the executor.
 *
 * validate() is called once per checkout screen and has to cost little more
 * than a trivial query: planning-free SPI still pays executor start-up for a
 * four-table join, while three or four primary-key probes cost a few index
 * page visits.  The relation and index ids are looked up once per backend
 * and forgotten on any relcache invalidation of them (DROP EXTENSION and a
 * new CREATE EXTENSION give new ids).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
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

#include "coupon.h"
#include "fetch.h"

/* the attribute numbers of one caller's column list, by its names array */
typedef struct ColumnMap
{
	const char *const *names;
	int			ncols;
	AttrNumber	attnums[FETCH_MAX_COLUMNS];
} ColumnMap;

#define MAPS_PER_TARGET 4

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
};

/* forget every cached id when one of them (or everything) is invalidated */
static void
fetch_relcache_callback(Datum arg, Oid relid)
{
	for (int i = 0; i < FETCH_TABLE_COUNT; i++)
	{
		if (relid == InvalidOid || relid == targets[i].relid || relid == targets[i].indexid)
		{
			for (int j = 0; j < FETCH_TABLE_COUNT; j++)
			{
				targets[j].relid = targets[j].indexid = InvalidOid;
				targets[j].nmaps = 0;
			}
			return;
		}
	}
}

/* register the relcache callback that forgets cached relation ids */
void
coupon_fetch_init(void)
{
	CacheRegisterRelcacheCallback(fetch_relcache_callback, (Datum) 0);
}

/* the relation and primary-key index of a table, looked up once */
static FetchTarget *
fetch_target(FetchTable table)
{
	FetchTarget *t = &targets[table];

	if (!OidIsValid(t->relid) || !OidIsValid(t->indexid))
	{
		Oid			nsp = get_namespace_oid("coupon", false);
		Oid			relid = get_relname_relid(t->relname, nsp);
		Oid			indexid = get_relname_relid(t->indexname, nsp);

		if (!OidIsValid(relid) || !OidIsValid(indexid))
			elog(ERROR, "relation coupon.%s or its primary key is missing", t->relname);
		t->relid = relid;
		t->indexid = indexid;
	}
	return t;
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

/* columns of the row with primary key `id`; false if there is none */
bool
fetch_columns(FetchTable table, int64 id, int ncols, const char *const *names,
			  Datum *values, bool *nulls)
{
	FetchTarget *t = fetch_target(table);

	/*
	 * Copy the ids first: opening the table processes invalidations, and
	 * the callback may clear the cache under our feet.
	 */
	Oid			relid = t->relid;
	Oid			indexid = t->indexid;
	Relation	rel = table_open(relid, AccessShareLock);
	Relation	index = index_open(indexid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	TupleTableSlot *slot = table_slot_create(rel, NULL);
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums;

	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(id));
	scan = index_beginscan(rel, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
	{
		/* t may have been reset by the opens above; the map is rebuilt then */
		attnums = column_map(t, desc, ncols, names, scratch);
		slot_getallattrs(slot);
		for (int i = 0; i < ncols; i++)
		{
			int			attnum = attnums[i];
			Form_pg_attribute att;

			att = TupleDescAttr(desc, attnum - 1);
			nulls[i] = slot->tts_isnull[attnum - 1];
			values[i] = nulls[i] ? (Datum) 0
				: datumCopy(slot->tts_values[attnum - 1], att->attbyval, att->attlen);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/* is the merchant active? (false, and *exists false, when there is none) */
bool
fetch_merchant_active(int64 merchant_id, bool *exists)
{
	static const char *const cols[] = {"status"};
	Datum		v[1];
	bool		n[1];

	*exists = fetch_columns(FETCH_MERCHANT, merchant_id, 1, cols, v, n);
	return *exists && strcmp(TextDatumGetCString(v[0]), "active") == 0;
}
