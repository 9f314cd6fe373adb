/*
 * fetch.h
 *		Reading one row of the extension's tables by primary key straight
 *		through its index, without SPI or the executor: the read path of
 *		validate() and reserve().
 */
#ifndef COUPON_FETCH_H
#define COUPON_FETCH_H

typedef enum FetchTable
{
	FETCH_MERCHANT,
	FETCH_POLICY,
	FETCH_COUPON,
	FETCH_TABLE_COUNT
} FetchTable;

/* the most columns one fetch_columns() call reads */
#define FETCH_MAX_COLUMNS 16

/*
 * Columns `names` of the row of `table` whose id is `id`, visible to the
 * active snapshot, copied into the current memory context; false if there
 * is no such row.  `names` must be a static array (at most
 * FETCH_MAX_COLUMNS): the column numbers are resolved once per array.
 */
extern bool fetch_columns(FetchTable table, int64 id, int ncols,
						  const char *const *names, Datum *values, bool *nulls);

/* is the merchant active? (false, and *exists false, when there is none) */
extern bool fetch_merchant_active(int64 merchant_id, bool *exists);

/* register the relcache callback that forgets cached relation ids */
extern void coupon_fetch_init(void);

#endif							/* COUPON_FETCH_H */
