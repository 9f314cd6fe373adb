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
-- metrics (end)
