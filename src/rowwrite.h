/*
 * rowwrite.h
 *		Inserting and updating one row of the extension's tables through the
 *		executor's single-row entry points, without planning a statement:
 *		the writes of a checkout.
 */
#ifndef COUPON_ROWWRITE_H
#define COUPON_ROWWRITE_H

#include "fetch.h"

/*
 * Insert a row of `table` with columns `names` (a static array) set to
 * `values`/`nulls`.  An identity column left out gets its sequence's next
 * value; every other column left out is NULL, and leaving out one that has
 * a default is an internal error.  Returns the new row as a composite Datum
 * of the table's row type, in the caller's memory context.
 */
extern Datum row_insert(FetchTable table, int ncols, const char *const *names,
						const Datum *values, const bool *nulls);

/*
 * row_insert() of rows that nothing in the current call reads back (the
 * outbox's events, written at commit): `values` and `nulls` hold nrows
 * rows of ncols columns one after the other; the table is opened once and
 * no statement boundary follows, so it may run from a trigger or a
 * transaction callback, inside or outside a call context.  The rows'
 * places are stored in tids (room for nrows) unless it is NULL.
 */
extern void row_append(FetchTable table, int ncols, const char *const *names, int nrows,
					   const Datum *values, const bool *nulls, ItemPointer tids);

/*
 * Update columns `names` of the row version at `tid`, which the caller
 * holds locked (fetch_row with FETCH_LOCK) and has not changed since.
 * Returns the new version as a composite Datum, or 0 if want_row is false.
 */
extern Datum row_update(FetchTable table, ItemPointer tid, int ncols,
						const char *const *names, const Datum *values,
						const bool *nulls, bool want_row);

/* forget the cached column facts (on an invalidation of the tables) */
extern void rowwrite_reset(void);

#endif							/* COUPON_ROWWRITE_H */
