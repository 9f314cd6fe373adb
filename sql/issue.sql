-- issue.sql: coupon.issue (direct and fcfs), coupon.user_coupons, policy_stats after issuance
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
-- ids of this file start at 4000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 4000, false);
	PERFORM setval('coupon.policy_id_seq', 4000, false);
	PERFORM setval('coupon.coupon_id_seq', 4000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 4000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Issue shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Issue other shop') \gset
SELECT id AS m_gone FROM coupon.create_merchant('Issue suspended shop') \gset

SELECT id AS p_direct FROM coupon.create_policy(:m1, 'direct, one per user', 'fixed', 1000) \gset
SELECT id AS p_two FROM coupon.create_policy(:m1, 'direct, 3 in all, 2 per user', 'fixed', 1000,
       total_quantity => 3, per_user_limit => 2) \gset
SELECT id AS p_fcfs FROM coupon.create_policy(:m1, 'fcfs 2', 'percent', 1000, issue_method => 'fcfs',
       total_quantity => 2, per_user_limit => NULL) \gset
SELECT id AS p_free FROM coupon.create_policy(:m1, 'unlimited', 'fixed', 1, per_user_limit => NULL) \gset
SELECT id AS p_days FROM coupon.create_policy(:m1, '30 days', 'fixed', 1, valid_days => 30) \gset
SELECT id AS p_both FROM coupon.create_policy(:m1, '30 days but ends tomorrow', 'fixed', 1, valid_days => 30,
       valid_until => now() + interval '1 day') \gset
SELECT id AS p_balance FROM coupon.create_policy(:m1, 'gift 50000', 'balance', 50000) \gset
SELECT id AS p_code FROM coupon.create_policy(:m1, 'by code', 'fixed', 1, issue_method => 'code') \gset
SELECT id AS p_draft FROM coupon.create_policy(:m1, 'draft', 'fixed', 1, status => 'draft') \gset
SELECT id AS p_paused FROM coupon.create_policy(:m1, 'paused', 'fixed', 1, status => 'paused') \gset
SELECT id AS p_retired FROM coupon.create_policy(:m1, 'retired', 'fixed', 1) \gset
SELECT status FROM coupon.set_policy_status(:p_retired, 'retired');
SELECT id AS p_later FROM coupon.create_policy(:m1, 'issued from tomorrow', 'fixed', 1,
       issue_starts_at => now() + interval '1 day') \gset
SELECT id AS p_over FROM coupon.create_policy(:m1, 'issued until yesterday', 'fixed', 1,
       issue_starts_at => now() - interval '2 days', issue_ends_at => now() - interval '1 day') \gset
SELECT id AS p_dead FROM coupon.create_policy(:m1, 'valid until an hour ago', 'fixed', 1,
       valid_until => now() - interval '1 hour') \gset
SELECT id AS p_gone FROM coupon.create_policy(:m_gone, 'of a suspended merchant', 'fixed', 1) \gset
UPDATE coupon.merchant SET status = 'suspended' WHERE id = :m_gone;

-- a direct coupon: issued now, no expiry, no balance, first of the user
SELECT id, policy_id, user_id, user_seq, code_hash, status, balance, expires_at, used_at,
       issued_at = now() AS issued_now
  FROM coupon.issue(:p_direct, 'alice');
-- per_user_limit 1: the second one is refused, and nothing is written
SELECT coupon.issue(:p_direct, 'alice');
SELECT count(*) AS alice_coupons FROM coupon.coupon WHERE policy_id = :p_direct AND user_id = 'alice';
-- user ids are compared exactly (case and spaces matter), 200 characters fit
SELECT user_id, user_seq FROM coupon.issue(:p_direct, 'Alice');
SELECT user_id, user_seq FROM coupon.issue(:p_direct, ' alice');
SELECT length(user_id) AS len, user_seq FROM coupon.issue(:p_direct, repeat('u', 200));
SELECT length(user_id) AS len FROM coupon.issue(:p_direct, repeat('유', 200));

-- expiry: valid_days after issue, or valid_until when that comes first
SELECT expires_at = issued_at + interval '30 days' AS thirty_days FROM coupon.issue(:p_days, 'alice');
SELECT expires_at = p.valid_until AS until_wins
  FROM coupon.issue(:p_both, 'alice') c JOIN coupon.policy p ON p.id = c.policy_id;
-- a balance coupon carries its stored value
SELECT status, balance FROM coupon.issue(:p_balance, 'alice');

-- total 3, 2 per user: user_seq counts the user's coupons, stock never goes below zero
SELECT user_id, user_seq FROM coupon.issue(:p_two, 'bob');
SELECT user_id, user_seq FROM coupon.issue(:p_two, 'bob');
SELECT coupon.issue(:p_two, 'bob');
SELECT user_id, user_seq FROM coupon.issue(:p_two, 'carol');
SELECT coupon.issue(:p_two, 'dave');
SELECT sum(remaining) AS remaining, min(remaining) AS min_shard FROM coupon.policy_stock WHERE policy_id = :p_two;
SELECT total_quantity, stock_remaining, issued, available FROM coupon.policy_stats WHERE policy_id = :p_two;

-- fcfs, 2 units, no per-user limit: the same user may take both, then sold out
SELECT user_id, user_seq FROM coupon.issue(:p_fcfs, 'erin');
SELECT user_id, user_seq FROM coupon.issue(:p_fcfs, 'erin');
SELECT coupon.issue(:p_fcfs, 'frank');
SELECT try($$SELECT coupon.issue(%s, 'frank')$$, :'p_fcfs') AS again;
SELECT stock_remaining, issued FROM coupon.policy_stats WHERE policy_id = :p_fcfs;

-- the last unit taken by a transaction that rolls back is back in stock:
-- sold_out seen inside that transaction must not stick
SELECT id AS p_last FROM coupon.create_policy(:m1, 'last unit', 'fixed', 1, issue_method => 'fcfs', total_quantity => 1) \gset
BEGIN;
SELECT user_id FROM coupon.issue(:p_last, 'gina');
SELECT try($$SELECT coupon.issue(%s, 'hank')$$, :'p_last') AS inside;
ROLLBACK;
SELECT stock_remaining FROM coupon.policy_stats WHERE policy_id = :p_last;
SELECT try($$SELECT coupon.issue(%s, 'hank')$$, :'p_last') AS after_rollback;
SELECT stock_remaining, issued FROM coupon.policy_stats WHERE policy_id = :p_last;

-- unlimited policy, no per-user limit: user_seq stays NULL
SELECT user_id, user_seq FROM coupon.issue(:p_free, 'ivan');
SELECT user_id, user_seq FROM coupon.issue(:p_free, 'ivan');
SELECT user_id, user_seq FROM coupon.issue(:p_free, 'ivan');

-- every refusal, with its DETAIL
SELECT coupon.issue(:p_code, 'alice');
SELECT coupon.issue(:p_paused, 'alice');
SELECT coupon.issue(:p_later, 'alice');
SELECT coupon.issue(:p_over, 'alice');
SELECT coupon.issue(:p_dead, 'alice');
SELECT coupon.issue(:p_gone, 'alice');
SELECT coupon.issue(999999999, 'alice');
SELECT coupon.issue(:p_free, '');

-- bad input and refusals change nothing
SELECT count(*) AS coupons_before FROM coupon.coupon \gset
SELECT sum(remaining) AS stock_before FROM coupon.policy_stock \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('policy NULL',        $$SELECT coupon.issue(NULL, 'u')$$, '{}'::text[]),
	('policy 0',           $$SELECT coupon.issue(0, 'u')$$, '{}'),
	('policy -1',          $$SELECT coupon.issue(-1, 'u')$$, '{}'),
	('policy 2^63-1',      $$SELECT coupon.issue(9223372036854775807, 'u')$$, '{}'),
	('policy 2^63',        $$SELECT coupon.issue('9223372036854775808', 'u')$$, '{}'),
	('user NULL',          $$SELECT coupon.issue(%s, NULL)$$, ARRAY[:'p_free']),
	('user empty',         $$SELECT coupon.issue(%s, '')$$, ARRAY[:'p_free']),
	('user 201 chars',     $$SELECT coupon.issue(%s, %L)$$, ARRAY[:'p_free', repeat('u', 201)]),
	('user 10000 chars',   $$SELECT coupon.issue(%s, %L)$$, ARRAY[:'p_free', repeat('u', 10000)]),
	('code policy',        $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_code']),
	('draft policy',       $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_draft']),
	('paused policy',      $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_paused']),
	('retired policy',     $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_retired']),
	('not started',        $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_later']),
	('ended',              $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_over']),
	('past valid_until',   $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_dead']),
	('merchant suspended', $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_gone']),
	('per user limit',     $$SELECT coupon.issue(%s, 'alice')$$, ARRAY[:'p_direct']),
	('sold out',           $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_two']),
	('sold out fcfs',      $$SELECT coupon.issue(%s, 'u')$$, ARRAY[:'p_fcfs'])
) AS t(label, stmt, args);
SELECT count(*) - :coupons_before AS coupons_created FROM coupon.coupon;
SELECT sum(remaining) - :stock_before AS stock_taken FROM coupon.policy_stock;

-- tenancy: a caller acting for m2 cannot issue m1's coupons
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT coupon.issue(:p_free, 'ivan');
RESET request.jwt.claims;
SELECT count(*) AS ivan_coupons FROM coupon.coupon WHERE user_id = 'ivan';

-- user_coupons: the user's coupons with their policies, oldest first
SELECT policy_name, discount_type, discount_value, max_discount, min_order_amount, stackable,
       status, balance, expires_at IS NOT NULL AS expires, used_at, merchant_id = :m1 AS of_m1
  FROM coupon.user_coupons('alice');
SELECT policy_name, status FROM coupon.user_coupons('alice', 'issued') LIMIT 2;
SELECT count(*) AS reserved FROM coupon.user_coupons('alice', 'reserved');
SELECT array_agg(coupon_id ORDER BY coupon_id) = array_agg(coupon_id) AS oldest_first,
       bool_and(policy_id IS NOT NULL) AS with_policy
  FROM coupon.user_coupons('erin');
-- unknown users and statuses find nothing
SELECT count(*) AS nobody FROM coupon.user_coupons('nobody');
SELECT count(*) AS unknown_status FROM coupon.user_coupons('alice', 'lost');
SELECT count(*) AS null_user FROM coupon.user_coupons(NULL);
SELECT count(*) AS empty_user FROM coupon.user_coupons('');
SELECT count(*) AS long_user FROM coupon.user_coupons(repeat('u', 10000));

-- policy_stats after issuance
SELECT name, total_quantity, stock_remaining, unclaimed, issued, available, reserved, used, expired, cancelled
  FROM coupon.policy_stats WHERE merchant_id = :m1 AND issued > 0 ORDER BY policy_id;

-- a policy created by a transaction that rolls back is gone for issue()
-- too, though that transaction issued from it (the backend's copies of
-- policies are not filled by a transaction that has written)
BEGIN;
SELECT id AS p_rolled FROM coupon.create_policy(:m1, 'rolled back', 'fixed', 100) \gset
SELECT user_id FROM coupon.issue(:p_rolled, 'gina');
ROLLBACK;
SELECT try($$SELECT coupon.issue(%s, 'gina')$$, :'p_rolled') AS rolled_back_policy;
