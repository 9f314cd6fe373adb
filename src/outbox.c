/*
 * outbox.c
 *		The outbox: one row per business event, written by row triggers in
 *		the transaction of the change, and the relay worker's wake-up at
 *		commit (docs/events.md).
 *
 * The triggers sit on the tables rather than in each function that writes
 * them, so that every path to a change (the C checkout, the PL/pgSQL
 * functions, the saga worker, an operator's own UPDATE) leaves its event.
 * The checkout's single-row writes (rowwrite.c) take the trigger out of
 * their own copy of the table's triggers and hand the row they wrote to
 * outbox_capture_row(), which describes it with the same code, without the
 * executor queueing it and fetching it back.  The events of a transaction
 * are kept in its memory and appended just before its commit, with ids
 * taken from a block of the sequence held in shared memory.
 *
 * Which changes are events, and what an event says, is decided here from
 * the row's old and new values.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_trigger.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "tcop/pquery.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "coupon.h"
#include "fetch.h"
#include "outbox.h"
#include "pgcompat.h"
#include "queue.h"
#include "rowwrite.h"
#include "shmem.h"
#include "spi_util.h"

PG_FUNCTION_INFO_V1(coupon_outbox_capture);
PG_FUNCTION_INFO_V1(coupon_wake_relay);

/* one event, before it is written */
typedef struct Event
{
	const char *type;			/* points into a constant or the payload's context */
	bool		type_made;		/* type is not a literal of this file */
	const char *aggregate;
	int64		aggregate_id;
	int64		merchant_id;
	bool		merchant_null;
	Datum		user_id;		/* text, or 0: none */
	const char *trace_id;		/* NULL: none */
	StringInfo	payload;		/* the backend's one payload buffer */
} Event;

/*
 * The row whose change is described: its new version and, for an update,
 * the old, both taken apart (descriptions read several columns).
 */
typedef struct RowPair
{
	Oid			relid;
	TupleDesc	desc;
	bool		update;			/* false: an insert, no old version */
	const Datum *new_values;
	const bool *new_nulls;
	const Datum *old_values;
	const bool *old_nulls;
} RowPair;

/* which version of the row a column is read from */
#define NEW_ROW false
#define OLD_ROW true

static bool relay_wake_pending = false;

/* a policy's merchant, which never changes: asked once per policy */
#define MERCHANT_SLOTS 256
typedef struct PolicyMerchant
{
	int64		policy_id;		/* 0 = empty */
	int64		merchant_id;
} PolicyMerchant;
static PolicyMerchant policy_merchants[MERCHANT_SLOTS];

/*
 * The column numbers the descriptions read, by table and name: the names
 * are the literals of this file, so their addresses identify them.
 */
#define ATTNUM_SLOTS 128
typedef struct AttnumSlot
{
	Oid			relid;
	const char *name;
	int			attnum;
} AttnumSlot;
static AttnumSlot attnums[ATTNUM_SLOTS];

/* the capture trigger's function, found on first use */
static Oid	capture_fn = InvalidOid;

/* the outbox's event id sequence and its increment, found on first use */
static Oid	event_seq = InvalidOid;
static int64 event_block;

/* forget the policies' merchants, the column numbers and the trigger function (cacheinval.c) */
void
outbox_reset(void)
{
	memset(policy_merchants, 0, sizeof(policy_merchants));
	memset(attnums, 0, sizeof(attnums));
	capture_fn = InvalidOid;
	event_seq = InvalidOid;
}

/*
 * A column's number by name, remembered per table and name: a slot is
 * found from both without searching, with one neighbour to try when two
 * pairs share the slot (the tables share column names such as "status").
 */
static int
attnum_of(const RowPair *r, const char *name)
{
	uint32		h = (uint32) (((uintptr_t) name >> 3) * 31 + r->relid);
	AttnumSlot *slot = &attnums[h % ATTNUM_SLOTS];

	if (slot->name == name && slot->relid == r->relid)
		return slot->attnum;
	if (slot->name != NULL)
	{
		AttnumSlot *next = &attnums[(h + 1) % ATTNUM_SLOTS];

		if (next->name == name && next->relid == r->relid)
			return next->attnum;
		if (next->name == NULL)
			slot = next;
	}
	slot->name = NULL;
	slot->attnum = SPI_fnumber(r->desc, name);
	if (slot->attnum <= 0)
		elog(ERROR, "coupon.outbox_capture: the row has no column \"%s\"", name);
	slot->relid = r->relid;
	slot->name = name;
	return slot->attnum;
}

/* a column's value by name, or isnull */
static Datum
column(const RowPair *r, bool old, const char *name, bool *isnull)
{
	int			i = attnum_of(r, name) - 1;

	if (!old)
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
	old_value = column(r, OLD_ROW, name, &old_null);
	new_value = column(r, NEW_ROW, name, &new_null);
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
	Datum		d = column(r, NEW_ROW, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* a varlena column of the new row as it is (not copied), or 0 */
static Datum
new_value(const RowPair *r, const char *name)
{
	bool		isnull;
	Datum		d = column(r, NEW_ROW, name, &isnull);

	return isnull ? (Datum) 0 : d;
}

/* the same of the old row */
static char *
old_text(const RowPair *r, const char *name)
{
	bool		isnull;
	Datum		d = column(r, OLD_ROW, name, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}

/* a bigint column of a row version; *isnull says whether it is NULL */
static int64
row_int64(const RowPair *r, bool old, const char *name, bool *isnull)
{
	Datum		d = column(r, old, name, isnull);

	return *isnull ? 0 : DatumGetInt64(d);
}

/* a bigint column of the new row, which must not be NULL */
static int64
new_id(const RowPair *r, const char *name)
{
	bool		isnull;
	int64		v = row_int64(r, NEW_ROW, name, &isnull);

	if (isnull)
		elog(ERROR, "coupon.outbox_capture: column \"%s\" is NULL", name);
	return v;
}

/*
 * Append the next member's "key": (keys are this file's, with nothing to
 * escape) and make room for a value of up to extra bytes after it.
 */
static void
add_key(Event *ev, const char *key, int extra)
{
	StringInfo	buf = ev->payload;
	int			klen = strlen(key);
	char	   *p;

	enlargeStringInfo(buf, klen + 4 + extra);
	p = buf->data + buf->len;
	if (buf->len > 1)
		*p++ = ',';
	*p++ = '"';
	memcpy(p, key, klen);
	p += klen;
	*p++ = '"';
	*p++ = ':';
	*p = '\0';
	buf->len = p - buf->data;
}

/* append "key": value (a bigint, or null) to the payload */
static void
add_int64(Event *ev, const char *key, int64 value, bool isnull)
{
	StringInfo	buf = ev->payload;

	add_key(ev, key, MAXINT8LEN + 1);
	if (isnull)
	{
		memcpy(buf->data + buf->len, "null", 5);
		buf->len += 4;
	}
	else
		buf->len += pg_lltoa(value, buf->data + buf->len);
}

/* append "key": a bigint column of the new row */
static void
add_column_int64(Event *ev, const RowPair *r, const char *key)
{
	bool		isnull;
	int64		v = row_int64(r, NEW_ROW, key, &isnull);

	add_int64(ev, key, v, isnull);
}

/* append "key": "value" (escaped), or null */
static void
add_text(Event *ev, const char *key, const char *value)
{
	add_key(ev, key, 0);
	if (value == NULL)
		appendStringInfoString(ev->payload, "null");
	else
		escape_json(ev->payload, value);
}

/* is a text value this string?  (compared in place: most rows are not events) */
static bool
text_is(Datum value, const char *s)
{
	struct varlena *t = pg_detoast_datum_packed((struct varlena *) DatumGetPointer(value));
	size_t		len = strlen(s);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), s, len) == 0;
}

/* is the row's status (old or new row) one of the two hold steps? */
static bool
hold_step(const RowPair *r, bool old)
{
	bool		isnull;
	Datum		d = column(r, old, "status", &isnull);

	return !isnull && (text_is(d, "issued") || text_is(d, "reserved"));
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
		if (!r->update)
		{
			bool		isnull;
			Datum		status = column(r, NEW_ROW, "status", &isnull);

			return !isnull && !text_is(status, "unclaimed");
		}
		if (changed(r, "balance"))
			return true;
		/* a hold's steps are told by the reservation's events */
		return changed(r, "status") && !(hold_step(r, OLD_ROW) && hold_step(r, NEW_ROW));
	}
	if (!r->update)
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
	int64		balance = row_int64(r, NEW_ROW, "balance", &bal_null);
	int64		policy_id = new_id(r, "policy_id");

	ev->aggregate = "coupon";
	ev->aggregate_id = new_id(r, "id");
	ev->merchant_id = policy_merchant(policy_id);
	ev->merchant_null = (ev->merchant_id == 0);
	ev->user_id = new_value(r, "user_id");
	if (!r->update)
		ev->type = "coupon.issued";
	else
	{
		char	   *was = old_text(r, "status");
		bool		was_null;
		int64		was_balance = row_int64(r, OLD_ROW, "balance", &was_null);

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
	ev->user_id = new_value(r, "user_id");
	if (!r->update || strcmp(status, "held") == 0)
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
	if (!r->update)
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
	ev->user_id = new_value(r, "user_id");
	ev->trace_id = new_text(r, "trace_id");
	ev->type = psprintf("payment.%s", state);
	ev->type_made = true;
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
		char	   *user_id = spi_text(0, 2);

		ev->merchant_id = spi_int64(0, 1, &ev->merchant_null);
		ev->user_id = user_id ? CStringGetTextDatum(user_id) : (Datum) 0;
		ev->trace_id = spi_text(0, 3);
		MemoryContextSwitchTo(spi);
	}
	SPI_finish();
	add_int64(ev, "refund_id", new_id(r, "id"), false);
	add_column_int64(ev, r, "amount");
	appendStringInfo(ev->payload, ",\"full_refund\":%s",
					 DatumGetBool(column(r, NEW_ROW, "full_refund", &isnull)) ? "true" : "false");
}

/* a settlement batch */
static void
describe_settlement(const RowPair *r, Event *ev)
{
	bool		isnull;
	Datum		period_end = column(r, NEW_ROW, "period_end", &isnull);

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
	"event_id", "xid", "occurred_at", "event_type", "aggregate", "aggregate_id",
	"merchant_id", "user_id", "actor", "trace_id", "payload"
};
enum
{
	COL_EVENT_ID, COL_XID, COL_OCCURRED_AT, COL_TYPE, COL_AGGREGATE, COL_AGGREGATE_ID,
	COL_MERCHANT, COL_USER, COL_ACTOR, COL_TRACE, COL_PAYLOAD
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

/* the acting role's name, as text, until a role changes (actor_reset) */
static Oid	actor_user = InvalidOid;
static Datum actor_name = (Datum) 0;

/*
 * Names replaced during the transaction: its waiting events may still
 * point at them, so they are freed only at its end.
 */
static List *retired_names = NIL;

/* a text value kept for the backend's life (in TopMemoryContext) */
static Datum
kept_text(const char *s)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	Datum		text = PointerGetDatum(cstring_to_text(s));

	MemoryContextSwitchTo(old);
	return text;
}

/*
 * The text value of one of this file's literals (an event type or an
 * aggregate), made once per backend and never freed: literals are
 * identified by address, in a table with room for all of them.
 */
static Datum
literal_text(const char *s)
{
	static struct
	{
		const char *s;
		Datum		text;
	}			literals[64];
	int			slot = ((uintptr_t) s >> 3) % lengthof(literals);

	for (int probe = 0; probe < (int) lengthof(literals); probe++, slot = (slot + 1) % lengthof(literals))
	{
		if (literals[slot].s == s)
			return literals[slot].text;
		if (literals[slot].s == NULL)
		{
			literals[slot].text = kept_text(s);
			literals[slot].s = s;
			return literals[slot].text;
		}
	}
	elog(ERROR, "coupon outbox: more event literals than the table holds");
}

/* the acting role's name as text, looked up again only when the role or a name changes */
static Datum
actor_text(void)
{
	if (GetOuterUserId() != actor_user)
	{
		Datum		name = kept_text(GetUserNameFromId(GetOuterUserId(), false));

		if (actor_name != (Datum) 0)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			retired_names = lappend(retired_names, DatumGetPointer(actor_name));
			MemoryContextSwitchTo(old);
		}
		actor_name = name;
		actor_user = GetOuterUserId();
	}
	return actor_name;
}

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
	appendStringInfoChar(ev->payload, '}');
	memset(p->nulls, false, sizeof(p->nulls));
	p->subid = GetCurrentSubTransactionId();
	p->values[COL_EVENT_ID] = p->values[COL_XID] = (Datum) 0;	/* set when written */
	p->values[COL_OCCURRED_AT] = TimestampTzGetDatum(GetCurrentTimestamp());
	p->values[COL_TYPE] = ev->type_made ? CStringGetTextDatum(ev->type) : literal_text(ev->type);
	p->values[COL_AGGREGATE] = literal_text(ev->aggregate);
	p->values[COL_AGGREGATE_ID] = Int64GetDatum(ev->aggregate_id);
	p->values[COL_MERCHANT] = Int64GetDatum(ev->merchant_id);
	p->nulls[COL_MERCHANT] = ev->merchant_null;
	p->nulls[COL_USER] = (ev->user_id == (Datum) 0);
	p->values[COL_USER] = p->nulls[COL_USER] ? (Datum) 0 : datumCopy(ev->user_id, false, -1);
	p->values[COL_ACTOR] = actor_text();
	p->nulls[COL_TRACE] = (trace_id == NULL);
	p->values[COL_TRACE] = p->nulls[COL_TRACE] ? (Datum) 0 : CStringGetTextDatum(trace_id);
	p->values[COL_PAYLOAD] = CStringGetTextDatum(ev->payload->data);
	MemoryContextSwitchTo(old);
}

/* find the outbox's event id sequence and its increment, the size of a block of ids */
static void
find_event_sequence(void)
{
	Relation	rel = fetch_open(FETCH_OUTBOX, RowExclusiveLock);
	Oid			seq = coupon_identity_sequence(rel, SPI_fnumber(RelationGetDescr(rel), "event_id"));
	HeapTuple	tuple;

	table_close(rel, NoLock);
	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seq));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for sequence %u", seq);
	event_block = ((Form_pg_sequence) GETSTRUCT(tuple))->seqincrement;
	ReleaseSysCache(tuple);
	if (event_block < 1)
		elog(ERROR, "the outbox's event id sequence must rise");
	/* an ALTER SEQUENCE resets this backend's copy of the increment */
	cacheinval_watch(seq);
	event_seq = seq;
}

/*
 * Ids for n events, rising.  They come from the outbox's identity sequence
 * a block at a time: its increment (1000) is the block's size, and the
 * block being handed out is in shared memory, so a commit takes its ids
 * under a spinlock instead of calling nextval() once per event.  Ids rise
 * in the order they are taken, as nextval()'s do: a block is put in place
 * only if it starts past the one it replaces, and a transaction that
 * waited for another's row lock takes its ids after that one's commit took
 * its own.  After a restart the first block is the sequence's next, past
 * every id taken before (nextval() is WAL-logged before any commit that
 * used its block).  The block is the database's as well as the sequence's:
 * databases copied from one template have sequences of the same id, and
 * one must not take ids its own sequence never reserved (saga test
 * event_ids_template).  Two such databases writing at once take turns,
 * each putting in a block of its own when it finds the other's.
 */
static void
take_event_ids(int n, int64 *ids)
{
	CouponShared *sh = coupon_shared();
	EventIdBlock *b;
	Oid			seq;
	int64		block;
	int			i = 0;

	if (!OidIsValid(event_seq))
		find_event_sequence();
	/* nextval() may take in an invalidation that resets event_seq */
	seq = event_seq;
	block = event_block;
	if (sh == NULL)
	{
		/* not preloaded: no shared memory, one nextval() per event */
		for (i = 0; i < n; i++)
			ids[i] = nextval_internal(seq, false);
		return;
	}
	b = &sh->event_ids;
	for (;;)
	{
		int64		start;

		SpinLockAcquire(&b->mutex);
		if (b->seq == seq && b->db == MyDatabaseId)
			while (i < n && b->next < b->end)
				ids[i++] = b->next++;
		SpinLockRelease(&b->mutex);
		if (i == n)
			return;
		start = nextval_internal(seq, false);
		SpinLockAcquire(&b->mutex);
		if (b->seq != seq || b->db != MyDatabaseId || start >= b->end)
		{
			b->db = MyDatabaseId;
			b->seq = seq;
			b->next = start;
			b->end = start + block;
		}
		SpinLockRelease(&b->mutex);
	}
}

/*
 * Write the waiting events, in the order they happened, and forget them:
 * at the commit, into the queue when the relay takes them from there (no
 * index to write: queue.c); else, and at a PREPARE, whose commit may be
 * far off, into the outbox.
 */
static void
flush_events(bool commit)
{
	Datum	   *values;
	bool	   *nulls;
	int64	   *ids;
	FullTransactionId top;
	Datum		xid;

	if (npending == 0)
		return;
	top = GetTopFullTransactionId();
	xid = FullTransactionIdGetDatum(top);
	values = MemoryContextAlloc(pending_cxt, sizeof(Datum) * OUTBOX_COLS * npending);
	nulls = MemoryContextAlloc(pending_cxt, sizeof(bool) * OUTBOX_COLS * npending);
	ids = MemoryContextAlloc(pending_cxt, sizeof(int64) * npending);
	take_event_ids(npending, ids);
	for (int i = 0; i < npending; i++)
	{
		pending[i].values[COL_EVENT_ID] = Int64GetDatum(ids[i]);
		pending[i].values[COL_XID] = xid;
		memcpy(values + i * OUTBOX_COLS, pending[i].values, sizeof(pending[i].values));
		memcpy(nulls + i * OUTBOX_COLS, pending[i].nulls, sizeof(pending[i].nulls));
	}
	if (commit && fetch_present(FETCH_OUTBOX_QUEUE) && queue_reserve(top, npending))
	{
		ItemPointerData *tids = MemoryContextAlloc(pending_cxt, sizeof(ItemPointerData) * npending);

		row_append(FETCH_OUTBOX_QUEUE, OUTBOX_COLS, outbox_cols, npending, values, nulls, tids);
		queue_fill(tids, npending);
	}
	else
		row_append(FETCH_OUTBOX, OUTBOX_COLS, outbox_cols, npending, values, nulls, NULL);
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
 * The buffer an event's payload is built in, emptied: one per backend, as
 * the payload is copied when the event is queued.
 */
static StringInfo
payload_buffer(void)
{
	static StringInfo buf = NULL;

	if (buf == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		buf = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(buf);
	return buf;
}

/* describe the change if it is an event, and keep the event until the commit */
static void
capture(const char *table, const RowPair *r)
{
	Event		ev;

	if (!is_event(table, r))
		return;
	memset(&ev, 0, sizeof(ev));
	ev.payload = payload_buffer();
	appendStringInfoChar(ev.payload, '{');

	if (strcmp(table, "coupon") == 0)
		describe_coupon(r, &ev);
	else if (strcmp(table, "reservation") == 0)
		describe_reservation(r, &ev);
	else if (strcmp(table, "policy") == 0)
		describe_policy(r, &ev);
	else if (strcmp(table, "payment") == 0)
		describe_payment(r, &ev);
	else if (strcmp(table, "payment_refund") == 0)
		describe_refund(r, &ev);
	else if (strcmp(table, "settlement") == 0)
		describe_settlement(r, &ev);
	else
		elog(ERROR, "coupon.outbox_capture: no events for table \"%s\"", table);

	queue_event(&ev);
	relay_wake_pending = true;
	/*
	 * a transaction of many events writes them as it goes, at its top level,
	 * into the outbox: the queue's ring is for rows of committing
	 * transactions
	 */
	if (npending >= OUTBOX_FLUSH_AT && GetCurrentTransactionNestLevel() == 1)
		flush_events(false);
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
	Datum	   *new_values;
	bool	   *new_nulls;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_AFTER(td->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(td->tg_event) || td->tg_trigger->tgnargs != 1 ||
		TRIGGER_FIRED_BY_DELETE(td->tg_event))
		elog(ERROR, "coupon.outbox_capture() must be an AFTER INSERT or UPDATE row trigger with one argument");
	if (copying_into(td->tg_relation))
		return PointerGetDatum(NULL);
	memset(&r, 0, sizeof(r));
	r.relid = RelationGetRelid(td->tg_relation);
	r.desc = RelationGetDescr(td->tg_relation);
	r.update = TRIGGER_FIRED_BY_UPDATE(td->tg_event);
	new_values = palloc(sizeof(Datum) * r.desc->natts);
	new_nulls = palloc(sizeof(bool) * r.desc->natts);
	heap_deform_tuple(r.update ? td->tg_newtuple : td->tg_trigtuple, r.desc, new_values, new_nulls);
	r.new_values = new_values;
	r.new_nulls = new_nulls;
	if (r.update)
	{
		Datum	   *old_values = palloc(sizeof(Datum) * r.desc->natts);
		bool	   *old_nulls = palloc(sizeof(bool) * r.desc->natts);

		heap_deform_tuple(td->tg_trigtuple, r.desc, old_values, old_nulls);
		r.old_values = old_values;
		r.old_nulls = old_nulls;
	}
	capture(td->tg_trigger->tgargs[0], &r);
	return PointerGetDatum(NULL);
}

/* would the trigger fire, as the executor decides (session_replication_role)? */
static bool
trigger_fires(const Trigger *t)
{
	if (SessionReplicationRole == SESSION_REPLICATION_ROLE_REPLICA)
		return t->tgenabled == TRIGGER_FIRES_ALWAYS || t->tgenabled == TRIGGER_FIRES_ON_REPLICA;
	return t->tgenabled == TRIGGER_FIRES_ALWAYS || t->tgenabled == TRIGGER_FIRES_ON_ORIGIN;
}

/* is the trigger the outbox's own, in the shape this file creates it? */
static bool
is_capture_trigger(const Trigger *t)
{
	if (!OidIsValid(capture_fn))
	{
		List	   *name = list_make2(makeString("coupon"), makeString("outbox_capture"));

		capture_fn = LookupFuncName(name, 0, NULL, true);
		list_free_deep(name);
	}
	return t->tgfoid == capture_fn && TRIGGER_FOR_ROW(t->tgtype) && TRIGGER_FOR_AFTER(t->tgtype) &&
		!TRIGGER_FOR_DELETE(t->tgtype) && !TRIGGER_FOR_TRUNCATE(t->tgtype) &&
		t->tgnargs == 1 && t->tgqual == NULL && t->tgnattr == 0 &&
		t->tgoldtable == NULL && t->tgnewtable == NULL && !t->tgdeferrable;
}

/*
 * Take the outbox trigger out of a single-row write's copy of the table's
 * triggers, so that the write captures its event itself (outbox_capture_row)
 * instead of queueing it for the AFTER trigger machinery; see outbox.h.
 */
void
outbox_take_trigger(TriggerDesc *trigdesc, OutboxCapture *oc)
{
	memset(oc, 0, sizeof(*oc));
	if (trigdesc == NULL)
		return;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		Trigger    *t = &trigdesc->triggers[i];

		if (!is_capture_trigger(t))
			continue;
		if (trigger_fires(t))
		{
			oc->table = t->tgargs[0];
			oc->on_insert = TRIGGER_FOR_INSERT(t->tgtype);
			oc->on_update = TRIGGER_FOR_UPDATE(t->tgtype);
		}
		trigdesc->numtriggers--;
		memmove(t, t + 1, sizeof(Trigger) * (trigdesc->numtriggers - i));
		break;
	}
	/* with no other AFTER ROW trigger, the executor need not queue the row at all */
	trigdesc->trig_insert_after_row = false;
	trigdesc->trig_update_after_row = false;
	for (int i = 0; i < trigdesc->numtriggers; i++)
	{
		int16		type = trigdesc->triggers[i].tgtype;

		trigdesc->trig_insert_after_row |=
			TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_AFTER, TRIGGER_TYPE_INSERT);
		trigdesc->trig_update_after_row |=
			TRIGGER_TYPE_MATCHES(type, TRIGGER_TYPE_ROW, TRIGGER_TYPE_AFTER, TRIGGER_TYPE_UPDATE);
	}
}

/* capture the event of a row a single-row write inserted or updated; see outbox.h */
void
outbox_capture_row(const OutboxCapture *oc, Relation rel,
				   const Datum *old_values, const bool *old_nulls,
				   const Datum *new_values, const bool *new_nulls)
{
	RowPair		r;
	bool		update = (old_values != NULL);

	if (oc->table == NULL || (update ? !oc->on_update : !oc->on_insert))
		return;
	r.relid = RelationGetRelid(rel);
	r.desc = RelationGetDescr(rel);
	r.update = update;
	r.new_values = new_values;
	r.new_nulls = new_nulls;
	r.old_values = old_values;
	r.old_nulls = old_nulls;
	capture(oc->table, &r);
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
 * latch of the relay worker serving this database.
 */
static void
outbox_xact_callback(XactEvent event, void *arg)
{
	CouponShared *sh;
	Latch	   *latch;

	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
	{
		flush_events(event == XACT_EVENT_PRE_COMMIT);
		return;
	}
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT && event != XACT_EVENT_PREPARE &&
		event != XACT_EVENT_PARALLEL_COMMIT && event != XACT_EVENT_PARALLEL_ABORT)
		return;
	queue_release(event == XACT_EVENT_COMMIT);
	/* the context went with TopTransactionContext */
	pending_cxt = NULL;
	pending = NULL;
	npending = pending_size = 0;
	list_free_deep(retired_names);
	retired_names = NIL;
	if (!relay_wake_pending)
		return;
	relay_wake_pending = false;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PARALLEL_COMMIT)
		return;
	if ((sh = coupon_shared()) == NULL)
		return;
	/*
	 * Not while it waits out a back-off, and not from another database than
	 * the one it serves: it would wake only to find nothing of its own (in
	 * a busy database, a wake-up per commit kept it running on a CPU the
	 * commits needed).
	 */
	SpinLockAcquire(&sh->relay.mutex);
	latch = (sh->relay.resting || sh->relay.database != MyDatabaseId) ? NULL : sh->relay.latch;
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

/* a role was renamed or dropped: look the acting role's name up again */
static void
actor_reset(Datum arg, int cacheid, uint32 hashvalue)
{
	actor_user = InvalidOid;
}

/* register the commit-time writes and wake-up, and the role names' invalidation */
void
coupon_outbox_init(void)
{
	CacheRegisterSyscacheCallback(AUTHOID, actor_reset, (Datum) 0);
	RegisterXactCallback(outbox_xact_callback, NULL);
	RegisterSubXactCallback(outbox_subxact_callback, NULL);
}
