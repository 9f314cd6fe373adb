/* coupon--0.8--0.9.sql
 *
 * Events out of the database (docs/events.md): the outbox, written by row
 * triggers in the transaction of the change it records, the relay
 * worker's state, and the Redis read caches; the metrics the DBA's
 * exporter scrapes and the indexes that keep them cheap
 * (docs/operations.md, "Metrics"). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.9'" to load this file. \quit

-- events (begin)
-- events (end)


/* ---------------------------------------------------------------- */


-- metrics (begin)

/* ------------------------------------------------------------ metrics
 * What the DBA's prometheus-postgres-exporter reads (its queries file is
 * scripts/exporter_queries.yaml, docs/operations.md "Metrics") as the
 * login role it connects with, a member of coupon_monitor only; and the
 * indexes that keep each of its queries to the rows it reports, however
 * many payments and coupons the tables hold. */

/*
 * stuck_payments reads its needs_attention arm through this index and its
 * other arm through payment_due_idx (a bitmap OR of the two), instead of
 * the whole table.  Only payments in needs_attention are in it, so the
 * saga's writes rarely touch it; state was already in payment_due_idx's
 * predicate, so payment updates lose no HOT update to it.
 */
CREATE INDEX payment_attention_idx ON coupon.payment (updated_at) WHERE state = 'needs_attention';
COMMENT ON INDEX coupon.payment_attention_idx IS
'Payments in needs_attention, by when they stopped: with payment_due_idx, keeps stuck_payments and payment_backlog from reading the whole table.';

/*
 * policy_stats counted every coupon of every policy even when asked only
 * for stock: the coupon counts now come from a per-policy subquery that
 * the planner leaves out when none of its columns is asked for.  Same
 * columns, same rows.  No index on coupon mentions status (HOT updates,
 * see coupon--0.1.sql), so the counts themselves still read each asked-for
 * policy's coupons through coupon_policy_user_idx.
 */
CREATE OR REPLACE VIEW coupon.policy_stats AS
SELECT p.id AS policy_id,
	   p.merchant_id,
	   p.name,
	   p.issue_method,
	   p.status,
	   p.total_quantity,
	   (SELECT sum(s.remaining) FROM coupon.policy_stock s WHERE s.policy_id = p.id)::bigint AS stock_remaining,
	   c.unclaimed,
	   c.issued,
	   c.available,
	   c.reserved,
	   c.used,
	   c.expired,
	   c.cancelled,
	   p.budget,
	   p.budget_used
  FROM coupon.policy p
  LEFT JOIN LATERAL (
	SELECT count(*) FILTER (WHERE k.status = 'unclaimed') AS unclaimed,
		   count(*) FILTER (WHERE k.status <> 'unclaimed') AS issued,
		   count(*) FILTER (WHERE k.status = 'issued') AS available,
		   count(*) FILTER (WHERE k.status = 'reserved') AS reserved,
		   count(*) FILTER (WHERE k.status = 'used') AS used,
		   count(*) FILTER (WHERE k.status = 'expired') AS expired,
		   count(*) FILTER (WHERE k.status = 'cancelled') AS cancelled
	  FROM coupon.coupon k
	 WHERE k.policy_id = p.id) c ON true
 WHERE coupon.sees_merchant(p.merchant_id);

CREATE VIEW coupon.payment_backlog AS
SELECT s.state,
	   coalesce(b.payments, 0) AS payments,
	   b.oldest_updated_at
  FROM (VALUES ('pending'), ('authorizing'), ('approved'), ('voiding'), ('releasing'),
			   ('refunding'), ('needs_attention')) AS s (state)
  LEFT JOIN (SELECT p.state, count(*) AS payments, min(p.updated_at) AS oldest_updated_at
			   FROM coupon.payment p
			  WHERE p.state IN ('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')
				 OR p.state = 'needs_attention'
			  GROUP BY p.state) b ON b.state = s.state;
COMMENT ON VIEW coupon.payment_backlog IS
'Payments the saga has not finished, per state (a row for every such state, 0 when none): read through payment_due_idx and payment_attention_idx, never the final payments. For monitoring (coupon_monitor).';
COMMENT ON COLUMN coupon.payment_backlog.state IS 'A state the saga drives (pending, authorizing, approved, voiding, releasing, refunding) or needs_attention.';
COMMENT ON COLUMN coupon.payment_backlog.payments IS 'Payments in that state now.';
COMMENT ON COLUMN coupon.payment_backlog.oldest_updated_at IS 'When the one of them that changed longest ago last changed (NULL when none).';

CREATE FUNCTION coupon.throttle_status(OUT kind text, OUT blocked bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'coupon_throttle_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.throttle_status() IS
'Attempts the wrong-code throttle refused since the server started, per kind: code (redeem_code(), PT429 too_many_code_attempts) and client (client credentials, PT429 too_many_credential_attempts). Read from shared memory without waiting; no rows when coupon is not in shared_preload_libraries (nothing is throttled then). For monitoring (coupon_monitor).';

REVOKE ALL ON FUNCTION coupon.throttle_status() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.throttle_status() TO coupon_admin, coupon_monitor;
GRANT SELECT ON coupon.payment_backlog TO coupon_admin, coupon_monitor;

-- metrics (end)
