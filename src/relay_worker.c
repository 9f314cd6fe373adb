/*
 * relay_worker.c
 *		The relay background worker: publishes the outbox to a Redis stream
 *		(or as NOTIFY coupon_events), keeps the Redis read caches (through
 *		relay_cache.c), purges old events; and the relay_status view
 *		(docs/events.md).
 *
 * Order without a shared counter.  An event row carries its transaction's
 * id.  The relay remembers a snapshot, published_through: the events of
 * every transaction visible in it are out.  A round takes a newer snapshot
 * (target) and publishes the events of the transactions that became
 * visible in between, in event_id order, then makes target the new
 * published_through.  A transaction becomes visible in exactly one such
 * window, so each event goes out once per window walk; two changes of one
 * aggregate are serialised by its row lock, so the later commit has the
 * later event_id, or falls in a later window.
 *
 * At least once.  A batch is sent, its replies read, and only then is the
 * position in relay_state committed; a crash or a Redis failure between
 * the two sends the batch again.  In NOTIFY mode the notifications and the
 * position commit together.
 *
 * The audit trail's lookup.  Each batch's transaction also writes the
 * batch's coupon.outbox_lookup rows, so they commit with the position:
 * once a window is done, every event of it has its row.
 *
 * The queue.  A checkout writes its events to coupon.outbox_queue, a table
 * without an index, and notes their places in a ring in shared memory
 * (queue.c).  When a round begins a window, it first moves the queued
 * events of the transactions visible in the window's target into the
 * outbox, by those places, in the transaction that records the target; so
 * the window's events are all in the outbox when it is read.  After a
 * crash the ring is gone: the first window of the worker's life also
 * moves every queued event its target sees, by a scan of the queue.
 *
 * The checkout never waits for any of this: it writes its queue rows and
 * sets the worker's latch at commit.
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "callctx.h"
#include "coupon.h"
#include "queue.h"
#include "relay.h"
#include "relay_cache.h"
#include "shmem.h"
#include "spi_util.h"
#include "worker.h"

PG_FUNCTION_INFO_V1(coupon_relay_status_row);
PGDLLEXPORT void coupon_relay_worker_main(Datum main_arg);

/* events sent in one pipeline and committed as one position */
#define RELAY_BATCH			1000
/* event ids of a window read at once */
#define RELAY_WINDOW_CHUNK	1000000
/* the longest wait before reconnecting to Redis */
#define RELAY_BACKOFF_MAX_MS 10000
/* how often published events older than the retention are purged, and how */
#define PURGE_INTERVAL_MS	60000
#define PURGE_ROWS			10000
#define PURGE_CALLS			20

#define PG_SNAPSHOT_OID		5038	/* pg_snapshot (pg_type.dat) */
#define XID8_OID			5069	/* xid8 */
#define XID8_ARRAY_OID		271		/* xid8[] */
#define TID_ARRAY_OID		1010	/* tid[] */

/* the outbox's columns, as the queue has them too */
#define EVENT_COLUMNS "event_id, xid, occurred_at, event_type, aggregate, aggregate_id," \
	" merchant_id, user_id, actor, trace_id, payload"

/*
 * Move the queued events at places $2 whose transactions are visible in
 * the new target ($1) into the outbox; return the ordinals of the places
 * whose transactions ($3, one per place) are not, whose rows stay queued
 * (an aborted transaction's rows are never visible: their places are done
 * with, once it is below the target's xmin).
 */
static SavedPlan move_plan = {
	.sql = "WITH moved AS (DELETE FROM coupon.outbox_queue"
	"   WHERE ctid = ANY ($2) AND pg_visible_in_snapshot(xid, $1) RETURNING *),"
	" outboxed AS (INSERT INTO coupon.outbox (" EVENT_COLUMNS ") SELECT " EVENT_COLUMNS " FROM moved)"
	" SELECT i::integer FROM unnest($3) WITH ORDINALITY AS p(xid, i)"
	"  WHERE NOT pg_visible_in_snapshot(p.xid, $1)",
	.nargs = 3,
	.argtypes = {PG_SNAPSHOT_OID, TID_ARRAY_OID, XID8_ARRAY_OID}
};

/* the same for every queued event: the first window after a start */
static SavedPlan move_all_plan = {
	.sql = "WITH moved AS (DELETE FROM coupon.outbox_queue WHERE pg_visible_in_snapshot(xid, $1) RETURNING *)"
	" INSERT INTO coupon.outbox (" EVENT_COLUMNS ") SELECT " EVENT_COLUMNS " FROM moved",
	.nargs = 1,
	.argtypes = {PG_SNAPSHOT_OID}
};

static SavedPlan state_plan = {
	.sql = "SELECT published_through, target, last_event_id, skip_through"
	" FROM coupon.relay_state FOR UPDATE",
	.nargs = 0
};

static SavedPlan target_plan = {
	.sql = "UPDATE coupon.relay_state SET target = pg_current_snapshot() RETURNING target",
	.nargs = 0
};

/*
 * The window: events of transactions running at published_through ($1),
 * or begun after it, that are visible in target ($2).  Only those can be
 * unpublished, so a transaction that stays open for hours costs one index
 * probe per round, not a scan of everything written since it began.  The
 * events relay_skip() marks are in it too: they are not sent, but get
 * their lookup rows with the rest.
 */
static SavedPlan window_plan = {
	.sql = "SELECT event_id, xid FROM ("
	"   SELECT event_id, xid FROM coupon.outbox WHERE xid = ANY (ARRAY(SELECT pg_snapshot_xip($1)))"
	"   UNION ALL"
	"   SELECT event_id, xid FROM coupon.outbox"
	"    WHERE xid >= pg_snapshot_xmax($1) AND xid < pg_snapshot_xmax($2)) o"
	" WHERE pg_visible_in_snapshot(xid, $2) AND event_id > $3"
	" ORDER BY event_id LIMIT $4",
	.nargs = 4,
	.argtypes = {PG_SNAPSHOT_OID, PG_SNAPSHOT_OID, INT8OID, INT8OID}
};

/*
 * A batch: a run of the window in event_id order, from $1 to $2, whose
 * transactions are $3 (the events of those transactions in that range are
 * exactly the batch); those above $4 (relay_skip()'s mark) are sent.
 */
static SavedPlan batch_plan = {
	.sql = "SELECT event_id, event_type, aggregate, aggregate_id, merchant_id, user_id, actor, trace_id,"
	" to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), payload::text,"
	" CASE aggregate WHEN 'policy' THEN aggregate_id"
	"   WHEN 'coupon' THEN (payload->>'policy_id')::bigint END,"
	" CASE WHEN aggregate = 'coupon' AND payload->>'balance' IS NOT NULL THEN aggregate_id END"
	" FROM coupon.outbox WHERE xid = ANY($3) AND event_id BETWEEN $1 AND $2 AND event_id > $4"
	" ORDER BY event_id",
	.nargs = 4,
	.argtypes = {INT8OID, INT8OID, XID8_ARRAY_OID, INT8OID}
};

static SavedPlan notify_plan = {
	.sql = "SELECT count(pg_notify('coupon_events', json_build_object('event_id', event_id,"
	" 'type', event_type, 'aggregate', aggregate, 'aggregate_id', aggregate_id)::text))"
	" FROM (SELECT * FROM coupon.outbox WHERE xid = ANY($3) AND event_id BETWEEN $1 AND $2"
	"       AND event_id > $4 ORDER BY event_id) e",
	.nargs = 4,
	.argtypes = {INT8OID, INT8OID, XID8_ARRAY_OID, INT8OID}
};

static SavedPlan advance_plan = {
	.sql = "UPDATE coupon.relay_state SET"
	" last_event_id = CASE WHEN $3 THEN 0 ELSE $1 END,"
	" published = published + $2,"
	" last_published_at = CASE WHEN $2 > 0 THEN clock_timestamp() ELSE last_published_at END,"
	" published_through = CASE WHEN $3 THEN target ELSE published_through END,"
	" target = CASE WHEN $3 THEN NULL ELSE target END",
	.nargs = 3,
	.argtypes = {INT8OID, INT8OID, BOOLOID}
};

/*
 * The audit trail's lookup rows of a batch, sent or skipped, in the
 * transaction that records the batch published: events() reads them only
 * once the window's end makes their transactions visible in
 * published_through, so every event visible there has its row
 * (docs/events.md, "The audit trail").  A conflict is a row that
 * relay_skip() or the outbox's restore trigger gave already.
 */
static SavedPlan lookup_plan = {
	.sql = "INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)"
	" SELECT aggregate_id, event_id, xid FROM coupon.outbox"
	"  WHERE xid = ANY($3) AND event_id BETWEEN $1 AND $2"
	" ON CONFLICT DO NOTHING",
	.nargs = 3,
	.argtypes = {INT8OID, INT8OID, XID8_ARRAY_OID}
};

static SavedPlan rebuild_asked_plan = {
	.sql = "SELECT rebuild_requested_at > coalesce(rebuilt_at, '-infinity') FROM coupon.relay_state",
	.nargs = 0
};

static SavedPlan rebuilt_plan = {
	.sql = "UPDATE coupon.relay_state SET rebuilt_at = rebuild_requested_at",
	.nargs = 0
};

static SavedPlan purge_plan = {
	.sql = "SELECT coupon.purge_outbox(NULL, 10000)",	/* PURGE_ROWS */
	.nargs = 0
};

/*
 * The event ids of the window being published, read once per window (a
 * window of a million events would otherwise be read again for each
 * batch).  Valid while relay_state still says what it said when read.
 */
typedef struct WindowIds
{
	char	   *key;			/* published_through and target, as text */
	int64	   *ids;
	Datum	   *xids;			/* each event's transaction (xid8) */
	int			n;
	int			pos;			/* next to publish */
	bool		more;			/* the read stopped at RELAY_WINDOW_CHUNK */
} WindowIds;

/* what one round found in relay_state */
typedef struct RelayPosition
{
	Datum		published_through;
	Datum		target;
	bool		new_target;		/* set by this round: a window begins */
	int64		last_event_id;
	int64		skip_through;
} RelayPosition;

/* the queue's side of the worker */
typedef struct QueueSide
{
	bool		taking;			/* the ring takes this database's events */
	bool		scan;			/* the first window is still to move them all */
	uint64	   *moved;			/* places the round's moves are done with */
	int			nmoved;
} QueueSide;

/* the Redis side of the worker */
typedef struct RedisSide
{
	RedisLink  *link;
	char	   *url;			/* what link was opened with */
	int			failures;		/* in a row, for the back-off */
	bool		announced;		/* "publishing" has been logged */
	TimestampTz retry_at;
} RedisSide;

static MemoryContext loop_cxt = NULL;
static MemoryContext window_cxt = NULL;
static WindowIds window;
static QueueSide queue;

/* publish the worker's state; error NULL leaves the last error as it is */
static void
set_state(RelayWorkerState state, bool connected, const char *error)
{
	RelayShared *rs = &coupon_shared()->relay;

	SpinLockAcquire(&rs->mutex);
	rs->state = state;
	rs->connected = connected;
	rs->redis_mode = (coupon_redis_url[0] != '\0');
	rs->last_round_at = GetCurrentTimestamp();
	if (error != NULL)
		strlcpy(rs->last_error, error, RELAY_ERROR_LEN);
	SpinLockRelease(&rs->mutex);
}

/*
 * While the worker waits out a Redis back-off, committing transactions
 * leave its latch alone (outbox.c): at thousands of commits a second each
 * would wake it for nothing.
 */
static void
set_resting(bool resting)
{
	RelayShared *rs = &coupon_shared()->relay;

	SpinLockAcquire(&rs->mutex);
	rs->resting = resting;
	SpinLockRelease(&rs->mutex);
}

/* leave the slot empty when the worker exits, however it exits */
static void
release_relay(int code, Datum arg)
{
	RelayShared *rs = &coupon_shared()->relay;

	SpinLockAcquire(&rs->mutex);
	rs->pid = 0;
	rs->latch = NULL;
	rs->database = InvalidOid;
	rs->state = RELAY_STOPPED;
	rs->connected = false;
	SpinLockRelease(&rs->mutex);
	queue_stop();
}

/* qsort order of 8-byte by-value Datums (bigint, xid8): any total order will do */
static int
datum8_cmp(const void *a, const void *b)
{
	uint64		x = DatumGetUInt64(*(const Datum *) a);
	uint64		y = DatumGetUInt64(*(const Datum *) b);

	return (x > y) - (x < y);
}

/*
 * An array Datum (of bigint or xid8) of the distinct values of vals[0..n):
 * a batch's transactions, or the policies and coupons whose caches it
 * touched.
 */
static Datum
distinct_array(const Datum *vals, int n, Oid elemtype)
{
	Datum	   *distinct = palloc(sizeof(Datum) * Max(n, 1));
	int			ndistinct = 0;

	memcpy(distinct, vals, sizeof(Datum) * n);
	qsort(distinct, n, sizeof(Datum), datum8_cmp);
	for (int i = 0; i < n; i++)
		if (ndistinct == 0 || distinct[ndistinct - 1] != distinct[i])
			distinct[ndistinct++] = distinct[i];
	return PointerGetDatum(construct_array(distinct, ndistinct, elemtype, 8, FLOAT8PASSBYVAL,
										   TYPALIGN_DOUBLE));
}

/* the distinct ids of the caches a batch touched, as relay_cache_refresh takes them */
static Datum
touched_ids(const Datum *ids, int n)
{
	return n > 0 ? distinct_array(ids, n, INT8OID) : (Datum) 0;
}

/* read relay_state, locking it, and set a target if there is none */
static void
read_position(RelayPosition *pos)
{
	bool		isnull;

	if (spi_run(&state_plan, NULL, NULL, false, 1) != 1)
		elog(ERROR, "coupon.relay_state has no row");
	pos->published_through = datumCopy(spi_datum(0, 1, &isnull), false, -1);
	pos->last_event_id = spi_int64(0, 3, NULL);
	pos->skip_through = spi_int64(0, 4, NULL);
	pos->new_target = spi_isnull(0, 2);
	if (!pos->new_target)
		pos->target = datumCopy(spi_datum(0, 2, &isnull), false, -1);
	else
	{
		spi_run(&target_plan, NULL, NULL, false, 1);
		pos->target = datumCopy(spi_datum(0, 1, &isnull), false, -1);
	}
}

/*
 * Has the database's extension coupon.<name>?  One not yet updated may
 * lack a table of a later version: the relay_state of 0.9, the
 * outbox_lookup of 0.12, the outbox_queue of 0.13.  In a transaction.
 */
static bool
table_present(const char *name)
{
	return OidIsValid(get_relname_relid(name, get_namespace_oid("coupon", true)));
}

/* the same between rounds, in a transaction of its own */
static bool
table_present_now(const char *name)
{
	bool		present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	present = table_present(name);
	CommitTransactionCommand();
	return present;
}

/*
 * A window begins: move the queued events its target sees into the outbox
 * (all of them by a scan, the first time), noting the ring's places done
 * with, to be marked once the round has committed.
 */
static void
move_queued(Datum target)
{
	QueuedRow  *rows;
	int			n;
	Datum		args[3];

	if (!queue.taking)
		return;
	args[0] = target;
	if (queue.scan)
		spi_run(&move_all_plan, args, NULL, false, 0);
	n = queue_rows(&rows);
	if (n > 0)
	{
		Datum	   *tids = palloc(sizeof(Datum) * n);
		Datum	   *xids = palloc(sizeof(Datum) * n);
		bool	   *stays = palloc0(sizeof(bool) * n);
		uint64		kept;

		for (int i = 0; i < n; i++)
		{
			tids[i] = PointerGetDatum(&rows[i].tid);
			xids[i] = FullTransactionIdGetDatum(rows[i].xid);
		}
		args[1] = PointerGetDatum(construct_array(tids, n, TIDOID, sizeof(ItemPointerData), false,
												  TYPALIGN_SHORT));
		args[2] = PointerGetDatum(construct_array(xids, n, XID8_OID, 8, FLOAT8PASSBYVAL,
												  TYPALIGN_DOUBLE));
		kept = spi_run(&move_plan, args, NULL, false, 0);
		for (uint64 k = 0; k < kept; k++)
		{
			bool		isnull;

			stays[DatumGetInt32(spi_datum(k, 1, &isnull)) - 1] = true;
		}
		/* kept past the commit */
		queue.moved = MemoryContextAlloc(loop_cxt, sizeof(uint64) * n);
		for (int i = 0; i < n; i++)
			if (!stays[i])
				queue.moved[queue.nmoved++] = rows[i].pos;
	}
}

/* the window's key: both snapshots as text */
static char *
window_key(const RelayPosition *pos)
{
	Oid			out;
	bool		varlena;

	getTypeOutputInfo(PG_SNAPSHOT_OID, &out, &varlena);
	return psprintf("%s/%s", OidOutputFunctionCall(out, pos->published_through),
					OidOutputFunctionCall(out, pos->target));
}

/* (re)read the window's event ids after pos->last_event_id, if not in hand */
static void
load_window(const RelayPosition *pos)
{
	char	   *key = window_key(pos);
	Datum		args[4];
	uint64		n;
	int64		last = (window.pos > 0) ? window.ids[window.pos - 1] : 0;

	if (window.key != NULL && strcmp(window.key, key) == 0 &&
		last == pos->last_event_id && (window.pos < window.n || !window.more))
		return;
	MemoryContextReset(window_cxt);
	memset(&window, 0, sizeof(window));
	args[0] = pos->published_through;
	args[1] = pos->target;
	args[2] = Int64GetDatum(pos->last_event_id);
	args[3] = Int64GetDatum(RELAY_WINDOW_CHUNK);
	n = spi_run(&window_plan, args, NULL, true, 0);
	window.key = MemoryContextStrdup(window_cxt, key);
	window.ids = MemoryContextAlloc(window_cxt, sizeof(int64) * Max(n, 1));
	window.xids = MemoryContextAlloc(window_cxt, sizeof(Datum) * Max(n, 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		window.ids[i] = spi_int64(i, 1, NULL);
		window.xids[i] = spi_datum(i, 2, &isnull);	/* xid8 is passed by value */
	}
	window.n = (int) n;
	window.more = (n == RELAY_WINDOW_CHUNK);
}

/*
 * Queue one XADD per event of the batch that is sent; note in *policies
 * and *coupons (room for the batch each, repeats allowed) the caches the
 * events touched.  Returns how many it queued.
 */
static uint64
append_batch(RedisLink *link, Datum *args, Datum *policies, int *npolicies,
			 Datum *coupons, int *ncoupons)
{
	static const char *const fields[] = {
		"event_id", "type", "aggregate", "aggregate_id", "merchant_id", "user_id",
		"actor", "trace_id", "occurred_at", "payload"
	};
	char	   *stream = relay_key("events");
	char	   *maxlen = psprintf("%d", coupon_redis_stream_maxlen);
	uint64		n = spi_run(&batch_plan, args, NULL, true, 0);

	for (uint64 i = 0; i < n; i++)
	{
		const char *argv[6 + 2 * lengthof(fields)];
		int			argc = 0;

		argv[argc++] = "XADD";
		argv[argc++] = stream;
		if (coupon_redis_stream_maxlen > 0)
		{
			argv[argc++] = "MAXLEN";
			argv[argc++] = "~";
			argv[argc++] = maxlen;
		}
		argv[argc++] = "*";
		for (int f = 0; f < (int) lengthof(fields); f++)
		{
			if (spi_isnull(i, f + 1))
				continue;
			argv[argc++] = fields[f];
			argv[argc++] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, f + 1);
		}
		redis_append(link, argc, argv, NULL);
		if (!spi_isnull(i, 11))
			policies[(*npolicies)++] = Int64GetDatum(spi_int64(i, 11, NULL));
		if (!spi_isnull(i, 12))
			coupons[(*ncoupons)++] = Int64GetDatum(spi_int64(i, 12, NULL));
	}
	return n;
}

/*
 * Refill the caches if rebuild_redis_caches() asked for it since the last
 * refill: a transaction of its own, apart from the batches.  False after a
 * Redis failure (err says why; rolled back).
 */
static bool
maybe_rebuild(RedisLink *link, char *err, size_t errlen)
{
	bool		asked;

	worker_step_begin("refilling the Redis caches");
	asked = spi_run(&rebuild_asked_plan, NULL, NULL, true, 1) == 1 && !spi_isnull(0, 1) && spi_bool(0, 1);
	if (asked && !relay_cache_rebuild(link, err, errlen))
	{
		AbortCurrentTransaction();
		MemoryContextSwitchTo(loop_cxt);
		return false;
	}
	if (asked)
		spi_run(&rebuilt_plan, NULL, NULL, false, 0);
	worker_step_end(loop_cxt);
	return true;
}

/*
 * One round in one transaction: the next batch of the window, published
 * to Redis (link) or as notifications (link NULL) but for the events
 * relay_skip() marked, then the caches it touched, the batch's lookup rows
 * and the new position.  Returns how many events of the window it went
 * through, or -1 when Redis failed or refused the events (err says why;
 * the transaction is rolled back and nothing has moved).  A cache write
 * Redis refuses (say, a key of another type under the prefix) does not
 * hold the events back: the caches are never authoritative; it is logged
 * once.
 */
static int
relay_round(RedisLink *link, char *err, size_t errlen)
{
	static bool cache_warned = false;
	RelayPosition pos;
	int			nbatch;
	int64		nsent = 0;
	int64		last;
	bool		window_done;
	Datum		args[3];
	Datum		batch[4];

	/*
	 * Into Redis delivery is at least once anyway: a round need not wait for
	 * its commit to reach the disk (a crash sends the batch again).  As
	 * notifications, each event is sent once: those rounds do wait.
	 */
	if ((synchronous_commit == SYNCHRONOUS_COMMIT_OFF) != (link != NULL))
		SetConfigOption("synchronous_commit", link != NULL ? "off" : "on", PGC_USERSET, PGC_S_SESSION);
	worker_step_begin("publishing events");
	read_position(&pos);
	queue.nmoved = 0;
	if (pos.new_target)
		move_queued(pos.target);
	load_window(&pos);
	nbatch = Min(RELAY_BATCH, window.n - window.pos);
	if (nbatch > 0)
	{
		bool		isnull;

		batch[0] = Int64GetDatum(window.ids[window.pos]);
		batch[1] = Int64GetDatum(window.ids[window.pos + nbatch - 1]);
		batch[2] = distinct_array(window.xids + window.pos, nbatch, XID8_OID);
		batch[3] = Int64GetDatum(pos.skip_through);
		if (link == NULL)
		{
			spi_run(&notify_plan, batch, NULL, true, 1);
			nsent = spi_int64(0, 1, &isnull);
		}
		else
		{
			Datum	   *policies = palloc(sizeof(Datum) * nbatch);
			Datum	   *coupons = palloc(sizeof(Datum) * nbatch);
			int			npolicies = 0;
			int			ncoupons = 0;
			char		cache_err[RELAY_ERROR_LEN];

			nsent = append_batch(link, batch, policies, &npolicies, coupons, &ncoupons);
			if (!redis_flush(link, err, errlen))
				nbatch = -1;
			else
			{
				relay_cache_refresh(link, touched_ids(policies, npolicies),
									touched_ids(coupons, ncoupons));
				if (redis_flush(link, cache_err, sizeof(cache_err)))
					cache_warned = false;
				else if (!redis_usable(link))
				{
					strlcpy(err, cache_err, errlen);
					nbatch = -1;
				}
				else if (!cache_warned)
				{
					ereport(LOG, (errmsg("coupon relay: a Redis cache was not updated, the caches may be stale: %s",
										 cache_err)));
					cache_warned = true;
				}
			}
		}
	}
	if (nbatch < 0)
	{
		AbortCurrentTransaction();
		MemoryContextSwitchTo(loop_cxt);
		pfree(window.key);		/* read it again after the reconnect */
		window.key = NULL;
		return -1;
	}
	window.pos += nbatch;
	last = (window.pos > 0) ? window.ids[window.pos - 1] : pos.last_event_id;
	window_done = (window.pos == window.n && !window.more);
	args[0] = Int64GetDatum(last);
	args[1] = Int64GetDatum(nsent);
	args[2] = BoolGetDatum(window_done);
	/* (a database still at 0.11 keeps its index on the outbox instead) */
	if (nbatch > 0 && table_present("outbox_lookup"))
		spi_run(&lookup_plan, batch, NULL, false, 0);
	spi_run(&advance_plan, args, NULL, false, 0);
	worker_step_end(loop_cxt);
	if (pos.new_target && queue.taking)
	{
		queue_moved(queue.moved, queue.nmoved);
		queue.scan = false;
	}
	if (window_done)
	{
		MemoryContextReset(window_cxt);
		memset(&window, 0, sizeof(window));
	}
	return nbatch;
}

/*
 * After a failure: drop the link, log the first failure of an outage
 * (one line, however long it lasts), wait longer before each next try.
 */
static void
redis_failed(RedisSide *rs, const char *err)
{
	redis_close(rs->link);
	rs->link = NULL;
	if (rs->failures++ == 0)
		ereport(LOG, (errmsg("coupon relay: Redis is unavailable, events wait in the outbox: %s", err)));
	rs->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											   Min(RELAY_BACKOFF_MAX_MS, 100 << Min(rs->failures, 10)));
	set_state(RELAY_REDIS_DOWN, false, err);
}

/* connect to Redis if the settings ask for it and the back-off allows */
static void
redis_connect(RedisSide *rs)
{
	char		err[RELAY_ERROR_LEN];

	if (rs->link != NULL && strcmp(rs->url, coupon_redis_url) == 0)
		return;
	redis_close(rs->link);
	rs->link = NULL;
	if (rs->url)
		pfree(rs->url);
	rs->url = MemoryContextStrdup(TopMemoryContext, coupon_redis_url);
	if (GetCurrentTimestamp() < rs->retry_at)
		return;
	rs->link = redis_open(coupon_redis_url, coupon_redis_timeout_ms, err, sizeof(err));
	if (rs->link == NULL)
	{
		redis_failed(rs, err);
		return;
	}
	SpinLockAcquire(&coupon_shared()->relay.mutex);
	coupon_shared()->relay.reconnects++;
	SpinLockRelease(&coupon_shared()->relay.mutex);
}

/*
 * A round went through: the outage, if any, is over (one line), and the
 * next failure starts the back-off again.  Reset here rather than on
 * connecting, so that a Redis that accepts connections but refuses the
 * events is retried less and less often.
 */
static void
redis_succeeded(RedisSide *rs)
{
	if (rs->failures > 0 || !rs->announced)
		ereport(LOG, (errmsg("coupon relay: publishing to Redis")));
	rs->failures = 0;
	rs->announced = true;
}

/*
 * Purge published events past the retention, once a minute: calls of
 * PURGE_ROWS rows, each its own transaction, until one deletes fewer or
 * PURGE_CALLS have run; a purge that did not catch up comes back at the
 * next round instead of a minute later.
 */
static void
maybe_purge(TimestampTz *next_purge)
{
	int64		deleted = PURGE_ROWS;

	if (GetCurrentTimestamp() < *next_purge)
		return;
	for (int i = 0; i < PURGE_CALLS && deleted == PURGE_ROWS; i++)
	{
		bool		isnull;

		worker_step_begin("purging published events");
		spi_run(&purge_plan, NULL, NULL, false, 1);
		deleted = spi_int64(0, 1, &isnull);
		worker_step_end(loop_cxt);
	}
	*next_purge = deleted == PURGE_ROWS ? 0
		: TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PURGE_INTERVAL_MS);
}

/*
 * Have the checkouts' events go through the queue from now on, once the
 * database has it (0.13), whether or not Redis can be reached: the first
 * window moves whatever waits there from before (a crash, a restore).
 * True when it begins to now.
 */
static bool
take_queue(void)
{
	if (queue.taking || !table_present_now("outbox_queue"))
		return false;
	queue_start(MyDatabaseId);
	queue.taking = queue.scan = true;
	return true;
}

/*
 * Is the extension installed, at 0.9 or later (with its outbox)?  A
 * database still at an older version is left alone until it is updated.
 */
static bool
outbox_present(void)
{
	return worker_extension_present() && table_present_now("relay_state");
}

/* the worker's entry point */
void
coupon_relay_worker_main(Datum main_arg)
{
	RelayShared *shared = &coupon_shared()->relay;
	RedisSide	redis = {0};
	TimestampTz next_purge = 0;
	bool		have_extension = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->latch = MyLatch;
	shared->state = RELAY_STARTING;
	shared->reconnects = 0;
	shared->last_error[0] = '\0';
	SpinLockRelease(&shared->mutex);
	before_shmem_exit(release_relay, (Datum) 0);

	BackgroundWorkerInitializeConnection(coupon_database, NULL, 0);
	/* only commits in this database have events for it (outbox.c) */
	SpinLockAcquire(&shared->mutex);
	shared->database = MyDatabaseId;
	SpinLockRelease(&shared->mutex);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	/* every statement here walks an index; keep the saved plans on them as the outbox grows */
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * and none is worth compiling: with seqscan off the estimates pass
	 * jit_above_cost, and each batch then paid for an LLVM compilation
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("coupon relay worker");
	loop_cxt = AllocSetContextCreate(TopMemoryContext, "coupon relay loop", ALLOCSET_DEFAULT_SIZES);
	window_cxt = AllocSetContextCreate(TopMemoryContext, "coupon relay window", ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		long		timeout = coupon_naptime_ms;
		int			sent;
		char		err[RELAY_ERROR_LEN];

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextReset(loop_cxt);
		MemoryContextSwitchTo(loop_cxt);

		if (!have_extension && !(have_extension = outbox_present()))
			set_state(RELAY_NO_EXTENSION, false, NULL);
		else if (take_queue())
			continue;
		else if (coupon_redis_url[0] != '\0' && (redis_connect(&redis), redis.link == NULL))
		{
			/* waiting out a back-off: commits need not wake it */
			timeout = Max(1, (long) ((redis.retry_at - GetCurrentTimestamp()) / 1000));
			set_resting(true);
		}
		else
		{
			if (coupon_redis_url[0] == '\0' && redis.link != NULL)
			{
				redis_close(redis.link);
				redis.link = NULL;
			}
			set_state(RELAY_PUBLISHING, redis.link != NULL, NULL);
			sent = relay_round(redis.link, err, sizeof(err));
			if (sent >= 0 && redis.link != NULL && !maybe_rebuild(redis.link, err, sizeof(err)))
				sent = -1;
			if (sent < 0)
			{
				redis_failed(&redis, err);
				timeout = Max(1, (long) ((redis.retry_at - GetCurrentTimestamp()) / 1000));
				set_resting(true);
			}
			else
			{
				if (redis.link != NULL)
					redis_succeeded(&redis);
				set_state(RELAY_IDLE, redis.link != NULL, NULL);
				maybe_purge(&next_purge);
				/* more to send, or a commit woke it while it waited on Redis */
				if (sent == RELAY_BATCH || window.n > 0 || redis_woken())
					continue;
			}
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		set_resting(false);
	}
}

/*
 * Register the relay worker when coupon.relay is on; only while the
 * library is being preloaded and not under pg_upgrade, and it starts once
 * recovery has finished, like the saga's workers.
 */
void
coupon_relay_worker_init(void)
{
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade || !coupon_relay_enabled)
		return;
	worker_register("coupon_relay_worker_main", "coupon relay worker", "coupon relay worker", 0);
}

/* coupon.relay_status_row(): the relay worker's live state */
Datum
coupon_relay_status_row(PG_FUNCTION_ARGS)
{
	static const char *const state_names[] = {
		[RELAY_STOPPED] = "stopped",
		[RELAY_STARTING] = "starting",
		[RELAY_IDLE] = "idle",
		[RELAY_PUBLISHING] = "publishing",
		[RELAY_REDIS_DOWN] = "redis_down",
		[RELAY_NO_EXTENSION] = "no_extension",
	};
	CouponShared *sh = coupon_shared();
	RelayShared rs;
	TupleDesc	desc;
	Datum		values[7];
	bool		nulls[7] = {0};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "coupon.relay_status_row must return a row");
	memset(&rs, 0, sizeof(rs));
	if (sh != NULL)
	{
		SpinLockAcquire(&sh->relay.mutex);
		rs = sh->relay;
		SpinLockRelease(&sh->relay.mutex);
	}
	values[0] = Int32GetDatum(rs.pid);
	nulls[0] = (rs.pid == 0);
	values[1] = CStringGetTextDatum(rs.pid == 0 && RecoveryInProgress() ? "standby" : state_names[rs.state]);
	values[2] = CStringGetTextDatum(coupon_redis_url[0] != '\0' ? "redis" : "notify");
	values[3] = BoolGetDatum(rs.connected);
	values[4] = Int64GetDatum((int64) rs.reconnects);
	values[5] = CStringGetTextDatum(rs.last_error);
	nulls[5] = (rs.last_error[0] == '\0');
	values[6] = TimestampTzGetDatum(rs.last_round_at);
	nulls[6] = (rs.last_round_at == 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
