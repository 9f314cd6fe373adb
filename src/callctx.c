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
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "callctx.h"

/* open the context of one call (see callctx.h) */
void
call_begin(CallKind kind)
{
	if (kind != CALL_VOLATILE)
		return;
	SPI_connect();
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
}

/* close it: pop the snapshot call_begin (or call_next_statement) pushed */
void
call_end(CallKind kind)
{
	if (kind != CALL_VOLATILE)
		return;
	PopActiveSnapshot();
	SPI_finish();
}

/* end one statement of a VOLATILE call and begin the next */
void
call_next_statement(void)
{
	if (!ActiveSnapshotSet())
		elog(ERROR, "no call context is open");
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
