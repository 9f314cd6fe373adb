/* coupon--0.10--0.11.sql
 *
 * The outbox's audit-trail index becomes a btree (docs/events.md, "The
 * outbox"). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.11'" to load this file. \quit

-- events (begin)

/*
 * A btree on aggregate_id instead of a hash index: an event's aggregate is
 * almost always recent (a new coupon, a payment in flight), so its entry
 * lands on the index's right edge, in a page already in memory, where a
 * hash index put every entry in a random bucket.  Rebuilt here while the
 * outbox is locked against writes; the outbox holds only what the relay
 * has not yet purged.
 */
DROP INDEX coupon.outbox_aggregate_idx;
CREATE INDEX outbox_aggregate_idx ON coupon.outbox (aggregate_id);
COMMENT ON INDEX coupon.outbox_aggregate_idx IS 'The audit trail''s lookup by aggregate id (events()).';

-- events (end)
