/*
 * spi_util.c
 *		Saved SPI plans for the hot statements and small result readers.
 *
 * The extension's C functions are SECURITY DEFINER, and all the SQL they
 * run goes through spi_run(), which gives it the two settings that SET
 * clauses on every function used to give (at a price on every call: a GUC
 * save and restore, and a search path recomputed after it):
 *
 * - the search path is pg_catalog alone (no pg_temp, no caller's schema)
 *   while the statement is parsed, planned and run, so no object of the
 *   caller's can stand in for a built-in one; the statements name the
 *   extension's own objects with their schema;
 * - the statements are planned with enable_seqscan off, since they are
 *   all look-ups and changes by key and their plans are cached per session
 *   from the first calls on, often while the tables are still nearly
 *   empty: a sequential scan chosen then would stay as the tables grow.
 *   The planner hook sets it only when a plan is actually made, which a
 *   saved plan's later runs do not do.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_namespace.h"
#include "funcapi.h"
#include "optimizer/cost.h"
#include "optimizer/planner.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "spi_util.h"

/* how many spi_run() calls are under way (they nest through triggers) */
static int	spi_depth = 0;

/* pg_catalog alone, pushed around every statement */
static OverrideSearchPath pinned_path = {NIL, true, false, 0};

static planner_hook_type prev_planner_hook = NULL;

/* plan the extension's own statements with sequential scans disabled */
static PlannedStmt *
coupon_planner(Query *parse, const char *query_string, int cursorOptions,
			   ParamListInfo boundParams)
{
	PlannedStmt *result;
	int			level = -1;

	if (spi_depth > 0 && enable_seqscan)
	{
		level = NewGUCNestLevel();
		(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	if (prev_planner_hook)
		result = prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	else
		result = standard_planner(parse, query_string, cursorOptions, boundParams);
	/* on error, the transaction's (or subtransaction's) abort restores it */
	if (level >= 0)
		AtEOXact_GUC(true, level);
	return result;
}

/* install the planner hook */
void
coupon_spi_init(void)
{
	prev_planner_hook = planner_hook;
	planner_hook = coupon_planner;
}

/* prepare a saved plan (on first use) and run it; the caller pins the path */
static uint64
run_pinned(SavedPlan *plan, Datum *values, const char *nulls, bool read_only,
		   long tcount)
{
	int			rc;

	if (plan->plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(plan->sql, plan->nargs, plan->argtypes);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed for \"%s\": %s",
				 plan->sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "SPI_keepplan failed");
		plan->plan = p;
	}
	rc = SPI_execute_plan(plan->plan, values, nulls, read_only, tcount);
	if (rc < 0)
		elog(ERROR, "SPI_execute_plan failed for \"%s\": %s",
			 plan->sql, SPI_result_code_string(rc));
	return SPI_processed;
}

/*
 * Run a saved plan, preparing and keeping it on first use, under the pinned
 * search path and planner setting (see the top of this file).
 */
uint64
spi_run(SavedPlan *plan, Datum *values, const char *nulls, bool read_only,
		long tcount)
{
	uint64		n;
	int			depth = spi_depth;

	/* an error pops the path with the (sub)transaction; the depth we reset */
	PushOverrideSearchPath(&pinned_path);
	spi_depth++;
	PG_TRY();
	{
		n = run_pinned(plan, values, nulls, read_only, tcount);
	}
	PG_FINALLY();
	{
		spi_depth = depth;
	}
	PG_END_TRY();
	PopOverrideSearchPath();
	return n;
}

/* is the column NULL */
bool
spi_isnull(int row, int col)
{
	bool		isnull;

	(void) SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &isnull);
	return isnull;
}

/* the raw datum of a column */
Datum
spi_datum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, isnull);
}

/* a bigint column; 0 when NULL */
int64
spi_int64(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &n);

	if (isnull)
		*isnull = n;
	return n ? 0 : DatumGetInt64(d);
}

/* an integer column; 0 when NULL */
int32
spi_int32(int row, int col, bool *isnull)
{
	bool		n;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &n);

	if (isnull)
		*isnull = n;
	return n ? 0 : DatumGetInt32(d);
}

/* a boolean column; false when NULL */
bool
spi_bool(int row, int col)
{
	bool		n;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &n);

	return n ? false : DatumGetBool(d);
}

/* a text column as a C string; NULL when NULL */
char *
spi_text(int row, int col)
{
	bool		n;
	Datum		d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col, &n);

	return n ? NULL : TextDatumGetCString(d);
}

/*
 * Row 0 of SPI_tuptable as the function's composite result, copied out of
 * SPI's memory.  The statement's columns are the table's live columns in
 * order, so dropped attributes of the result type are skipped.
 */
Datum
spi_result_row(FunctionCallInfo fcinfo)
{
	TupleDesc	resdesc;
	Datum	   *values;
	bool	   *nulls;
	int			src = 1;
	HeapTuple	tuple;

	if (SPI_processed < 1)
		elog(ERROR, "statement returned no row");
	if (get_call_result_type(fcinfo, NULL, &resdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "function must return a composite type");
	resdesc = BlessTupleDesc(resdesc);

	values = palloc0(sizeof(Datum) * resdesc->natts);
	nulls = palloc0(sizeof(bool) * resdesc->natts);
	for (int i = 0; i < resdesc->natts; i++)
	{
		if (TupleDescAttr(resdesc, i)->attisdropped)
		{
			nulls[i] = true;
			continue;
		}
		values[i] = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								  src++, &nulls[i]);
	}
	tuple = heap_form_tuple(resdesc, values, nulls);
	return PointerGetDatum(SPI_returntuple(tuple, resdesc));
}
