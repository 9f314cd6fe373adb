/*
 * callctx.h
 *		The call context of the extension's SQL-callable C functions: which
 *		snapshot their reads below SQL (fetch.c) and writes (rowwrite.c)
 *		use, when the command counter advances, and as whom they touch the
 *		extension's tables (docs/concepts.md, "One call context").
 */
#ifndef COUPON_CALLCTX_H
#define COUPON_CALLCTX_H

#include "utils/relcache.h"

/* the declared volatility of the entry point */
typedef enum CallKind
{
	CALL_STABLE,				/* reads under the calling statement's snapshot */
	CALL_VOLATILE				/* sees its transaction's work, each of its own
								 * writes and what a lock it waited on let in */
} CallKind;

/*
 * Open and close the context of one call of an entry point.  A VOLATILE
 * call connects to SPI, advances the command counter and takes a fresh
 * snapshot, as SPI does for each statement of a VOLATILE function; a
 * STABLE call changes nothing (one that runs SQL connects to SPI itself and
 * runs it read-only).  call_end must be reached on every return; an error
 * needs nothing (the (sub)transaction's abort pops the snapshot).
 */
extern void call_begin(CallKind kind);
extern void call_end(CallKind kind);

/*
 * The statements of a subtransaction begun inside a VOLATILE call (or a
 * worker's step) get a context of their own: opened right after
 * BeginInternalSubTransaction, closed right before it is released; its
 * abort closes it.
 */
extern void call_begin_subxact(void);
extern void call_end_subxact(void);

/* register the transaction callbacks that keep the contexts in step */
extern void coupon_callctx_init(void);

/*
 * A new statement of a VOLATILE call begins: after each write of its own
 * (rowwrite.c, spi_run) and after each lock it took (fetch.c's locking
 * reads, call_advisory_lock), so that what follows sees that write, and
 * under READ COMMITTED what the lock's last holder committed.
 */
extern void call_next_statement(void);

/* pg_advisory_xact_lock(key1, key2), then a new statement */
extern void call_advisory_lock(int32 key1, int32 key2);

/* pg_try_advisory_xact_lock(key1, key2), then (if taken) a new statement */
extern bool call_try_advisory_lock(int32 key1, int32 key2);

/* the user and security context to restore after call_become_owner */
typedef struct CallUser
{
	Oid			userid;
	int			sec_context;
} CallUser;

/*
 * Act as the owner of `rel` while touching it below SQL, the way
 * PostgreSQL's own referential-integrity triggers do: no privilege or
 * row-level security check applies to what the extension reads or writes
 * for its functions, and what they reveal is their documented contract.
 * An error restores the caller's user with the (sub)transaction's abort.
 */
extern void call_become_owner(Relation rel, CallUser *saved);
extern void call_restore_user(const CallUser *saved);

#endif							/* COUPON_CALLCTX_H */
