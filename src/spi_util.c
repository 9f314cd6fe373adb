/*
 * spi_util.c
 *		Saved SPI plans for the hot statements and small result readers.
 *
 * Every statement runs inside a function whose search path is pinned (the
 * SQL functions' SET search_path = pg_catalog, pg_temp, or the saga
 * worker's own setting) and names the extension's objects with their
 * schema.  A statement that may write ends the call's statement
 * (callctx.c), so the C code after it sees what it did.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "callctx.h"
#include "spi_util.h"

/*
 * Run a saved plan, preparing and keeping it on first use; returns
 * SPI_processed.  A statement that is not read-only ends the call's
 * statement (call_next_statement).
 */
uint64
spi_run(SavedPlan *plan, Datum *values, const char *nulls, bool read_only,
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
	if (!read_only)
		call_next_statement();
	return SPI_processed;
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
