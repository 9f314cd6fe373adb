/*
 * spi_util.h
 *		Saved SPI plans for the hot statements and small result readers.
 */
#ifndef COUPON_SPI_UTIL_H
#define COUPON_SPI_UTIL_H

#include "executor/spi.h"
#include "fmgr.h"

#define SAVED_PLAN_MAX_ARGS 20

/* a statement prepared on first use and kept for the backend's life */
typedef struct SavedPlan
{
	const char *sql;
	int			nargs;
	Oid			argtypes[SAVED_PLAN_MAX_ARGS];
	SPIPlanPtr	plan;
} SavedPlan;

/*
 * Run a saved plan; returns SPI_processed.  A statement that is not
 * read-only ends the call's statement (callctx.h).
 */
extern uint64 spi_run(SavedPlan *plan, Datum *values, const char *nulls,
					  bool read_only, long tcount);

/* column readers for row `row` of SPI_tuptable (1-based column numbers) */
extern bool spi_isnull(int row, int col);
extern int64 spi_int64(int row, int col, bool *isnull);
extern int32 spi_int32(int row, int col, bool *isnull);
extern bool spi_bool(int row, int col);
extern char *spi_text(int row, int col);
extern Datum spi_datum(int row, int col, bool *isnull);

/* row 0 of SPI_tuptable as the function's composite result */
extern Datum spi_result_row(FunctionCallInfo fcinfo);

#endif							/* COUPON_SPI_UTIL_H */
