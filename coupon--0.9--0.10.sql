/* coupon--0.9--0.10.sql
 *
 * Event ids taken a block at a time (docs/events.md, "Event ids"). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.10'" to load this file. \quit

-- events (begin)

/*
 * A commit takes its events' ids from a block of 1000 kept in shared
 * memory; one nextval() of the sequence reserves the next block.  Ids stay
 * unique and rise in commit order per aggregate; they are no longer dense.
 */
ALTER TABLE coupon.outbox ALTER COLUMN event_id SET INCREMENT BY 1000;

-- events (end)
