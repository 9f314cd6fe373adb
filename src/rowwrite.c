/*
 * rowwrite.c
 *		Inserting and updating one row of the extension's tables through the
 *		executor's single-row entry points, without planning a statement.
 *
 * A checkout writes four rows (the hold, the coupon twice, the hold again).
 * As SQL statements, each write paid for starting and ending a query plan,
 * a CTE and a join that only found a row whose place the caller already
 * knew: more than the writes themselves.  Here a write goes through
 * ExecSimpleRelationInsert/Update, the entry points logical replication
 * applies changes with, which keep what a statement would do to the row:
 * NOT NULL and CHECK constraints, unique and partial indexes, HOT updates,
 * row triggers.  What this file adds is what the statement's expressions
 * did: the domain checks of the columns it sets, and the next value of an
 * identity column.
 *
 * What a statement would do and this does not: statement-level triggers
 * (the only ones on these tables are the guards against DELETE and
 * TRUNCATE), row-level security and privilege checks: a write runs as the
 * table's owner (call_become_owner), to whom neither applies, and is one
 * statement of the call (call_next_statement after it).  Column defaults are not
 * evaluated: a caller leaving out a column that has one is an error, so a
 * later version that adds such a column cannot have it silently left NULL.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "nodes/nodeFuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "callctx.h"
#include "coupon.h"
#include "outbox.h"
#include "pgcompat.h"
#include "rowwrite.h"

/* rows heap_multi_insert writes at once: the most slots a table keeps */
#define APPEND_CHUNK 64

/* what a write needs to know of a table's columns, found once per table */
typedef struct WriteCache
{
	Oid			relid;			/* the table this was built for; 0 = none */
	AttrNumber	identity;		/* its identity column, or 0 */
	Oid			identity_seq;	/* that column's sequence */
	Oid		   *domain;			/* per column: its domain, or InvalidOid */
	void	  **domain_extra;	/* per column: domain_check()'s cache */
	/* the table's CHECK constraints, compiled once; NULL: none, or not kept */
	ExprState **checks;
	/* the table's indexes, described once if every one can be (index_keepable) */
	int			nindexes;		/* -1: not known yet */
	Oid		   *index_oids;
	IndexInfo **index_infos;	/* NULL: described at each append */
	/* row_append's slots for heap_multi_insert, empty between appends */
	TupleTableSlot **slots;		/* room for APPEND_CHUNK */
	int			nslots;			/* made so far */
	TupleDesc	slot_desc;
} WriteCache;

static WriteCache caches[FETCH_TABLE_COUNT];
static MemoryContext cache_cxt = NULL;

/*
 * Set by an invalidation and acted on at the next write: it may arrive in
 * the middle of building a cache (catalog lookups take locks), so it must
 * not free what is being built.
 */
static bool cache_stale = false;

/*
 * Writes begun and not yet ended in the transaction writes_lxid, besides
 * the one asking: a reset while one is in progress (a trigger it fired
 * writes too) must not free the compiled constraints and index
 * descriptions that write holds.  A write cut short by an error is never
 * ended, so the count may err high until the transaction ends, which only
 * keeps a reset cache's memory until then.
 */
static int	writes_active = 0;
static LocalTransactionId writes_lxid = InvalidLocalTransactionId;

/* one write in progress */
typedef struct RowWrite
{
	Relation	rel;
	WriteCache *cache;
	EState	   *estate;
	ResultRelInfo *rri;
	MemoryContext caller;
	CallUser	user;
	OutboxCapture capture;		/* the row's event, captured by the write */
} RowWrite;

/* forget the column facts at the next write (cacheinval.c) */
void
rowwrite_reset(void)
{
	cache_stale = true;
}

/*
 * Can a compiled CHECK expression be kept from one write to the next?  Only
 * when it is made of nodes whose evaluation keeps nothing in the query's
 * memory (a hashed IN list, a row conversion or a sub-plan would) and
 * calls only built-in functions (an SQL or PL function keeps per-query
 * state in its FmgrInfo).
 */
static bool
check_not_keepable(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
		case T_Const:
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_RelabelType:
		case T_List:
			break;
		case T_OpExpr:
		case T_DistinctExpr:
			if (((OpExpr *) node)->opfuncid >= FirstNormalObjectId)
				return true;
			break;
		case T_FuncExpr:
			if (((FuncExpr *) node)->funcid >= FirstNormalObjectId)
				return true;
			break;
		case T_ScalarArrayOpExpr:
			if (OidIsValid(((ScalarArrayOpExpr *) node)->hashfuncid) ||
				((ScalarArrayOpExpr *) node)->opfuncid >= FirstNormalObjectId)
				return true;
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, check_not_keepable, context);
}

/*
 * The table's CHECK constraints compiled once, in the order of the
 * relcache's list, for ExecConstraints to find in the result relation
 * instead of parsing and planning each one from its text at every write;
 * NULL when there are none or one cannot be kept (check_not_keepable).
 * Built as ExecRelCheck builds them, in the cache's memory, without a
 * parent plan (so no JIT); an invalidation of the table drops them with
 * the rest of the cache.
 */
static ExprState **
compile_checks(Relation rel)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	MemoryContext old;
	ExprState **checks;
	Expr	  **exprs;

	if (constr == NULL || constr->num_check == 0)
		return NULL;
	old = MemoryContextSwitchTo(cache_cxt);
	exprs = palloc(sizeof(Expr *) * constr->num_check);
	for (int i = 0; i < constr->num_check; i++)
	{
		exprs[i] = expression_planner(stringToNode(constr->check[i].ccbin));
		if (check_not_keepable((Node *) exprs[i], NULL))
		{
			MemoryContextSwitchTo(old);
			return NULL;
		}
	}
	checks = palloc(sizeof(ExprState *) * constr->num_check);
	for (int i = 0; i < constr->num_check; i++)
		checks[i] = ExecInitExpr(exprs[i], NULL);
	MemoryContextSwitchTo(old);
	return checks;
}

/* the column facts of the open table, built on first use */
static WriteCache *
write_cache(FetchTable table, Relation rel)
{
	WriteCache *c = &caches[table];
	TupleDesc	desc = RelationGetDescr(rel);

	if (cache_stale)
	{
		memset(caches, 0, sizeof(caches));
		if (cache_cxt != NULL && writes_lxid == coupon_local_xid() && writes_active > 0)
		{
			/* a write in progress still uses it: it goes with the transaction */
			MemoryContextSetParent(cache_cxt, TopTransactionContext);
			cache_cxt = NULL;
		}
		else if (cache_cxt != NULL)
			MemoryContextReset(cache_cxt);
		cache_stale = false;
	}
	if (c->relid == RelationGetRelid(rel))
		return c;
	if (cache_cxt == NULL)
		cache_cxt = AllocSetContextCreate(TopMemoryContext, "coupon row writes",
										  ALLOCSET_SMALL_SIZES);
	c->identity = 0;
	c->checks = NULL;
	c->nindexes = -1;
	c->index_infos = NULL;
	c->slots = NULL;
	c->nslots = 0;
	c->slot_desc = NULL;
	c->domain = MemoryContextAllocZero(cache_cxt, sizeof(Oid) * desc->natts);
	c->domain_extra = MemoryContextAllocZero(cache_cxt, sizeof(void *) * desc->natts);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->attidentity)
		{
			if (att->atttypid != INT8OID)
				elog(ERROR, "identity column \"%s\" of coupon.%s is not bigint",
					 NameStr(att->attname), RelationGetRelationName(rel));
			c->identity = i + 1;
			c->identity_seq = coupon_identity_sequence(rel, i + 1);
		}
		if (get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
			c->domain[i] = att->atttypid;
	}
	c->checks = compile_checks(rel);
	c->relid = RelationGetRelid(rel);
	return c;
}

/*
 * Can an index's description be kept from one write to the next?  A btree
 * or hash index's holds nothing of a query, but for the compiled forms of
 * expressions and of a predicate, which the executor builds in the query's
 * memory: so no expressions, and a predicate only if it can be kept
 * compiled (check_not_keepable).
 */
static bool
index_keepable(Relation irel)
{
	List	   *pred;

	if (irel->rd_rel->relam != BTREE_AM_OID && irel->rd_rel->relam != HASH_AM_OID)
		return false;
	if (RelationGetIndexExpressions(irel) != NIL)
		return false;
	pred = RelationGetIndexPredicate(irel);
	return pred == NIL || !check_not_keepable((Node *) expression_planner((Expr *) pred), NULL);
}

/*
 * The table's indexes, open, and what index_insert and the executor need
 * to know of each.  Described once per table, predicates compiled, and
 * kept while the cache is valid when every index can be (index_keepable);
 * otherwise described again in the caller's context.
 */
static int
open_indexes(WriteCache *c, Relation rel, Relation **irelsp, IndexInfo ***infosp)
{
	Relation   *irels;
	IndexInfo **infos;
	bool		keep = true;
	MemoryContext old;

	if (c->nindexes < 0)
	{
		List	   *oids = RelationGetIndexList(rel);
		int			i = 0;
		ListCell   *lc;

		c->index_oids = MemoryContextAlloc(cache_cxt, sizeof(Oid) * Max(list_length(oids), 1));
		foreach(lc, oids)
			c->index_oids[i++] = lfirst_oid(lc);
		c->nindexes = i;
		list_free(oids);
	}
	*irelsp = irels = palloc(sizeof(Relation) * Max(c->nindexes, 1));
	for (int i = 0; i < c->nindexes; i++)
		irels[i] = index_open(c->index_oids[i], RowExclusiveLock);
	if (c->index_infos != NULL)
	{
		*infosp = c->index_infos;
		return c->nindexes;
	}
	for (int i = 0; i < c->nindexes && keep; i++)
		keep = index_keepable(irels[i]);
	old = MemoryContextSwitchTo(keep ? cache_cxt : CurrentMemoryContext);
	infos = palloc(sizeof(IndexInfo *) * Max(c->nindexes, 1));
	for (int i = 0; i < c->nindexes; i++)
	{
		infos[i] = BuildIndexInfo(irels[i]);
		/* as ExecInsertIndexTuples would compile it, once */
		if (keep && infos[i]->ii_Predicate != NIL)
			infos[i]->ii_PredicateState =
				ExecInitQual((List *) expression_planner((Expr *) infos[i]->ii_Predicate), NULL);
	}
	MemoryContextSwitchTo(old);
	if (keep)
		c->index_infos = infos;
	*infosp = infos;
	return c->nindexes;
}

/*
 * Open the table's indexes for ExecSimpleRelation*, as ExecOpenIndices
 * does, but from the kept descriptions when there are some: that would
 * describe every index again, and the insert compile every predicate
 * again, at each write.  Descriptions not kept are fresh ones in the
 * write's memory, which the executor completes as it would its own.
 */
static void
open_result_indexes(RowWrite *w)
{
	Relation   *irels;
	IndexInfo **infos;
	int			n = open_indexes(w->cache, w->rel, &irels, &infos);

	/* the executor notes per statement whether an update leaves an index alone */
	for (int i = 0; i < n; i++)
		infos[i]->ii_CheckedUnchanged = false;
	w->rri->ri_NumIndices = n;
	w->rri->ri_IndexRelationDescs = irels;
	w->rri->ri_IndexRelationInfo = infos;
}

/*
 * Open the table and set up what ExecSimpleRelation* expect, the way
 * logical replication's apply does for one change; executor objects live
 * in the write's own memory context.
 */
static void
write_begin(RowWrite *w, FetchTable table)
{
	RangeTblEntry *rte;

	w->rel = fetch_open(table, RowExclusiveLock);
	call_become_owner(w->rel, &w->user);
	w->cache = write_cache(table, w->rel);
	if (writes_lxid != coupon_local_xid())
	{
		writes_lxid = coupon_local_xid();
		writes_active = 0;
	}
	writes_active++;
	w->estate = CreateExecutorState();
	w->caller = MemoryContextSwitchTo(w->estate->es_query_cxt);

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(w->rel);
	rte->relkind = w->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 160000
	{
		/* 16 keeps a result relation's permissions apart from its entry */
		List	   *perminfos = NIL;

		addRTEPermissionInfo(&perminfos, rte);
		ExecInitRangeTable(w->estate, list_make1(rte), perminfos);
	}
#else
	ExecInitRangeTable(w->estate, list_make1(rte));
#endif
	w->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(w->rri, w->rel, 1, NULL, 0);
	w->rri->ri_ConstraintExprs = w->cache->checks;
	outbox_take_trigger(w->rri->ri_TrigDesc, &w->capture);
	/* so that AFTER triggers (foreign keys) find it instead of opening another */
	w->estate->es_opened_result_relations = list_make1(w->rri);
	w->estate->es_output_cid = GetCurrentCommandId(true);
	w->estate->es_snapshot = GetActiveSnapshot();
	open_result_indexes(w);
	AfterTriggerBeginQuery();
}

/*
 * Fire queued AFTER ROW triggers, free the executor objects, keep the lock,
 * and, unless the row is one nobody reads back (row_append), end the call's
 * statement: what follows sees the write.
 */
static void
write_end(RowWrite *w, bool next_statement)
{
	AfterTriggerEndQuery(w->estate);
	ExecCloseResultRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	MemoryContextSwitchTo(w->caller);
	FreeExecutorState(w->estate);
	call_restore_user(&w->user);
	table_close(w->rel, NoLock);
	writes_active--;
	if (next_statement)
		call_next_statement();
}

/* put one column's value in the slot, checked against its domain */
static void
set_column(RowWrite *w, TupleTableSlot *slot, AttrNumber attnum, Datum value, bool isnull)
{
	int			i = attnum - 1;

	if (OidIsValid(w->cache->domain[i]))
		domain_check(value, isnull, w->cache->domain[i], &w->cache->domain_extra[i],
					 cache_cxt);
	slot->tts_values[i] = value;
	slot->tts_isnull[i] = isnull;
}

/*
 * A BEFORE ROW trigger that returns NULL makes the executor skip the write
 * silently; the caller's other writes assume this one happened, so refuse.
 * The slot has a place only if the row was written.
 */
static void
check_written(RowWrite *w, TupleTableSlot *slot)
{
	if (!ItemPointerIsValid(&slot->tts_tid))
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("a trigger on coupon.%s skipped a row the extension writes",
						RelationGetRelationName(w->rel)),
				 errhint("BEFORE ROW triggers on the extension's tables must return the row.")));
}

/* the slot's row as a composite Datum in the caller's memory context */
static Datum
slot_row(RowWrite *w, TupleTableSlot *slot)
{
	MemoryContext old = MemoryContextSwitchTo(w->caller);
	Datum		row;

	slot_getallattrs(slot);
	row = HeapTupleGetDatum(heap_form_tuple(slot->tts_tupleDescriptor,
											slot->tts_values, slot->tts_isnull));
	MemoryContextSwitchTo(old);
	return row;
}

/* put one row's columns in the write's slot: given ones, the identity's next value */
static void
fill_slot(RowWrite *w, TupleTableSlot *slot, int ncols, const AttrNumber *attnums,
		  const Datum *values, const bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(w->rel);

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
	for (int i = 0; i < ncols; i++)
		set_column(w, slot, attnums[i], values[i], nulls[i]);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		given = false;

		for (int j = 0; j < ncols && !given; j++)
			given = (attnums[j] == i + 1);
		if (given || att->attisdropped)
			continue;
		if (i + 1 == w->cache->identity)
			set_column(w, slot, i + 1,
					   Int64GetDatum(nextval_internal(w->cache->identity_seq, false)), false);
		else if (att->atthasdef)
			elog(ERROR, "column \"%s\" of coupon.%s has a default that this build does not set",
				 NameStr(att->attname), RelationGetRelationName(w->rel));
	}
	ExecStoreVirtualTuple(slot);
}

/* insert one row; see rowwrite.h */
Datum
row_insert(FetchTable table, int ncols, const char *const *names,
		   const Datum *values, const bool *nulls)
{
	RowWrite	w;
	TupleDesc	desc;
	TupleTableSlot *slot;
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums;
	Datum		row;

	write_begin(&w, table);
	desc = RelationGetDescr(w.rel);
	attnums = fetch_attnums(table, desc, ncols, names, scratch);
	slot = ExecInitExtraTupleSlot(w.estate, desc, &TTSOpsVirtual);
	fill_slot(&w, slot, ncols, attnums, values, nulls);
	ExecSimpleRelationInsert(w.rri, w.estate, slot);
	check_written(&w, slot);
	outbox_capture_row(&w.capture, w.rel, NULL, NULL, slot->tts_values, slot->tts_isnull);
	row = slot_row(&w, slot);
	write_end(&w, true);
	return row;
}

/* row_append() through the executor's single-row insert, row by row */
static void
append_by_executor(FetchTable table, int ncols, const char *const *names, int nrows,
				   const Datum *values, const bool *nulls, ItemPointer tids)
{
	RowWrite	w;
	TupleDesc	desc;
	TupleTableSlot *slot;
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums;
	bool		pushed = !ActiveSnapshotSet();

	/* at commit (outbox.c) no snapshot is active any more */
	if (pushed)
		PushActiveSnapshot(GetTransactionSnapshot());
	write_begin(&w, table);
	desc = RelationGetDescr(w.rel);
	attnums = fetch_attnums(table, desc, ncols, names, scratch);
	slot = ExecInitExtraTupleSlot(w.estate, desc, &TTSOpsVirtual);
	for (int r = 0; r < nrows; r++)
	{
		fill_slot(&w, slot, ncols, attnums, values + r * ncols, nulls + r * ncols);
		ExecSimpleRelationInsert(w.rri, w.estate, slot);
		check_written(&w, slot);
		if (tids != NULL)
			tids[r] = slot->tts_tid;
		outbox_capture_row(&w.capture, w.rel, NULL, NULL, slot->tts_values, slot->tts_isnull);
		ResetPerTupleExprContext(w.estate);
	}
	write_end(&w, false);
	if (pushed)
		PopActiveSnapshot();
}

/*
 * Can rows be appended to the table by heap_multi_insert and index_insert
 * alone?  Only when nothing of what the executor would add applies: no
 * row triggers on insert, no CHECK constraints, no generated columns, no
 * index on an expression or with a predicate.  (Statement triggers never
 * fire for these rows, which no statement writes, as for the rows of
 * logical replication's apply; the outbox has one, for restores.)
 */
static bool
plain_target(Relation rel, int nidx, IndexInfo **infos)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	TriggerDesc *trig = rel->trigdesc;
	bool		plain = (trig == NULL || !(trig->trig_insert_before_row || trig->trig_insert_after_row ||
										   trig->trig_insert_instead_row)) &&
		(constr == NULL || (constr->num_check == 0 && !constr->has_generated_stored));

	for (int i = 0; i < nidx; i++)
		plain = plain && infos[i]->ii_Expressions == NIL && infos[i]->ii_Predicate == NIL;
	return plain;
}

/* one appended row's values, domains checked, identity and NOT NULL seen to */
static void
append_values(WriteCache *cache, Relation rel, int ncols, const AttrNumber *attnums,
			  const Datum *values, const bool *nulls, Datum *row, bool *rownull)
{
	TupleDesc	desc = RelationGetDescr(rel);

	memset(rownull, true, sizeof(bool) * desc->natts);
	for (int c = 0; c < ncols; c++)
	{
		int			i = attnums[c] - 1;

		rownull[i] = nulls[c];
		row[i] = values[c];
		if (OidIsValid(cache->domain[i]))
			domain_check(row[i], rownull[i], cache->domain[i], &cache->domain_extra[i], cache_cxt);
	}
	if (cache->identity != 0 && rownull[cache->identity - 1])
	{
		row[cache->identity - 1] = Int64GetDatum(nextval_internal(cache->identity_seq, false));
		rownull[cache->identity - 1] = false;
	}
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attnotnull && rownull[i])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("null value in column \"%s\" of relation \"%s\" violates not-null constraint",
							NameStr(att->attname), RelationGetRelationName(rel))));
	}
}

/*
 * At least n (up to APPEND_CHUNK) empty slots for the table's rows, kept
 * with the cache: made on a copy of the table's descriptor, which pins
 * nothing, so that they last from one transaction to the next.
 */
static TupleTableSlot **
append_slots(WriteCache *c, TupleDesc desc, int n)
{
	MemoryContext old = MemoryContextSwitchTo(cache_cxt);

	if (c->slots == NULL)
	{
		c->slots = palloc(sizeof(TupleTableSlot *) * APPEND_CHUNK);
		c->slot_desc = CreateTupleDescCopy(desc);
	}
	for (; c->nslots < n; c->nslots++)
		c->slots[c->nslots] = MakeSingleTupleTableSlot(c->slot_desc, &TTSOpsHeapTuple);
	MemoryContextSwitchTo(old);
	return c->slots;
}

/*
 * Insert rows no one reads back in this call; see rowwrite.h.  The
 * outbox's rows come here, every one of a transaction at its commit: for a
 * plain table they are written together by heap_multi_insert (one WAL
 * record per page; heap_insert for a single row) and then indexed, without
 * an executor state to set up and tear down; otherwise through the executor.
 */
void
row_append(FetchTable table, int ncols, const char *const *names, int nrows,
		   const Datum *values, const bool *nulls, ItemPointer tids_out)
{
	Relation	rel = fetch_open(table, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	WriteCache *cache = write_cache(table, rel);
	Relation   *irels;
	IndexInfo **infos;
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums = fetch_attnums(table, desc, ncols, names, scratch);
	Datum	   *rows;
	bool	   *rownulls;
	ItemPointerData *tids;
	CommandId	cid = GetCurrentCommandId(true);
	int			nidx;

	nidx = open_indexes(cache, rel, &irels, &infos);
	if (!plain_target(rel, nidx, infos))
	{
		for (int x = 0; x < nidx; x++)
			index_close(irels[x], NoLock);
		table_close(rel, NoLock);
		append_by_executor(table, ncols, names, nrows, values, nulls, tids_out);
		return;
	}
	rows = palloc(sizeof(Datum) * desc->natts * nrows);
	rownulls = palloc(sizeof(bool) * desc->natts * nrows);
	tids = tids_out ? tids_out : palloc(sizeof(ItemPointerData) * nrows);
	for (int r = 0; r < nrows; r++)
		append_values(cache, rel, ncols, attnums, values + r * ncols, nulls + r * ncols,
					  rows + r * desc->natts, rownulls + r * desc->natts);
	if (nrows == 1)
	{
		HeapTuple	tuple = heap_form_tuple(desc, rows, rownulls);

		heap_insert(rel, tuple, cid, 0, NULL);
		tids[0] = tuple->t_self;
	}
	else
	{
		TupleTableSlot **slots = append_slots(cache, desc, Min(nrows, APPEND_CHUNK));

		for (int first = 0; first < nrows; first += APPEND_CHUNK)
		{
			int			n = Min(nrows - first, APPEND_CHUNK);
			MemoryContext old = MemoryContextSwitchTo(cache_cxt);

			/*
			 * The tuples in the slots' context: one an error leaves in a slot
			 * is freed when the slot is used again or the cache reset, not
			 * by the transaction's end, which would leave the slot pointing
			 * at freed memory.
			 */
			for (int r = 0; r < n; r++)
				ExecStoreHeapTuple(heap_form_tuple(desc, rows + (first + r) * desc->natts,
												   rownulls + (first + r) * desc->natts),
								   slots[r], true);
			MemoryContextSwitchTo(old);
			heap_multi_insert(rel, slots, n, cid, 0, NULL);
			for (int r = 0; r < n; r++)
			{
				tids[first + r] = slots[r]->tts_tid;
				ExecClearTuple(slots[r]);
			}
		}
	}
	for (int r = 0; r < nrows; r++)
	{
		Datum	   *row = rows + r * desc->natts;
		bool	   *rownull = rownulls + r * desc->natts;

		for (int x = 0; x < nidx; x++)
		{
			Datum		ivalues[INDEX_MAX_KEYS];
			bool		inulls[INDEX_MAX_KEYS];

			/* as the executor does: an index CREATE INDEX CONCURRENTLY is still building */
			if (!infos[x]->ii_ReadyForInserts)
				continue;
			for (int k = 0; k < infos[x]->ii_NumIndexAttrs; k++)
			{
				ivalues[k] = row[infos[x]->ii_IndexAttrNumbers[k] - 1];
				inulls[k] = rownull[infos[x]->ii_IndexAttrNumbers[k] - 1];
			}
			index_insert(irels[x], ivalues, inulls, &tids[r], rel,
						 irels[x]->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
						 false, infos[x]);
		}
	}
	for (int x = 0; x < nidx; x++)
		index_close(irels[x], NoLock);
	table_close(rel, NoLock);
}

/* update one locked row version; see rowwrite.h */
Datum
row_update(FetchTable table, ItemPointer tid, int ncols, const char *const *names,
		   const Datum *values, const bool *nulls, bool want_row)
{
	RowWrite	w;
	TupleDesc	desc;
	TupleTableSlot *oldslot;
	TupleTableSlot *newslot;
	AttrNumber	scratch[FETCH_MAX_COLUMNS];
	const AttrNumber *attnums;
	EPQState	epq;
	Datum		row = (Datum) 0;

	write_begin(&w, table);
	desc = RelationGetDescr(w.rel);
	attnums = fetch_attnums(table, desc, ncols, names, scratch);
	oldslot = ExecInitExtraTupleSlot(w.estate, desc, table_slot_callbacks(w.rel));
	newslot = ExecInitExtraTupleSlot(w.estate, desc, &TTSOpsVirtual);
	if (!table_tuple_fetch_row_version(w.rel, tid, SnapshotAny, oldslot))
		elog(ERROR, "the row of coupon.%s to update is missing",
			 RelationGetRelationName(w.rel));
	slot_getallattrs(oldslot);
	ExecClearTuple(newslot);
	memcpy(newslot->tts_values, oldslot->tts_values, sizeof(Datum) * desc->natts);
	memcpy(newslot->tts_isnull, oldslot->tts_isnull, sizeof(bool) * desc->natts);
	for (int i = 0; i < ncols; i++)
		set_column(&w, newslot, attnums[i], values[i], nulls[i]);
	ExecStoreVirtualTuple(newslot);

	coupon_epq_init(&epq, w.estate);
	ExecSimpleRelationUpdate(w.rri, w.estate, &epq, oldslot, newslot);
	check_written(&w, newslot);
	outbox_capture_row(&w.capture, w.rel, oldslot->tts_values, oldslot->tts_isnull,
					   newslot->tts_values, newslot->tts_isnull);
	EvalPlanQualEnd(&epq);
	if (want_row)
		row = slot_row(&w, newslot);
	write_end(&w, true);
	return row;
}
