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
 * The audit trail's lookup by aggregate id, off the checkout's path: the
 * relay adds the events of each window in the transaction that marks the
 * window published (relay_worker.c), so every event visible in
 * relay_state.published_through has its row here; events() reads the rest,
 * the unpublished tail, by the outbox's primary key.  purge_outbox()
 * deletes the rows with their events.
 */
CREATE TABLE coupon.outbox_lookup (
	aggregate_id bigint NOT NULL,
	event_id bigint NOT NULL,
	xid xid8 NOT NULL,
	PRIMARY KEY (aggregate_id, event_id)
);
COMMENT ON TABLE coupon.outbox_lookup IS 'The published events of each aggregate id, for events(): filled by the relay worker as it publishes (and by relay_skip()), purged with the events; never written by a checkout.';
COMMENT ON COLUMN coupon.outbox_lookup.aggregate_id IS 'The event''s outbox.aggregate_id.';
COMMENT ON COLUMN coupon.outbox_lookup.event_id IS 'The event''s outbox.event_id.';
COMMENT ON COLUMN coupon.outbox_lookup.xid IS 'The event''s outbox.xid: with event_id, the outbox''s primary key.';

ALTER TABLE coupon.outbox_lookup ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox_lookup TO coupon_admin USING (true);
COMMENT ON POLICY admin_all ON coupon.outbox_lookup IS 'coupon_admin reads and writes every row; no other role has privileges on the table: merchants and customers reach rows only through the functions, which run as the owner.';

/*
 * The events already published (visible in the relay's position) get their
 * rows now, the relay's position locked meanwhile; the relay adds the
 * others as it publishes them.  The lookup is complete before the index
 * goes.
 */
INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
SELECT o.aggregate_id, o.event_id, o.xid
  FROM coupon.outbox o, (SELECT published_through FROM coupon.relay_state FOR UPDATE) r
 WHERE pg_visible_in_snapshot(o.xid, r.published_through);
DROP INDEX coupon.outbox_aggregate_idx;
COMMENT ON TABLE coupon.outbox IS 'Business events, one row each, written in the transaction of the change they record; the relay worker publishes them (Redis stream or NOTIFY coupon_events) and purges them after coupon.outbox_retention. Also the audit trail of coupons and policies (events(), through outbox_lookup; docs/events.md).';

GRANT SELECT ON coupon.outbox_lookup TO coupon_admin;
SELECT pg_catalog.pg_extension_config_dump('coupon.outbox_lookup', '');

CREATE OR REPLACE FUNCTION coupon.relay_skip(through_event_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	through bigint := coalesce(through_event_id, (SELECT max(event_id) FROM coupon.outbox), 0);
	was pg_snapshot;
	now_through pg_snapshot;
BEGIN
	IF through_event_id IS NULL THEN
		/* everything committed so far counts as published */
		SELECT published_through INTO was FROM coupon.relay_state FOR UPDATE;
		UPDATE coupon.relay_state
		   SET skip_through = greatest(skip_through, through),
			   published_through = coupon.snapshot_before_self(), target = NULL, last_event_id = 0
		RETURNING published_through INTO now_through;
		/* as the relay does at the end of a window: the audit trail's lookup */
		INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
		SELECT o.aggregate_id, o.event_id, o.xid FROM coupon.outbox o
		 WHERE o.event_id <= through
			OR (pg_visible_in_snapshot(o.xid, now_through) AND NOT pg_visible_in_snapshot(o.xid, was))
		ON CONFLICT DO NOTHING;
	ELSE
		UPDATE coupon.relay_state SET skip_through = greatest(skip_through, through);
	END IF;
	RETURN through;
END
$fn$;
COMMENT ON FUNCTION coupon.relay_skip(bigint) IS 'Marks events as published, so the relay never sends them: with no argument every event committed so far (for a dump restored into another cluster, whose transaction ids mean nothing here; run it before the application writes, as an event whose transaction is still running with a lower id would be skipped too), or every event up to through_event_id. Without an argument it also gives the events it marks their outbox_lookup rows, as the relay does. Returns the id. The platform (coupon_admin).';

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
	/* the oldest events first, by the xid index; published ones only, with their lookup rows */
	WITH gone AS (
		DELETE FROM coupon.outbox
		 WHERE ctid = ANY (ARRAY(
				SELECT o.ctid FROM coupon.outbox o
				 WHERE o.xid < (SELECT pg_snapshot_xmin(published_through) FROM coupon.relay_state)
				   AND o.occurred_at < pg_catalog.now() - keep
				 ORDER BY o.xid LIMIT max_rows))
		RETURNING aggregate_id, event_id),
	unlisted AS (
		DELETE FROM coupon.outbox_lookup l
		 WHERE (l.aggregate_id, l.event_id) IN (SELECT g.aggregate_id, g.event_id FROM gone g))
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
COMMENT ON FUNCTION coupon.events(text, bigint) IS 'The audit trail of one coupon, policy, payment or settlement batch: its events still in the outbox (coupon.outbox_retention), oldest first: the published ones through outbox_lookup, the others by the outbox''s primary key. A merchant-bound session sees only its own merchant''s events (none without a merchant).';

-- events (end)
