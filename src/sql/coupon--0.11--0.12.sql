/* coupon--0.11--0.12.sql
 *
 * The audit trail's lookup by aggregate leaves the checkout's path: the
 * outbox loses its aggregate_id index, and the relay fills
 * coupon.outbox_lookup as it publishes (docs/events.md, "The audit
 * trail"). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.12'" to load this file. \quit

-- events (begin)

/*
 * The relay's position stays as it is until the update commits: no relay
 * round, relay_skip() or purge meanwhile (a purge already running is
 * waited for), so the fill below, a statement of its own, sees every
 * event the position counts as published and nothing goes under it.
 */
LOCK TABLE coupon.relay_state IN ACCESS EXCLUSIVE MODE;

/*
 * Rows put into the outbox by SQL: a restore's COPY, or an INSERT by hand
 * (the events of a change are written below SQL, and fire no statement
 * trigger).  Those the relay's position already counts as published get
 * their lookup rows here, as the relay would have given them.
 */
CREATE FUNCTION coupon.outbox_restored() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
	SELECT n.aggregate_id, n.event_id, n.xid
	  FROM restored n, coupon.relay_state r
	 WHERE pg_visible_in_snapshot(n.xid, r.published_through)
	ON CONFLICT DO NOTHING;
	RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION coupon.outbox_restored() IS 'Trigger: gives rows put into the outbox by SQL (a restore''s COPY, an INSERT by hand) that the relay''s position counts as published their outbox_lookup rows (docs/events.md, "The audit trail").';

/*
 * The audit trail's lookup by aggregate id, off the checkout's path: the
 * relay adds each batch's rows in the transaction that records the batch
 * published (relay_worker.c), so once a window is done every event visible
 * in relay_state.published_through has its row here; events() reads the
 * rest, the unpublished tail, by the outbox's primary key.  purge_outbox()
 * deletes the rows with their events.  Not dumped: a restore's COPY of the
 * outbox makes them again (outbox_restored()).  The key holds the outbox's
 * own, (xid, event_id), whole.
 */
CREATE TABLE coupon.outbox_lookup (
	aggregate_id bigint NOT NULL,
	event_id bigint NOT NULL,
	xid xid8 NOT NULL,
	PRIMARY KEY (aggregate_id, event_id, xid)
);
COMMENT ON TABLE coupon.outbox_lookup IS 'The published events of each aggregate id, for events(): filled by the relay worker as it publishes (and by relay_skip() and a restore), purged with the events; never written by a checkout. Not dumped: a restore makes it again from the outbox.';
COMMENT ON COLUMN coupon.outbox_lookup.aggregate_id IS 'The event''s outbox.aggregate_id.';
COMMENT ON COLUMN coupon.outbox_lookup.event_id IS 'The event''s outbox.event_id.';
COMMENT ON COLUMN coupon.outbox_lookup.xid IS 'The event''s outbox.xid: with event_id, the outbox''s primary key.';

ALTER TABLE coupon.outbox_lookup ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox_lookup TO coupon_admin USING (true);
COMMENT ON POLICY admin_all ON coupon.outbox_lookup IS 'coupon_admin reads and writes every row; no other role has privileges on the table: merchants and customers reach rows only through the functions, which run as the owner.';

CREATE TRIGGER outbox_restored AFTER INSERT ON coupon.outbox
	REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.outbox_restored();
COMMENT ON TRIGGER outbox_restored ON coupon.outbox IS 'Gives the rows of a restore''s COPY (or an INSERT by hand) their outbox_lookup rows; the events the extension writes fire no statement trigger.';

/*
 * The events already published get their rows now; the relay adds the
 * others as it publishes them.  (FOR UPDATE: under REPEATABLE READ a
 * position that moved since the update's snapshot stops the update
 * instead of filling too little.)  The lookup is complete before the index
 * goes.
 */
INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
SELECT o.aggregate_id, o.event_id, o.xid
  FROM coupon.outbox o, (SELECT published_through FROM coupon.relay_state FOR UPDATE) r
 WHERE pg_visible_in_snapshot(o.xid, r.published_through);
DROP INDEX coupon.outbox_aggregate_idx;
COMMENT ON TABLE coupon.outbox IS 'Business events, one row each, written in the transaction of the change they record; the relay worker publishes them (Redis stream or NOTIFY coupon_events) and purges them after coupon.outbox_retention. Also the audit trail of coupons and policies (events(), through outbox_lookup; docs/events.md).';

GRANT SELECT ON coupon.outbox_lookup TO coupon_admin;
REVOKE ALL ON FUNCTION coupon.outbox_restored() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.outbox_restored() TO coupon_admin;

CREATE OR REPLACE FUNCTION coupon.relay_skip(through_event_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	through bigint := coalesce(through_event_id, (SELECT max(event_id) FROM coupon.outbox), 0);
BEGIN
	IF through_event_id IS NULL THEN
		/* everything committed so far counts as published */
		UPDATE coupon.relay_state
		   SET skip_through = greatest(skip_through, through),
			   published_through = coupon.snapshot_before_self(), target = NULL, last_event_id = 0;
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
COMMENT ON FUNCTION coupon.relay_skip(bigint) IS 'Marks events as published, so the relay never sends them: with no argument every event committed so far (for a dump restored into another cluster, whose transaction ids mean nothing here; run it before the application writes, as an event whose transaction is still running with a lower id would be skipped too), or every event up to through_event_id. Without an argument it also gives every event its position counts as published its outbox_lookup row (the repair after a restore that fired no trigger). Returns the id. The platform (coupon_admin).';

CREATE OR REPLACE FUNCTION coupon.purge_outbox(older_than interval DEFAULT NULL, max_rows integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	keep interval := coalesce(older_than, pg_catalog.current_setting('coupon.outbox_retention', true)::interval, interval '7 days');
	n bigint;
BEGIN
	IF max_rows IS NULL OR max_rows < 1 THEN
		PERFORM coupon.raise_error('invalid_max_rows', 'max_rows must be at least 1');
	END IF;
	/* no relay_skip() or update fills lookup rows meanwhile for what goes */
	PERFORM FROM coupon.relay_state FOR SHARE;
	/* the oldest events first, by the xid index; published ones only, with their lookup rows */
	WITH gone AS (
		DELETE FROM coupon.outbox
		 WHERE ctid = ANY (ARRAY(
				SELECT o.ctid FROM coupon.outbox o
				 WHERE o.xid < (SELECT pg_snapshot_xmin(published_through) FROM coupon.relay_state)
				   AND o.occurred_at < pg_catalog.now() - keep
				 ORDER BY o.xid LIMIT max_rows))
		RETURNING aggregate_id, event_id, xid),
	unlisted AS (
		DELETE FROM coupon.outbox_lookup l
		 WHERE (l.aggregate_id, l.event_id, l.xid) IN (SELECT g.aggregate_id, g.event_id, g.xid FROM gone g))
	SELECT count(*) INTO n FROM gone;
	RETURN n;
END
$fn$;
COMMENT ON FUNCTION coupon.purge_outbox(interval, integer) IS 'Deletes published events older than older_than (default coupon.outbox_retention), oldest first, at most max_rows of them, with their outbox_lookup rows; returns how many. The relay worker calls it once a minute. The platform (coupon_admin). Errors: PT400 invalid_max_rows.';

CREATE OR REPLACE FUNCTION coupon.events(aggregate text, aggregate_id bigint)
RETURNS SETOF coupon.outbox
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $fn$
	/*
	 * Published events through their lookup rows; the rest (transactions
	 * running at the relay's position, or begun after it) by the primary key.
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
		   AND o.aggregate_id = events.aggregate_id) o
	 WHERE o.aggregate = events.aggregate
	   AND coupon.sees_merchant(coalesce(o.merchant_id, -1))
	 ORDER BY o.event_id
$fn$;
COMMENT ON FUNCTION coupon.events(text, bigint) IS 'The audit trail of one coupon, policy, payment or settlement batch: its events still in the outbox (coupon.outbox_retention), oldest first: the published ones through outbox_lookup, the others by the outbox''s primary key (all of them, then, where no relay publishes: coupon.relay off, or not coupon.database). A merchant-bound session sees only its own merchant''s events (none without a merchant).';

-- events (end)
