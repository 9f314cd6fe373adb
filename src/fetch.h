/*
 * fetch.h
 *		Reading, and row-locking, one row of the extension's tables by
 *		primary key (or another unique index) straight through the index,
 *		without SPI or the executor: the read path of validate(), and the
 *		locks and lookups of a checkout and of an fcfs issue.
 */
#ifndef COUPON_FETCH_H
#define COUPON_FETCH_H

#include "storage/itemptr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"

/* a table and the index a lookup goes through (the primary key unless said) */
typedef enum FetchTable
{
	FETCH_MERCHANT,
	FETCH_POLICY,
	FETCH_COUPON,
	FETCH_RESERVATION,
	FETCH_POLICY_STOCK,			/* keyed by (policy_id, shard): fetch_stock_row() */
	FETCH_HELD_RESERVATION,		/* a coupon's live hold, by coupon_id */
	FETCH_ORDER_RESERVATIONS,	/* an order's reservations: fetch_order_has_other() */
	FETCH_USER_COUPONS,			/* a user's coupons of a policy: fetch_user_coupons() */
	FETCH_OUTBOX,				/* written only (outbox.c) */
	FETCH_OUTBOX_QUEUE,			/* written only, and without an index (queue.c) */
	FETCH_TABLE_COUNT
} FetchTable;

/* does the table exist (an extension not yet updated may lack it)? */
extern bool fetch_present(FetchTable table);

/* the most columns one fetch_columns() call reads */
#define FETCH_MAX_COLUMNS 16

/*
 * Columns `names` of the row of `table` whose id is `id`, visible to the
 * call's snapshot (callctx.h), copied into the current memory context;
 * false if there is no such row.  `names` must be a static array (at most
 * FETCH_MAX_COLUMNS): the column numbers are resolved once per array.
 */
extern bool fetch_columns(FetchTable table, int64 id, int ncols,
						  const char *const *names, Datum *values, bool *nulls);

/* whether a fetch locks the row */
typedef enum FetchHow
{
	FETCH_READ,					/* read under the call's snapshot */
	FETCH_NEWEST,				/* read under a snapshot newer than the
								 * call's: only to fill validate()'s copies */
	FETCH_LOCK,					/* FOR NO KEY UPDATE, waiting */
	FETCH_LOCK_SKIP				/* the same, but give up if the row is busy */
} FetchHow;

typedef enum FetchResult
{
	FETCH_FOUND,
	FETCH_MISSING,
	FETCH_BUSY					/* FETCH_LOCK_SKIP only */
} FetchResult;

/*
 * fetch_columns(), locking the row if asked.  A locking fetch finds the row
 * under the call's snapshot, locks it as SELECT ... FOR NO KEY UPDATE
 * would, in the same transaction-wide way, and returns the columns of the
 * version it locked: under READ COMMITTED the latest one, which may be
 * newer than the snapshot; under REPEATABLE READ and SERIALIZABLE a row
 * changed since the snapshot raises a serialization failure (40001).  A
 * lock ends the call's statement (call_next_statement).  With ncols 0 it
 * only locks (or looks).
 */
extern FetchResult fetch_columns_how(FetchTable table, int64 id, FetchHow how, int ncols,
									 const char *const *names, Datum *values,
									 bool *nulls);

/* fetch_columns_how(), also saying where the version found (or locked) is */
extern FetchResult fetch_row(FetchTable table, int64 id, FetchHow how, int ncols,
							 const char *const *names, Datum *values, bool *nulls,
							 ItemPointer tid);

/* fetch_row() for the stock shard (policy_id, shard) */
extern FetchResult fetch_stock_row(int64 policy_id, int32 shard, FetchHow how, int ncols,
								   const char *const *names, Datum *values, bool *nulls,
								   ItemPointer tid);

/*
 * Lock the row version at *tid, found by a FETCH_READ of `table` in the
 * same statement, as a locking fetch would after finding it again (the
 * same snapshot finds the same version), and say where the locked version
 * is: one index scan instead of two for a read-then-lock.
 */
extern FetchResult fetch_lock_found(FetchTable table, bool skip_locked, int ncols,
									const char *const *names, Datum *values, bool *nulls,
									ItemPointer tid);

/* is a coupon other than coupon_id held or spent for this order? */
extern bool fetch_order_has_other(int64 merchant_id, const char *order_id, int64 coupon_id);

/* how many coupons of the policy the user holds, in any status */
extern int64 fetch_user_coupons(int64 policy_id, const char *user_id);

/* open a table of the extension by its cached id (for rowwrite.c) */
extern Relation fetch_open(FetchTable table, LOCKMODE lockmode);

/* the attribute numbers of a static names array, resolved once (for rowwrite.c) */
extern const AttrNumber *fetch_attnums(FetchTable table, TupleDesc desc, int ncols,
									   const char *const *names, AttrNumber *scratch);

/* is the merchant active, under `how`? (false, and *exists false, if there is none) */
extern bool fetch_merchant_active(int64 merchant_id, FetchHow how, bool *exists);

/* forget the cached relation ids and column maps */
extern void fetch_reset(void);

#endif							/* COUPON_FETCH_H */
