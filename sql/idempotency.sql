-- idempotency.sql: idempotency keys of coupon.issue (per merchant, 24 hours, in the effect's transaction)
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- try(stmt, args...): runs format(stmt, args...) and answers 'ok', or the
-- error's SQLSTATE and the reason of its JSON DETAIL ('-': DETAIL not JSON)
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
-- ids of this file start at 3000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 3000, false);
	PERFORM setval('coupon.policy_id_seq', 3000, false);
	PERFORM setval('coupon.coupon_id_seq', 3000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 3000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Idempotent shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Idempotent other shop') \gset
SELECT id AS p1 FROM coupon.create_policy(:m1, 'many per user', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS p2 FROM coupon.create_policy(:m1, 'another policy', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS p_m2 FROM coupon.create_policy(:m2, 'of m2', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS p_one FROM coupon.create_policy(:m1, 'one per user', 'fixed', 1000) \gset
SELECT id AS p_paused FROM coupon.create_policy(:m1, 'paused', 'fixed', 1000, status => 'paused') \gset
SELECT id AS p_fcfs FROM coupon.create_policy(:m1, 'fcfs 1', 'fixed', 1000, issue_method => 'fcfs', total_quantity => 1) \gset

-- the first call issues and remembers the response under the key
SELECT id AS first_id, to_jsonb(c) AS first_json FROM coupon.issue(:p1, 'kim', 'key-1') c \gset
SELECT merchant_id = :m1 AS of_m1, key, length(request_hash) AS hash_len,
       (response ->> 'id')::bigint = :first_id AS response_is_coupon
  FROM coupon.idempotency_key WHERE key = 'key-1';
-- the same key and request: the first coupon again, nothing new written
SELECT count(*) AS coupons_before FROM coupon.coupon \gset
SELECT id = :first_id AS same_id, to_jsonb(c) = :'first_json'::jsonb AS same_row FROM coupon.issue(:p1, 'kim', 'key-1') c;
SELECT id = :first_id AS same_id FROM coupon.issue(:p1, 'kim', 'key-1');
SELECT count(*) - :coupons_before AS coupons_created FROM coupon.coupon;
-- the same key for a different request is refused
SELECT coupon.issue(:p1, 'lee', 'key-1');
SELECT try($$SELECT coupon.issue(%s, 'kim', 'key-1')$$, :'p2') AS other_policy;
SELECT count(*) - :coupons_before AS coupons_created FROM coupon.coupon;
-- keys belong to a merchant: m2 may use the same key for its own request
SELECT policy_id = :p_m2 AS of_m2, user_id FROM coupon.issue(:p_m2, 'kim', 'key-1');
SELECT count(*) AS rows_for_key_1 FROM coupon.idempotency_key WHERE key = 'key-1';
-- keys are exact: case and spaces make another key
SELECT id <> :first_id AS new_coupon FROM coupon.issue(:p1, 'kim', 'KEY-1');
SELECT id <> :first_id AS new_coupon FROM coupon.issue(:p1, 'kim', 'key-1 ');
-- without a key every call issues
SELECT count(DISTINCT (coupon.issue(:p1, 'kim', NULL)).id) AS distinct_coupons FROM generate_series(1, 3);
SELECT count(DISTINCT (coupon.issue(:p1, 'kim')).id) AS distinct_coupons FROM generate_series(1, 3);
SELECT count(DISTINCT (coupon.issue(:p1, 'kim', 'key-loop')).id) AS distinct_coupons FROM generate_series(1, 3);

-- key length: 1 to 300 characters (not bytes)
SELECT count(*) AS ascii_300 FROM coupon.issue(:p1, 'kim', repeat('k', 300));
SELECT count(*) AS multibyte_300 FROM coupon.issue(:p1, 'kim', repeat('키', 300));
SELECT length(key) AS len, octet_length(key) AS bytes FROM coupon.idempotency_key
 WHERE key IN (repeat('k', 300), repeat('키', 300)) ORDER BY bytes;
SELECT coupon.issue(:p1, 'kim', '');
SELECT coupon.issue(:p1, 'kim', repeat('k', 301));
SELECT count(*) AS keys_before FROM coupon.idempotency_key \gset
SELECT count(*) AS coupons_before FROM coupon.coupon \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('key empty',          $$SELECT coupon.issue(%s, 'kim', '')$$, ARRAY[:'p1']),
	('key 301 chars',      $$SELECT coupon.issue(%s, 'kim', %L)$$, ARRAY[:'p1', repeat('k', 301)]),
	('key 301 multibyte',  $$SELECT coupon.issue(%s, 'kim', %L)$$, ARRAY[:'p1', repeat('키', 301)]),
	('key 10000 chars',    $$SELECT coupon.issue(%s, 'kim', %L)$$, ARRAY[:'p1', repeat('k', 10000)]),
	('user bad, with key', $$SELECT coupon.issue(%s, '', 'key-x')$$, ARRAY[:'p1']),
	('policy missing',     $$SELECT coupon.issue(999999999, 'kim', 'key-x')$$, '{}'),
	('policy paused',      $$SELECT coupon.issue(%s, 'kim', 'key-x')$$, ARRAY[:'p_paused'])
) AS t(label, stmt, args);
SELECT count(*) - :keys_before AS keys_written, (SELECT count(*) - :coupons_before FROM coupon.coupon) AS coupons_created
  FROM coupon.idempotency_key;

-- a failed request leaves no key behind: once the policy is active, the
-- same key works
SELECT try($$SELECT coupon.issue(%s, 'kim', 'key-2')$$, :'p_paused') AS while_paused;
SELECT count(*) AS key_2_rows FROM coupon.idempotency_key WHERE key = 'key-2';
SELECT status FROM coupon.set_policy_status(:p_paused, 'active');
SELECT user_id FROM coupon.issue(:p_paused, 'kim', 'key-2');
-- nor does a rolled-back transaction
BEGIN;
SELECT user_id FROM coupon.issue(:p1, 'kim', 'key-3');
ROLLBACK;
SELECT count(*) AS key_3_rows FROM coupon.idempotency_key WHERE key = 'key-3';
SELECT user_id FROM coupon.issue(:p1, 'lee', 'key-3');
-- refusals with a new key store nothing either
SELECT user_id FROM coupon.issue(:p_one, 'kim', 'key-4');
SELECT try($$SELECT coupon.issue(%s, 'kim', 'key-5')$$, :'p_one') AS per_user;
SELECT user_id FROM coupon.issue(:p_fcfs, 'kim', 'key-6');
SELECT try($$SELECT coupon.issue(%s, 'lee', 'key-7')$$, :'p_fcfs') AS sold_out;
SELECT key FROM coupon.idempotency_key WHERE key IN ('key-4', 'key-5', 'key-6', 'key-7') ORDER BY key;
-- a replay answers as the first call did, even when the call would now be refused
SELECT user_id FROM coupon.issue(:p_one, 'kim', 'key-4');
SELECT user_id FROM coupon.issue(:p_fcfs, 'kim', 'key-6');
SELECT status FROM coupon.set_policy_status(:p1, 'paused');
SELECT id = :first_id AS same_id FROM coupon.issue(:p1, 'kim', 'key-1');
SELECT status FROM coupon.set_policy_status(:p1, 'active');

-- keys are kept 24 hours; after that the key is free for a new request
UPDATE coupon.idempotency_key SET created_at = now() - interval '24 hours 1 second'
 WHERE merchant_id = :m1 AND key = 'key-1';
SELECT id <> :first_id AS new_coupon, user_id FROM coupon.issue(:p1, 'lee', 'key-1');
SELECT response ->> 'user_id' AS remembered_user, created_at > now() - interval '1 hour' AS renewed
  FROM coupon.idempotency_key WHERE merchant_id = :m1 AND key = 'key-1';
SELECT coupon.issue(:p1, 'kim', 'key-1');

-- a key still in use by another session is answered at once with PT409
CREATE EXTENSION IF NOT EXISTS dblink;
SELECT dblink_connect('other', format('host=%s port=%s dbname=%s user=%s',
       current_setting('unix_socket_directories'), current_setting('port'), current_database(), current_user));
SELECT dblink_exec('other', 'BEGIN');
SELECT count(*) AS issued_there FROM dblink('other',
       format('SELECT id FROM coupon.issue(%s, %L, %L)', :p1, 'kim', 'key-busy')) AS t(id bigint);
SET lock_timeout = '5s';	-- a wait instead of the answer would fail here, not hang
SELECT coupon.issue(:p1, 'kim', 'key-busy');
SELECT try($$SELECT coupon.issue(%s, 'lee', 'key-busy')$$, :'p1') AS other_request_same_key;
SELECT count(*) AS other_key_works FROM coupon.issue(:p1, 'kim', 'key-free');
RESET lock_timeout;
-- the other session rolls back: no key is left, the request may run here
SELECT dblink_exec('other', 'ROLLBACK');
SELECT user_id FROM coupon.issue(:p1, 'kim', 'key-busy');
-- the other session commits: the same request here is a replay of its coupon
SELECT dblink_exec('other', 'BEGIN');
SELECT id AS there_id FROM dblink('other',
       format('SELECT id FROM coupon.issue(%s, %L, %L)', :p1, 'kim', 'key-done')) AS t(id bigint) \gset
SELECT dblink_exec('other', 'COMMIT');
SELECT id = :there_id AS same_coupon FROM coupon.issue(:p1, 'kim', 'key-done');
SELECT dblink_disconnect('other');
