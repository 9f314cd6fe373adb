/* coupon--0.12--0.13.sql
 *
 * A checkout's events go to coupon.outbox_queue, a table without an
 * index, and the relay moves them into the outbox as it begins the window
 * that publishes them (docs/events.md, "The queue").  The new library
 * takes effect at the server's restart (its shared memory); until then
 * the events go to the outbox as before. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.13'" to load this file. \quit

-- events (begin)

/*
 * Where a checkout's events wait for the relay, milliseconds when it keeps
 * up: a table without an index, so that an event costs the checkout one
 * heap row and nothing more.  The relay finds the rows through a ring in
 * shared memory and moves them into the outbox as it begins the window
 * that publishes them (relay_worker.c, queue.c).  Rows go to the outbox
 * itself when no relay takes them (coupon.relay off, another database)
 * or the ring is full.  The outbox's columns, in its order, with their
 * NOT NULLs and comments.
 */
CREATE TABLE coupon.outbox_queue (LIKE coupon.outbox INCLUDING COMMENTS);
/* the relay deletes what it moves: a FOR ALL TABLES publication needs the rows' identity */
ALTER TABLE coupon.outbox_queue REPLICA IDENTITY FULL;
COMMENT ON TABLE coupon.outbox_queue IS 'Events of committed checkouts waiting for the relay worker to move them into the outbox, which it does as it begins the window that publishes them (docs/events.md, "The queue"). No index: a checkout writes only a heap row here. Same columns as the outbox; events() and relay_status read it too.';

ALTER TABLE coupon.outbox_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox_queue TO coupon_admin USING (true);
COMMENT ON POLICY admin_all ON coupon.outbox_queue IS 'coupon_admin reads and writes every row; no other role has privileges on the table: merchants and customers reach rows only through the functions, which run as the owner.';

GRANT SELECT ON coupon.outbox_queue TO coupon_admin;
SELECT pg_catalog.pg_extension_config_dump('coupon.outbox_queue', '');

CREATE FUNCTION coupon.outbox_queue_counts(OUT queued bigint, OUT queue_full bigint)
AS 'MODULE_PATHNAME', 'coupon_outbox_queue_counts'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.outbox_queue_counts() IS 'Internal: the queue''s counters from shared memory, for relay_status.';
REVOKE ALL ON FUNCTION coupon.outbox_queue_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.outbox_queue_counts() TO coupon_admin, coupon_monitor;

CREATE OR REPLACE FUNCTION coupon.outbox_backlog(OUT backlog bigint, OUT oldest_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $fn$
	/*
	 * unpublished: running at published_through, or begun after it; and
	 * every committed event still queued
	 */
	SELECT count(*), min(o.occurred_at)
	  FROM (SELECT xid, occurred_at, event_id FROM coupon.outbox
			 WHERE xid = ANY (ARRAY(SELECT pg_snapshot_xip(published_through) FROM coupon.relay_state))
			UNION ALL
			SELECT xid, occurred_at, event_id FROM coupon.outbox
			 WHERE xid >= (SELECT pg_snapshot_xmax(published_through) FROM coupon.relay_state)
			UNION ALL
			SELECT xid, occurred_at, event_id FROM coupon.outbox_queue) o
	 WHERE o.event_id > (SELECT skip_through FROM coupon.relay_state)
	   AND pg_visible_in_snapshot(o.xid, pg_current_snapshot())
$fn$;
COMMENT ON FUNCTION coupon.outbox_backlog() IS 'Internal: committed events not yet published, and when the oldest of them happened (reads, by the outbox''s key, only the events of transactions running at the relay''s position or begun after it, and the queue).';

CREATE OR REPLACE FUNCTION coupon.events(aggregate text, aggregate_id bigint)
RETURNS SETOF coupon.outbox
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
/* the queue, read whole, then costs as much as a compilation is worth */
SET jit = off
AS $fn$
	/*
	 * Published events through their lookup rows; the rest (transactions
	 * running at the relay's position, or begun after it) by the primary
	 * key, and those still in the queue.
	 */
	SELECT o.* FROM (
		SELECT o.* FROM coupon.outbox_lookup l
		  JOIN coupon.outbox o ON o.xid = l.xid AND o.event_id = l.event_id
		 WHERE l.aggregate_id = events.aggregate_id
		   AND pg_visible_in_snapshot(o.xid, (SELECT published_through FROM coupon.relay_state))
		UNION ALL
		SELECT o.* FROM coupon.outbox o
		 WHERE o.xid = ANY (ARRAY(SELECT pg_snapshot_xip(published_through) FROM coupon.relay_state))
		   AND o.aggregate_id = events.aggregate_id
		UNION ALL
		SELECT o.* FROM coupon.outbox o
		 WHERE o.xid >= (SELECT pg_snapshot_xmax(published_through) FROM coupon.relay_state)
		   AND o.aggregate_id = events.aggregate_id
		UNION ALL
		SELECT q.* FROM coupon.outbox_queue q
		 WHERE q.aggregate_id = events.aggregate_id) o
	 WHERE o.aggregate = events.aggregate
	   AND coupon.sees_merchant(coalesce(o.merchant_id, -1))
	 ORDER BY o.event_id
$fn$;
COMMENT ON FUNCTION coupon.events(text, bigint) IS 'The audit trail of one coupon, policy, payment or settlement batch: its events still in the outbox (coupon.outbox_retention), oldest first: the published ones through outbox_lookup, the others by the outbox''s primary key (all of them, then, where no relay publishes: coupon.relay off, or not coupon.database) and from the queue. A merchant-bound session sees only its own merchant''s events (none without a merchant).';

CREATE OR REPLACE FUNCTION coupon.relay_skip(through_event_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	through bigint := coalesce(through_event_id,
							   greatest((SELECT max(event_id) FROM coupon.outbox),
										(SELECT max(event_id) FROM coupon.outbox_queue)), 0);
BEGIN
	IF through_event_id IS NULL THEN
		/* everything committed so far counts as published */
		UPDATE coupon.relay_state
		   SET skip_through = greatest(skip_through, through),
			   published_through = coupon.snapshot_before_self(), target = NULL, last_event_id = 0;
		/*
		 * and is in the outbox, as the relay would have moved it: a statement
		 * whose snapshot sees the new position's transactions
		 */
		WITH moved AS (DELETE FROM coupon.outbox_queue RETURNING *)
		INSERT INTO coupon.outbox (event_id, xid, occurred_at, event_type, aggregate, aggregate_id,
								   merchant_id, user_id, actor, trace_id, payload)
		SELECT event_id, xid, occurred_at, event_type, aggregate, aggregate_id,
			   merchant_id, user_id, actor, trace_id, payload
		  FROM moved;
		/*
		 * and has its lookup row, as the relay would give it: a statement of
		 * its own, whose snapshot sees the new position's transactions.  Every
		 * event the new position counts as published, not only those of the
		 * window just closed: after a restore that fired no trigger (a
		 * data-only one with triggers disabled) this is the repair.
		 */
		INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
		SELECT o.aggregate_id, o.event_id, o.xid FROM coupon.outbox o, coupon.relay_state r
		 WHERE pg_visible_in_snapshot(o.xid, r.published_through)
		ON CONFLICT DO NOTHING;
	ELSE
		UPDATE coupon.relay_state SET skip_through = greatest(skip_through, through);
	END IF;
	RETURN through;
END
$fn$;
COMMENT ON FUNCTION coupon.relay_skip(bigint) IS 'Marks events as published, so the relay never sends them: with no argument every event committed so far (for a dump restored into another cluster, whose transaction ids mean nothing here; run it before the application writes, as an event whose transaction is still running with a lower id would be skipped too), or every event up to through_event_id. Without an argument it also moves the queued events into the outbox and gives every event its position counts as published its outbox_lookup row (the repair after a restore that fired no trigger). Returns the id. The platform (coupon_admin).';

CREATE OR REPLACE VIEW coupon.relay_status AS
SELECT w.pid, w.state, w.mode, w.connected,
	   b.backlog,
	   CASE WHEN b.backlog = 0 THEN 0
			ELSE extract(epoch FROM pg_catalog.clock_timestamp() - b.oldest_at)::double precision END AS lag_seconds,
	   r.published, r.last_published_at, w.reconnects, w.last_error, w.last_round_at,
	   r.rebuild_requested_at, r.rebuilt_at, q.queued, q.queue_full
  FROM coupon.relay_status_row() w, coupon.outbox_backlog() b, coupon.relay_state r,
	   coupon.outbox_queue_counts() q;
COMMENT ON COLUMN coupon.relay_status.queued IS 'Events written to the queue since the server started (the checkout''s way when the relay takes them).';
COMMENT ON COLUMN coupon.relay_status.queue_full IS 'Events written to the outbox itself since the server started because the queue''s ring (coupon.outbox_queue_size) was full: the relay is behind or down.';

-- events (end)
