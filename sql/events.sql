-- events.sql: the outbox (docs/events.md): which changes are events, what
-- they say, savepoints, COPY, the audit trail's tenancy, the relay's
-- position functions.  The relay worker does not serve this database.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
CREATE OR REPLACE FUNCTION try(stmt text, VARIADIC args text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	st text;
	dt text;
BEGIN
	EXECUTE format(stmt, VARIADIC args);
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, dt = PG_EXCEPTION_DETAIL;
	RETURN st || ' ' || CASE WHEN dt LIKE '{%' THEN coalesce(dt::jsonb ->> 'reason', '?') ELSE '-' END;
END
$fn$;
-- events since a mark, without ids or times
CREATE OR REPLACE FUNCTION events_since(mark bigint)
RETURNS TABLE (event_type text, aggregate text, payload text, user_id text, actor text, trace_id text)
LANGUAGE sql AS $fn$
	SELECT o.event_type, o.aggregate, regexp_replace(o.payload::text, '[0-9]{4,}', 'N', 'g'),
		   o.user_id, o.actor, o.trace_id
	  FROM coupon.outbox o WHERE o.event_id > mark ORDER BY o.event_id
$fn$;
SELECT coalesce(max(event_id), 0) AS mark FROM coupon.outbox \gset

SELECT id AS m FROM coupon.create_merchant('events shop') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'ten', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS bp FROM coupon.create_policy(:m, 'gift', 'balance', 10000, per_user_limit => NULL) \gset
-- a coupon's story: issued, held, released, held, confirmed and used
SELECT id AS c FROM coupon.issue(:p, 'ev-user') \gset
SELECT (coupon.release((coupon.reserve(:c, 'ev-user', :m, 'ev-o1', 5000)).id)).status;
SELECT (coupon.confirm((coupon.reserve(:c, 'ev-user', :m, 'ev-o2', 5000)).id)).status;
-- a balance coupon spent in part: its balance is in the event
SELECT id AS b FROM coupon.issue(:bp, 'ev-user') \gset
SELECT (coupon.confirm((coupon.reserve(:b, 'ev-user', :m, 'ev-o3', 3000)).id)).status;
-- a policy paused, then a change that is no event (nothing a term says)
SELECT status FROM coupon.set_policy_status(:p, 'paused');
UPDATE coupon.policy SET updated_at = now() WHERE id = :p;
SELECT * FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- the acting role and the request's trace id are recorded
SET coupon.trace_id = 'trace-events-1';
SELECT id AS c2 FROM coupon.issue(:bp, 'ev-other') \gset
RESET coupon.trace_id;
SELECT event_type, actor, trace_id FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- rolled back: nothing; a savepoint rolled back: nothing of its own
BEGIN;
SELECT (coupon.issue(:bp, 'ev-ghost')).status;
ROLLBACK;
BEGIN;
SELECT (coupon.issue(:bp, 'ev-keep')).status;
SAVEPOINT s;
SELECT (coupon.issue(:bp, 'ev-drop')).status;
ROLLBACK TO SAVEPOINT s;
SELECT (coupon.issue(:bp, 'ev-after')).status;
COMMIT;
SELECT event_type, user_id FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- COPY FROM into a table records nothing (a restore); COPY of a query's
-- output that changes things records what it changed
CREATE TEMP TABLE copied AS SELECT * FROM coupon.coupon WHERE id = :c;
UPDATE copied SET id = id + 1000000, user_id = 'ev-copied', user_seq = NULL;
COPY copied TO '/tmp/coupon_events_regress.copy';
COPY coupon.coupon FROM '/tmp/coupon_events_regress.copy';
COPY (SELECT (coupon.issue(:bp, 'ev-copy-to')).status) TO STDOUT;
SELECT event_type, user_id FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- the C writes capture their events themselves, and follow the trigger as
-- the executor would: disabled, or in a replica session, no events (unless
-- it fires always); another AFTER trigger on the table still fires
CREATE TABLE public.noted (coupon_id bigint);
CREATE FUNCTION public.note_coupon() RETURNS trigger LANGUAGE plpgsql AS
$fn$BEGIN INSERT INTO public.noted VALUES (NEW.id); RETURN NULL; END$fn$;
CREATE TRIGGER zz_note AFTER INSERT ON coupon.coupon FOR EACH ROW EXECUTE FUNCTION public.note_coupon();
SELECT id AS c3 FROM coupon.issue(:bp, 'ev-noted') \gset
SELECT count(*) AS noted FROM public.noted WHERE coupon_id = :c3;
DROP TRIGGER zz_note ON coupon.coupon;
DROP TABLE public.noted;
DROP FUNCTION public.note_coupon();
ALTER TABLE coupon.coupon DISABLE TRIGGER coupon_outbox;
SELECT (coupon.issue(:bp, 'ev-disabled')).status;
ALTER TABLE coupon.coupon ENABLE TRIGGER coupon_outbox;
SET session_replication_role = replica;
SELECT (coupon.issue(:bp, 'ev-replica')).status;
RESET session_replication_role;
ALTER TABLE coupon.coupon ENABLE ALWAYS TRIGGER coupon_outbox;
SET session_replication_role = replica;
SELECT (coupon.issue(:bp, 'ev-always')).status;
RESET session_replication_role;
ALTER TABLE coupon.coupon ENABLE TRIGGER coupon_outbox;
SELECT event_type, user_id FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- the actor is the role's current name
CREATE ROLE coupon_ev_actor IN ROLE coupon_admin;
SET ROLE coupon_ev_actor;
SELECT (coupon.issue(:bp, 'ev-actor1')).status;
RESET ROLE;
ALTER ROLE coupon_ev_actor RENAME TO coupon_ev_actor2;
SET ROLE coupon_ev_actor2;
SELECT (coupon.issue(:bp, 'ev-actor2')).status;
RESET ROLE;
DROP ROLE coupon_ev_actor2;
SELECT event_type, user_id, actor FROM events_since(:mark);
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- one transaction of many kinds of events and three roles: each event keeps
-- its own texts until the commit writes it (a role's name replaced in the
-- middle, or one event type's text another's, must not show through)
CREATE ROLE coupon_ev_a IN ROLE coupon_admin;
CREATE ROLE coupon_ev_b IN ROLE coupon_admin;
BEGIN;
SET LOCAL ROLE coupon_ev_a;
SELECT id AS mix FROM coupon.issue(:bp, 'ev-mix') \gset
SET LOCAL ROLE coupon_ev_b;
SELECT (coupon.release((coupon.reserve(:mix, 'ev-mix', :m, 'ev-o-mix', 5000)).id)).status;
RESET ROLE;
SELECT (coupon.confirm((coupon.reserve(:mix, 'ev-mix', :m, 'ev-o-mix2', 5000)).id)).status;
SELECT status FROM coupon.revoke_coupon((coupon.issue(:bp, 'ev-mix2')).id, 'ev-mix');
COMMIT;
DROP ROLE coupon_ev_a, coupon_ev_b;
SELECT event_type, aggregate, user_id, actor FROM events_since(:mark);

-- event ids are taken a block of the sequence's increment at a time: this
-- transaction's three are consecutive, and higher than any before
SELECT seqincrement AS id_block FROM pg_sequence WHERE seqrelid = 'coupon.outbox_event_id_seq'::regclass;
BEGIN;
SELECT count(coupon.issue(:bp, 'ev-block' || g)) FROM generate_series(1, 3) g;
COMMIT;
SELECT max(event_id) - min(event_id) AS spread, min(event_id) > :mark AS rising
  FROM coupon.outbox WHERE user_id LIKE 'ev-block%';
-- a transaction of more events than one heap_multi_insert writes (64):
-- every row written, each in the primary key
BEGIN;
SELECT count(coupon.issue(:bp, 'ev-many' || g)) FROM generate_series(1, 150) g;
COMMIT;
SET enable_seqscan = off;
SELECT count(*) AS by_key, count(DISTINCT event_id) AS ids FROM coupon.outbox
 WHERE xid = (SELECT xid FROM coupon.outbox WHERE user_id = 'ev-many1');
RESET enable_seqscan;
SELECT max(event_id) AS mark FROM coupon.outbox \gset

-- the audit trail: a coupon's events in order; a merchant-bound session sees
-- its own merchant's, another merchant's session none
SELECT event_type FROM coupon.events('coupon', :c);
SELECT id AS m2 FROM coupon.create_merchant('other events shop') \gset
SET ROLE coupon_merchant;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m)::text, false) IS NOT NULL AS as_m;
SELECT count(*) AS own_events FROM coupon.events('coupon', :c);
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT count(*) AS others_events FROM coupon.events('coupon', :c);
RESET request.jwt.claims;
RESET ROLE;
SET ROLE coupon_customer;
SELECT try('SELECT coupon.events(%L, %s)', 'coupon', :'c') AS customer_reads_events;
RESET ROLE;

-- the relay's position counts the calling transaction as running
BEGIN;
SELECT pg_visible_in_snapshot(pg_current_xact_id(), coupon.snapshot_before_self()) AS self_visible;
ROLLBACK;
-- the backlog: this database's events wait (no relay serves it); skipped,
-- none waits
SELECT backlog > 0 AS waiting FROM coupon.relay_status;
SELECT count(*) AS lookup_rows_unpublished FROM coupon.outbox_lookup;
SELECT coupon.relay_skip() = (SELECT max(event_id) FROM coupon.outbox) AS skipped_to_newest;
SELECT backlog, lag_seconds FROM coupon.relay_status;
-- the audit trail's lookup: the skip gave every event its row, as the relay
-- does when it publishes; events() reads the published ones through it and
-- a later, unpublished one by the outbox's key, each once
SELECT count(*) = (SELECT count(*) FROM coupon.outbox) AS every_event_listed,
	   count(*) = count(DISTINCT (aggregate_id, event_id)) AS listed_once
  FROM coupon.outbox_lookup l
 WHERE EXISTS (SELECT FROM coupon.outbox o WHERE o.xid = l.xid AND o.event_id = l.event_id
                 AND o.aggregate_id = l.aggregate_id);
SELECT status FROM coupon.set_policy_status(:p, 'active');
SELECT event_type FROM coupon.events('policy', :p);
SELECT array_agg(event_id ORDER BY event_id) = (SELECT array_agg(event_id ORDER BY event_id) FROM coupon.outbox
												  WHERE aggregate = 'policy' AND aggregate_id = :p) AS all_of_them
  FROM coupon.events('policy', :p);
SELECT event_type FROM coupon.events('coupon', :c);
-- purge: nothing is old enough; bad input
SELECT coupon.purge_outbox() AS purged;
SELECT coupon.purge_outbox(interval '0', 100000) > 0 AS purged_published;
-- with their lookup rows; the unpublished event stays
SELECT count(*) AS lookup_rows_left FROM coupon.outbox_lookup;
SELECT event_type FROM coupon.events('policy', :p);
SELECT try('SELECT coupon.purge_outbox(NULL, 0)') AS zero_rows;

-- the queue: no relay serves this database, so its checkouts write the
-- outbox itself; a row put in the queue by hand, as a checkout's commit
-- does when the relay takes its events, counts in the backlog and events()
-- reads it; relay_skip() moves it into the outbox, with its lookup row
SELECT count(*) AS queued FROM coupon.outbox_queue;
SELECT backlog AS backlog_before FROM coupon.relay_status;
INSERT INTO coupon.outbox_queue
SELECT event_id + 1000000, pg_current_xact_id(), occurred_at, 'policy.paused', aggregate, aggregate_id,
	   merchant_id, user_id, actor, trace_id, payload
  FROM coupon.outbox WHERE aggregate = 'policy' AND aggregate_id = :p ORDER BY event_id DESC LIMIT 1;
SELECT backlog AS backlog_queued FROM coupon.relay_status;
SELECT event_type FROM coupon.events('policy', :p);
SELECT max(event_id) AS queued_id FROM coupon.outbox_queue \gset
SELECT coupon.relay_skip() = :queued_id AS skipped_to_the_queued;
SELECT count(*) AS queued_after_skip FROM coupon.outbox_queue;
SELECT o.event_type, l.event_id IS NOT NULL AS has_lookup_row
  FROM coupon.outbox o LEFT JOIN coupon.outbox_lookup l ON l.xid = o.xid AND l.event_id = o.event_id
 WHERE o.event_id = (SELECT max(event_id) FROM coupon.outbox);
SELECT event_type FROM coupon.events('policy', :p);
