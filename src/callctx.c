/*
 * callctx.c
 *		The call context of the extension's SQL-callable C functions.
 *
 * Since 0.5 a checkout reads and writes rows below SQL (fetch.c,
 * rowwrite.c).  A PL/pgSQL or SQL function gets its visibility rules from
 * SPI: a VOLATILE one advances the command counter and takes a new
 * snapshot for every statement, so it sees what its own transaction did
 * before it (earlier calls in the same statement included) and, under READ
 * COMMITTED, what others committed until the statement began; a STABLE one
 * reads everything under the calling statement's snapshot.  This file
 * gives the C entry points the same rules, in one place:
 *
 * - call_begin(CALL_VOLATILE) is the start of the first statement: the
 *   command counter advances and a fresh snapshot becomes the active one,
 *   which every read below uses; call_end pops it;
 * - every write of the call (a row written directly, or an SPI statement
 *   that may write) and every lock it takes (a row lock, an advisory lock)
 *   ends a statement: call_next_statement advances the counter and takes
 *   the next snapshot;
 * - a STABLE call reads under the statement's snapshot and never advances
 *   the counter: it writes nothing and takes no lock.
 *
 * The one read that departs from this is the per-user count of an issue
 * under REPEATABLE READ (fetch_user_coupons): it reads the latest snapshot
 * under the user's lock, as PostgreSQL's own foreign-key checks do, because
 * the transaction's older snapshot would count too few.
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "callctx.h"

/*
 * The transaction nesting level at which each open context pushed its
 * snapshot, innermost last.  A statement boundary replaces the innermost
 * context's snapshot, which must then be on top of the stack: it is, unless
 * a subtransaction began inside the context without a context of its own
 * (call_begin_subxact), whose abort would pop the new snapshot and leave
 * the stack without the context's.  An aborted subtransaction takes its
 * contexts with it; a transaction's end, all of them.
 */
static int *levels = NULL;
static int	depth = 0;
static int	capacity = 0;

/* note a context opened at the current nesting level */
static void
push_level(void)
{
	if (depth == capacity)
	{
		capacity = capacity == 0 ? 16 : 2 * capacity;
		levels = levels == NULL
			? MemoryContextAlloc(TopMemoryContext, sizeof(int) * capacity)
			: repalloc(levels, sizeof(int) * capacity);
	}
	levels[depth++] = GetCurrentTransactionNestLevel();
}

/* forget the contexts of a transaction that ended */
static void
callctx_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_COMMIT || event == XACT_EVENT_PARALLEL_ABORT ||
		event == XACT_EVENT_PREPARE)
		depth = 0;
}

/* forget the contexts of an aborted subtransaction (its abort popped their snapshots) */
static void
callctx_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		while (depth > 0 && levels[depth - 1] >= GetCurrentTransactionNestLevel())
			depth--;
}

/* register the transaction callbacks */
void
coupon_callctx_init(void)
{
	RegisterXactCallback(callctx_xact_callback, NULL);
	RegisterSubXactCallback(callctx_subxact_callback, NULL);
}

/* open the context of one call (see callctx.h) */
void
call_begin(CallKind kind)
{
	if (kind != CALL_VOLATILE)
		return;
	SPI_connect();
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	push_level();
}

/* close it: pop the snapshot call_begin (or call_next_statement) pushed */
void
call_end(CallKind kind)
{
	if (kind != CALL_VOLATILE)
		return;
	call_end_subxact();
	SPI_finish();
}

/* a context for the statements of a subtransaction begun inside a call */
void
call_begin_subxact(void)
{
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	push_level();
}

/* close it, before the subtransaction is released */
void
call_end_subxact(void)
{
	if (depth == 0 || levels[depth - 1] != GetCurrentTransactionNestLevel())
		elog(ERROR, "coupon: a call context closed outside the transaction level it was opened at");
	PopActiveSnapshot();
	depth--;
}

/* end one statement of a VOLATILE call and begin the next */
void
call_next_statement(void)
{
	if (depth == 0 || levels[depth - 1] != GetCurrentTransactionNestLevel())
		elog(ERROR, "coupon: a statement boundary outside a call context of this transaction level");
	CommandCounterIncrement();
	PopActiveSnapshot();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* a transaction-scoped advisory lock, then a new statement */
void
call_advisory_lock(int32 key1, int32 key2)
{
	DirectFunctionCall2(pg_advisory_xact_lock_int4, Int32GetDatum(key1), Int32GetDatum(key2));
	call_next_statement();
}

/* the same without waiting; false if another transaction holds it */
bool
call_try_advisory_lock(int32 key1, int32 key2)
{
	if (!DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4,
										  Int32GetDatum(key1), Int32GetDatum(key2))))
		return false;
	call_next_statement();
	return true;
}

/* act as the table's owner below SQL (see callctx.h) */
void
call_become_owner(Relation rel, CallUser *saved)
{
	GetUserIdAndSecContext(&saved->userid, &saved->sec_context);
	SetUserIdAndSecContext(rel->rd_rel->relowner,
						   saved->sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_NOFORCE_RLS);
}

/* back to the caller's user */
void
call_restore_user(const CallUser *saved)
{
	SetUserIdAndSecContext(saved->userid, saved->sec_context);
}
