/*
 * outbox.h
 *		The outbox's capture trigger and the relay worker's wake-up.
 */
#ifndef COUPON_OUTBOX_H
#define COUPON_OUTBOX_H

#include "utils/rel.h"
#include "utils/reltrigger.h"

/*
 * What a single-row write (rowwrite.c) needs to capture its row's event
 * itself: the outbox trigger's table argument, NULL when the table has no
 * such trigger or it does not fire (disabled, or session_replication_role),
 * and the kinds of change it fires for.
 */
typedef struct OutboxCapture
{
	const char *table;
	bool		on_insert;
	bool		on_update;
} OutboxCapture;

/*
 * Take the outbox trigger out of a write's own copy of the table's
 * triggers (a ResultRelInfo's ri_TrigDesc), filling *oc: the write then
 * calls outbox_capture_row() after the row is written, instead of the
 * AFTER trigger machinery queueing the row, fetching it back and calling
 * the trigger.  The event is the same, in the same place of the
 * transaction's events.
 */
extern void outbox_take_trigger(TriggerDesc *trigdesc, OutboxCapture *oc);

/* the event of a row the write inserted (old_values NULL) or updated */
extern void outbox_capture_row(const OutboxCapture *oc, Relation rel,
							   const Datum *old_values, const bool *old_nulls,
							   const Datum *new_values, const bool *new_nulls);

/* register the commit-time wake-up of the relay worker */
extern void coupon_outbox_init(void);

/* forget the policies' merchants (cacheinval.c) */
extern void outbox_reset(void);

#endif							/* COUPON_OUTBOX_H */
