/*
 * outbox.c
 *		The outbox: one row per business event, written by row triggers in
 *		the transaction of the change, and the relay worker's wake-up at
 *		commit (docs/events.md).
 *
 * The triggers sit on the tables rather than in each function that writes
 * them, so that every path to a change (the C checkout, the PL/pgSQL
 * functions, the saga worker, an operator's own UPDATE) leaves its event.
 * The checkout's writes go through rowwrite.c, which fires row triggers as
 * a statement would; the event row itself is appended the same way,
 * without planning a statement.
 *
 * Which changes are events, and what an event says, is decided here from
 * the row's old and new values.
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "coupon.h"
#include "fetch.h"
#include "outbox.h"
#include "rowwrite.h"
#include "shmem.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(coupon_outbox_capture);
PG_FUNCTION_INFO_V1(coupon_wake_relay);

/* one event, before it is written */
typedef struct Event
{
	const char *type;			/* points into a constant or the payload's context */
	const char *aggregate;
	int64		aggregate_id;
	int64		merchant_id;
	bool		merchant_null;
	const char *user_id;		/* NULL: none */
	const char *trace_id;		/* NULL: none */
	StringInfoData payload;
} Event;

/* the row a trigger describes: its new version and, for an update, the old */
typedef struct RowPair
{
	Oid			relid;
	TupleDesc	desc;
	HeapTuple	new;
	HeapTuple	old;			/* NULL for an insert */
	/* both versions taken apart once: descriptions read several columns */
	Datum	   *new_values;
	bool	   *new_nulls;
	Datum	   *old_values;
	bool	   *old_nulls;
} RowPair;

static bool relay_wake_pending = false;

/* a policy's merchant, which never changes: asked once per policy */
#define MERCHANT_SLOTS 256
typedef struct PolicyMerchant
{
	int64		policy_id;		/* 0 = empty */
	int64		merchant_id;
} PolicyMerchant;
static PolicyMerchant policy_merchants[MERCHANT_SLOTS];

/* the column numbers the descriptions read, by table and name */
#define ATTNUM_SLOTS 64
typedef struct AttnumSlot
{
	Oid			relid;
	const char *name;
	int			attnum;
} AttnumSlot;
static AttnumSlot attnums[ATTNUM_SLOTS];
static int	nattnums = 0;

/* forget the policies' merchants and the column numbers (cacheinval.c: the tables changed) */
void
outbox_reset(void)
{
	memset(policy_merchants, 0, sizeof(policy_merchants));
	nattnums = 0;
}

/*
 * A column's number by name, remembered per table and name (the names are
 * the literals of this file, so their addresses identify them).
 */
static int
attnum_of(const RowPair *r, const char *name)
{
	for (int i = 0; i < nattnums; i++)
		if (attnums[i].name == name && attnums[i].relid == r->relid)
			return attnums[i].attnum;
	if (nattnums == ATTNUM_SLOTS)
		nattnums = 0;			/* more names than this file has: start over */
	attnums[nattnums].relid = r->relid;
	attnums[nattnums].name = name;
	attnums[nattnums].attnum = SPI_fnumber(r->desc, name);
	if (attnums[nattnums].attnum <= 0)
		elog(ERROR, "coupon.outbox_capture: the row has no column \"%s\"", name);
	return attnums[nattnums++].attnum;
}

/* a column's value by name, or isnull */
static Datum
column(const RowPair *r, HeapTuple tuple, const char *name, bool *isnull)
{
	int			i = attnum_of(r, name) - 1;

	if (tuple == r->new)
	{
		*isnull = r->new_nulls[i];
		return r->new_values[i];
	}
	*isnull = r->old_nulls[i];
	return r->old_values[i];
}

/* did the column change between the old and the new row? */
static bool
changed(const RowPair *r, const char *name)
{
	int			attnum = attnum_of(r, name);
	Form_pg_attribute att;
	bool		old_null;
	bool		new_null;
	Datum		old_value;
	Datum		new_value;

	att = TupleDescAttr(r->desc, attnum - 1);
	old_value = column(r, r->old, name, &old_null);
	new_value = column(r, r->new, name, &new_null);
	if (old_null || new_null)
		return old_null != new_null;
	if (att->attlen == -1)
	{
		/* compare the values, not their headers: one may be short, the other not */
		struct varlena *a = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(old_value));
		struct varlena *b = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(new_value));

		return VARSIZE_ANY_EXHDR(a) != VARSIZE_ANY_EXHDR(b) ||
			memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) != 0;
	}
	return !datumIsEqual(old_value, new_value, att->attbyval, att->attlen);
}

/* a text column of the new row as a C string, or NULL */
static char *
new_text(const RowPair *r, const char *name)
{
	bool		isnull;
	Datum		d = column(r, r->new, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* the same of the old row */
static char *
old_text(const RowPair *r, const char *name)
{
	bool		isnull;
	Datum		d = column(r, r->old, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* a bigint column of a row version; *isnull says whether it is NULL */
static int64
row_int64(const RowPair *r, HeapTuple tuple, const char *name, bool *isnull)
{
	Datum		d = column(r, tuple, name, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* a bigint column of the new row, which must not be NULL */
static int64
new_id(const RowPair *r, const char *name)
{
	bool		isnull;
	int64		v = row_int64(r, r->new, name, &isnull);

	if (isnull)
		elog(ERROR, "coupon.outbox_capture: column \"%s\" is NULL", name);
	return v;
}

/* append the next member's "key": (keys are this file's, with nothing to escape) */
static void
add_key(Event *ev, const char *key)
{
	if (ev->payload.len > 1)
		appendStringInfoChar(&ev->payload, ',');
	appendStringInfoChar(&ev->payload, '"');
	appendStringInfoString(&ev->payload, key);
	appendStringInfoString(&ev->payload, "\":");
}

/* append "key": value (a bigint, or null) to the payload */
static void
add_int64(Event *ev, const char *key, int64 value, bool isnull)
{
	char		digits[MAXINT8LEN + 1];

	add_key(ev, key);
	if (isnull)
		appendStringInfoString(&ev->payload, "null");
	else
		appendBinaryStringInfo(&ev->payload, digits, pg_lltoa(value, digits));
}

/* append "key": a bigint column of the new row */
static void
add_column_int64(Event *ev, const RowPair *r, const char *key)
{
	bool		isnull;
	int64		v = row_int64(r, r->new, key, &isnull);

	add_int64(ev, key, v, isnull);
}

/* append "key": "value" (escaped), or null */
static void
add_text(Event *ev, const char *key, const char *value)
{
	add_key(ev, key);
	if (value == NULL)
		appendStringInfoString(&ev->payload, "null");
	else
		escape_json(&ev->payload, value);
}

/* is the row's status (old or new row) one of the two hold steps? */
static bool
hold_step(const RowPair *r, HeapTuple tuple)
{
	bool		isnull;
	Datum		d = column(r, tuple, "status", &isnull);
	char	   *status = isnull ? "" : TextDatumGetCString(d);

	return strcmp(status, "issued") == 0 || strcmp(status, "reserved") == 0;
}

/*
 * Is this change an event?  (docs/events.md, "The outbox").  Decided here
 * rather than in WHEN clauses, which the checkout's single-row writes
 * would parse again for every row.
 */
static bool
is_event(const char *table, const RowPair *r)
{
	static const char *const policy_terms[] = {
		"name", "status", "total_quantity", "per_user_limit", "budget", "issue_starts_at",
		"issue_ends_at", "valid_from", "valid_until", "valid_days", "allowed_merchants",
		"merchant_share_bp", "stackable"
	};

	if (strcmp(table, "coupon") == 0)
	{
		if (r->old == NULL)
		{
			char	   *status = new_text(r, "status");

			return status != NULL && strcmp(status, "unclaimed") != 0;
		}
		if (changed(r, "balance"))
			return true;
		/* a hold's steps are told by the reservation's events */
		return changed(r, "status") && !(hold_step(r, r->old) && hold_step(r, r->new));
	}
	if (r->old == NULL)
		return true;
	if (strcmp(table, "reservation") == 0)
		return changed(r, "status");
	if (strcmp(table, "payment") == 0)
		return changed(r, "state");
	if (strcmp(table, "policy") == 0)
	{
		for (int i = 0; i < (int) lengthof(policy_terms); i++)
			if (changed(r, policy_terms[i]))
				return true;
		return false;
	}
	return true;
}

/* the merchant that owns a policy, from the table once per policy */
static int64
policy_merchant(int64 policy_id)
{
	static const char *const cols[] = {"merchant_id"};
	PolicyMerchant *slot = &policy_merchants[(uint64) policy_id % MERCHANT_SLOTS];
	Datum		value;
	bool		isnull;

	if (slot->policy_id == policy_id)
		return slot->merchant_id;
	if (!fetch_columns(FETCH_POLICY, policy_id, 1, cols, &value, &isnull))
		return 0;				/* an operator's own INSERT: no merchant to name */
	slot->policy_id = policy_id;
	slot->merchant_id = DatumGetInt64(value);
	return slot->merchant_id;
}

/*
 * A coupon's own change.  The hold steps (issued <-> reserved with the
 * balance unchanged) never reach here: is_event() leaves them to the
 * reservation's events.
 */
static void
describe_coupon(const RowPair *r, Event *ev)
{
	char	   *status = new_text(r, "status");
	bool		bal_null;
	int64		balance = row_int64(r, r->new, "balance", &bal_null);
	int64		policy_id = new_id(r, "policy_id");

	ev->aggregate = "coupon";
	ev->aggregate_id = new_id(r, "id");
	ev->merchant_id = policy_merchant(policy_id);
	ev->merchant_null = (ev->merchant_id == 0);
	ev->user_id = new_text(r, "user_id");
	if (r->old == NULL)
		ev->type = "coupon.issued";
	else
	{
		char	   *was = old_text(r, "status");
		bool		was_null;
		int64		was_balance = row_int64(r, r->old, "balance", &was_null);

		if (strcmp(was, "unclaimed") == 0 && strcmp(status, "issued") == 0)
			ev->type = "coupon.redeemed";
		else if (strcmp(status, "expired") == 0)
			ev->type = "coupon.expired";
		else if (strcmp(status, "cancelled") == 0)
			ev->type = "coupon.revoked";
		else if (strcmp(status, "used") == 0)
			ev->type = "coupon.used";
		else if (strcmp(was, "used") == 0 ||
				 (!bal_null && !was_null && balance > was_balance))
			ev->type = "coupon.restored";
		else if (!bal_null && !was_null && balance < was_balance)
			ev->type = "coupon.used";	/* part of a balance spent */
		else
			ev->type = "coupon.changed";
	}
	add_int64(ev, "policy_id", policy_id, false);
	add_text(ev, "status", status);
	add_int64(ev, "balance", balance, bal_null);
}

/* a hold on a coupon: its events belong to the coupon */
static void
describe_reservation(const RowPair *r, Event *ev)
{
	char	   *status = new_text(r, "status");

	ev->aggregate = "coupon";
	ev->aggregate_id = new_id(r, "coupon_id");
	ev->merchant_id = new_id(r, "merchant_id");
	ev->user_id = new_text(r, "user_id");
	if (r->old == NULL || strcmp(status, "held") == 0)
		ev->type = "coupon.reserved";
	else if (strcmp(status, "confirmed") == 0)
		ev->type = "coupon.confirmed";
	else if (strcmp(status, "released") == 0)
		ev->type = "coupon.released";
	else
		ev->type = "coupon.hold_expired";
	add_int64(ev, "reservation_id", new_id(r, "id"), false);
	add_text(ev, "order_id", new_text(r, "order_id"));
	add_column_int64(ev, r, "order_amount");
	add_column_int64(ev, r, "discount");
	add_column_int64(ev, r, "payment_id");
}

/* a policy created, paused or changed */
static void
describe_policy(const RowPair *r, Event *ev)
{
	char	   *status = new_text(r, "status");

	ev->aggregate = "policy";
	ev->aggregate_id = new_id(r, "id");
	ev->merchant_id = new_id(r, "merchant_id");
	if (r->old == NULL)
		ev->type = "policy.created";
	else if (strcmp(status, "paused") == 0 && strcmp(old_text(r, "status"), "paused") != 0)
		ev->type = "policy.paused";
	else
		ev->type = "policy.changed";
	add_text(ev, "name", new_text(r, "name"));
	add_text(ev, "status", status);
	add_text(ev, "issue_method", new_text(r, "issue_method"));
	add_column_int64(ev, r, "total_quantity");
	add_column_int64(ev, r, "budget");
}

/* a payment entering a state */
static void
describe_payment(const RowPair *r, Event *ev)
{
	char	   *state = new_text(r, "state");

	ev->aggregate = "payment";
	ev->aggregate_id = new_id(r, "id");
	ev->merchant_id = new_id(r, "merchant_id");
	ev->user_id = new_text(r, "user_id");
	ev->trace_id = new_text(r, "trace_id");
	ev->type = psprintf("payment.%s", state);
	add_text(ev, "state", state);
	add_text(ev, "order_id", new_text(r, "order_id"));
	add_column_int64(ev, r, "amount");
	add_column_int64(ev, r, "discount");
	add_column_int64(ev, r, "approved_amount");
	add_column_int64(ev, r, "refunded_amount");
}

/* a refund is rare: its payment's merchant and customer by a statement */
static SavedPlan refund_payment_plan = {
	.sql = "SELECT merchant_id, user_id, trace_id FROM coupon.payment WHERE id OPERATOR(pg_catalog.=) $1",
	.nargs = 1,
	.argtypes = {INT8OID}
};

/* a refund that went through: an event of its payment */
static void
describe_refund(const RowPair *r, Event *ev)
{
	MemoryContext caller = CurrentMemoryContext;
	Datum		payment_id;
	bool		isnull;

	ev->aggregate = "payment";
	ev->aggregate_id = new_id(r, "payment_id");
	ev->type = "payment.refunded";
	payment_id = Int64GetDatum(ev->aggregate_id);
	SPI_connect();
	if (spi_run(&refund_payment_plan, &payment_id, NULL, true, 1) == 1)
	{
		MemoryContext spi = MemoryContextSwitchTo(caller);

		ev->merchant_id = spi_int64(0, 1, &ev->merchant_null);
		ev->user_id = spi_text(0, 2);
		ev->trace_id = spi_text(0, 3);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	add_int64(ev, "refund_id", new_id(r, "id"), false);
	add_column_int64(ev, r, "amount");
	appendStringInfo(&ev->payload, ",\"full_refund\":%s",
					 DatumGetBool(column(r, r->new, "full_refund", &isnull)) ? "true" : "false");
}

/* a settlement batch */
static void
describe_settlement(const RowPair *r, Event *ev)
{
	bool		isnull;
	Datum		period_end = column(r, r->new, "period_end", &isnull);

	ev->aggregate = "settlement";
	ev->aggregate_id = new_id(r, "id");
	ev->merchant_id = new_id(r, "merchant_id");
	ev->type = "settlement.created";
	add_text(ev, "period_end", isnull ? NULL : timestamptz_to_str(DatumGetTimestampTz(period_end)));
	add_column_int64(ev, r, "payout");
	add_column_int64(ev, r, "carry_out");
	add_text(ev, "status", new_text(r, "status"));
}

/* the outbox's columns, as an event waiting for its commit holds them */
static const char *const outbox_cols[] = {
	"xid", "occurred_at", "event_type", "aggregate", "aggregate_id",
	"merchant_id", "user_id", "actor", "trace_id", "payload"
};
#define OUTBOX_COLS lengthof(outbox_cols)
/* more than this many waiting at the top level are written at once */
#define OUTBOX_FLUSH_AT 10000

/* an event waiting for its transaction's commit */
typedef struct PendingEvent
{
	SubTransactionId subid;		/* written by this subtransaction */
	Datum		values[OUTBOX_COLS];	/* xid is set when written */
	bool		nulls[OUTBOX_COLS];
} PendingEvent;

/*
 * This transaction's events not yet written, in the order they happened,
 * in a context under TopTransactionContext: written together just before
 * the commit (or PREPARE), when the outbox is opened once for all of them.
 */
static MemoryContext pending_cxt = NULL;
static PendingEvent *pending = NULL;
static int	npending = 0;
static int	pending_size = 0;

/* keep the event until the commit */
static void
queue_event(Event *ev)
{
	MemoryContext old;
	PendingEvent *p;
	const char *trace_id = ev->trace_id;

	if (pending_cxt == NULL)
		pending_cxt = AllocSetContextCreate(TopTransactionContext, "coupon outbox events",
											ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(pending_cxt);
	if (npending == pending_size)
	{
		pending_size = pending_size == 0 ? 16 : 2 * pending_size;
		pending = pending == NULL ? palloc(sizeof(PendingEvent) * pending_size)
			: repalloc(pending, sizeof(PendingEvent) * pending_size);
	}
	p = &pending[npending++];
	if (trace_id == NULL && coupon_trace_id != NULL && coupon_trace_id[0] != '\0')
		trace_id = coupon_trace_id;
	appendStringInfoChar(&ev->payload, '}');
	memset(p->nulls, false, sizeof(p->nulls));
	p->subid = GetCurrentSubTransactionId();
	p->values[0] = (Datum) 0;
	p->values[1] = TimestampTzGetDatum(GetCurrentTimestamp());
	p->values[2] = CStringGetTextDatum(ev->type);
	p->values[3] = CStringGetTextDatum(ev->aggregate);
	p->values[4] = Int64GetDatum(ev->aggregate_id);
	p->values[5] = Int64GetDatum(ev->merchant_id);
	p->nulls[5] = ev->merchant_null;
	p->nulls[6] = (ev->user_id == NULL);
	p->values[6] = p->nulls[6] ? (Datum) 0 : CStringGetTextDatum(ev->user_id);
	p->values[7] = CStringGetTextDatum(GetUserNameFromId(GetOuterUserId(), false));
	p->nulls[8] = (trace_id == NULL);
	p->values[8] = p->nulls[8] ? (Datum) 0 : CStringGetTextDatum(trace_id);
	p->values[9] = CStringGetTextDatum(ev->payload.data);
	MemoryContextSwitchTo(old);
}

/* write the waiting events, in the order they happened, and forget them */
static void
flush_events(void)
{
	Datum	   *values;
	bool	   *nulls;
	Datum		xid;

	if (npending == 0)
		return;
	xid = FullTransactionIdGetDatum(GetTopFullTransactionId());
	values = MemoryContextAlloc(pending_cxt, sizeof(Datum) * OUTBOX_COLS * npending);
	nulls = MemoryContextAlloc(pending_cxt, sizeof(bool) * OUTBOX_COLS * npending);
	for (int i = 0; i < npending; i++)
	{
		pending[i].values[0] = xid;
		memcpy(values + i * OUTBOX_COLS, pending[i].values, sizeof(pending[i].values));
		memcpy(nulls + i * OUTBOX_COLS, pending[i].nulls, sizeof(pending[i].nulls));
	}
	row_append(FETCH_OUTBOX, OUTBOX_COLS, outbox_cols, npending, values, nulls);
	MemoryContextReset(pending_cxt);
	pending = NULL;
	npending = pending_size = 0;
}

/*
 * Is this row being loaded into its table by COPY FROM?  Such rows are
 * not changes but copies: a restore (pg_dump's data is COPY) brings the
 * outbox's own rows back with the rest.  A COPY of a query's output
 * (COPY (SELECT coupon.reserve(...)) TO ...) makes real changes: those are
 * events.
 */
static bool
copying_into(Relation rel)
{
	PlannedStmt *ps;
	CopyStmt   *copy;

	if (ActivePortal == NULL || ActivePortal->commandTag != CMDTAG_COPY ||
		list_length(ActivePortal->stmts) != 1)
		return false;
	ps = linitial_node(PlannedStmt, ActivePortal->stmts);
	if (ps->utilityStmt == NULL || !IsA(ps->utilityStmt, CopyStmt))
		return false;
	copy = (CopyStmt *) ps->utilityStmt;
	return copy->is_from && copy->relation != NULL &&
		strcmp(copy->relation->relname, RelationGetRelationName(rel)) == 0;
}

/*
 * coupon.outbox_capture(table): AFTER ROW trigger of the tables whose
 * changes are events; its argument names the table.
 */
Datum
coupon_outbox_capture(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	RowPair		r;
	Event		ev;
	const char *table;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || td->tg_trigger->tgnargs != 1 ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		elog(ERROR, "coupon.outbox_capture() must be an AFTER INSERT or UPDATE row trigger with one argument");
	if (copying_into(td->tg_relation))
		return PointerGetDatum(NULL);
	table = td->tg_trigger->tgargs[0];
	r.relid = RelationGetRelid(td->tg_relation);
	r.desc = RelationGetDescr(td->tg_relation);
	r.new_values = palloc(sizeof(Datum) * r.desc->natts);
	r.new_nulls = palloc(sizeof(bool) * r.desc->natts);
	if (TRIGGER_FIRED_BY_UPDATE(td->tg_event))
	{
		r.new = td->tg_newtuple;
		r.old = td->tg_trigtuple;
		r.old_values = palloc(sizeof(Datum) * r.desc->natts);
		r.old_nulls = palloc(sizeof(bool) * r.desc->natts);
		heap_deform_tuple(r.old, r.desc, r.old_values, r.old_nulls);
	}
	else
	{
		r.new = td->tg_trigtuple;
		r.old = NULL;
	}
	heap_deform_tuple(r.new, r.desc, r.new_values, r.new_nulls);
	if (!is_event(table, &r))
		return PointerGetDatum(NULL);
	memset(&ev, 0, sizeof(ev));
	ev.merchant_null = false;
	initStringInfo(&ev.payload);
	appendStringInfoChar(&ev.payload, '{');

	if (strcmp(table, "coupon") == 0)
		describe_coupon(&r, &ev);
	else if (strcmp(table, "reservation") == 0)
		describe_reservation(&r, &ev);
	else if (strcmp(table, "policy") == 0)
		describe_policy(&r, &ev);
	else if (strcmp(table, "payment") == 0)
		describe_payment(&r, &ev);
	else if (strcmp(table, "payment_refund") == 0)
		describe_refund(&r, &ev);
	else if (strcmp(table, "settlement") == 0)
		describe_settlement(&r, &ev);
	else
		elog(ERROR, "coupon.outbox_capture: no events for table \"%s\"", table);

	queue_event(&ev);
	relay_wake_pending = true;
	/* a transaction of many events writes them as it goes, at its top level */
	if (npending >= OUTBOX_FLUSH_AT && GetCurrentTransactionNestLevel() == 1)
		flush_events();
	return PointerGetDatum(NULL);
}

/* coupon.wake_relay(): wake the relay worker when this transaction commits */
Datum
coupon_wake_relay(PG_FUNCTION_ARGS)
{
	relay_wake_pending = true;
	PG_RETURN_VOID();
}

/*
 * Just before the commit (or PREPARE), write the transaction's events;
 * at its end, forget them and, after a commit that wrote some, set the
 * relay worker's latch.
 */
static void
outbox_xact_callback(XactEvent event, void *arg)
{
	CouponShared *sh;
	Latch	   *latch;

	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
	{
		flush_events();
		return;
	}
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PREPARE &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	/* the context went with TopTransactionContext */
	pending_cxt = NULL;
	pending = NULL;
	npending = pending_size = 0;
	if (!relay_wake_pending)
		return;
	relay_wake_pending = false;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;
	if ((sh = coupon_shared()) == NULL)
		return;
	SpinLockAcquire(&sh->relay.mutex);
	latch = sh->relay.resting ? NULL : sh->relay.latch;
	SpinLockRelease(&sh->relay.mutex);
	if (latch)
		SetLatch(latch);
}

/* a subtransaction rolled back: its events (and its children's) never happened */
static void
outbox_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	while (npending > 0 && pending[npending - 1].subid >= mySubid)
		npending--;
}

/* register the commit-time writes and wake-up */
void
coupon_outbox_init(void)
{
	RegisterXactCallback(outbox_xact_callback, NULL);
	RegisterSubXactCallback(outbox_subxact_callback, NULL);
}
