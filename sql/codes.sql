-- codes.sql: coupon.generate_codes, coupon.redeem_code, the wrong-code throttle
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
-- ids of this file start at 1000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 1000, false);
	PERFORM setval('coupon.policy_id_seq', 1000, false);
	PERFORM setval('coupon.coupon_id_seq', 1000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 1000, false);
END $$;
CREATE EXTENSION IF NOT EXISTS pgcrypto;	-- to check the stored HMAC
-- users whose wrong codes are counted get names unique to this run: the
-- throttle lives in shared memory, outlives transactions, and sees every run
SELECT 'bob-' || gen_random_uuid() AS bob, 'eve-' || gen_random_uuid() AS eve,
       'mallory-' || gen_random_uuid() AS mallory, 'trent-' || gen_random_uuid() AS trent,
       'walter-' || gen_random_uuid() AS walter, 'peggy-' || gen_random_uuid() AS peggy \gset

SELECT id AS m1 FROM coupon.create_merchant('Code shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Code other shop') \gset
SELECT id AS m_gone FROM coupon.create_merchant('Code suspended shop') \gset
SELECT id AS p5 FROM coupon.create_policy(:m1, '5 codes', 'fixed', 1000, issue_method => 'code',
       total_quantity => 5, valid_days => 7) \gset
SELECT id AS p_gift FROM coupon.create_policy(:m1, 'gift codes', 'balance', 30000, issue_method => 'code',
       per_user_limit => NULL) \gset
SELECT id AS p_many FROM coupon.create_policy(:m1, 'unlimited codes', 'fixed', 1, issue_method => 'code',
       per_user_limit => NULL) \gset
SELECT id AS p_direct FROM coupon.create_policy(:m1, 'direct', 'fixed', 1) \gset
SELECT id AS p_draft FROM coupon.create_policy(:m1, 'draft codes', 'fixed', 1, issue_method => 'code', status => 'draft') \gset
SELECT id AS p_paused FROM coupon.create_policy(:m1, 'paused codes', 'fixed', 1, issue_method => 'code', status => 'paused') \gset
SELECT id AS p_retired FROM coupon.create_policy(:m1, 'retired codes', 'fixed', 1, issue_method => 'code') \gset
SELECT id AS p_later FROM coupon.create_policy(:m1, 'codes from tomorrow', 'fixed', 1, issue_method => 'code',
       issue_starts_at => now() + interval '1 day') \gset
SELECT id AS p_over FROM coupon.create_policy(:m1, 'codes until yesterday', 'fixed', 1, issue_method => 'code',
       issue_starts_at => now() - interval '2 days', issue_ends_at => now() - interval '1 day') \gset
SELECT id AS p_dead FROM coupon.create_policy(:m1, 'codes valid until an hour ago', 'fixed', 1, issue_method => 'code',
       valid_until => now() - interval '1 hour') \gset
SELECT id AS p_gone FROM coupon.create_policy(:m_gone, 'codes of a suspended shop', 'fixed', 1, issue_method => 'code') \gset

-- generate_codes returns the plain codes once: 16 characters of an
-- unambiguous alphabet (no 0, 1, I, O) in groups of four, all different
SELECT array_agg(c) AS codes FROM coupon.generate_codes(:p5, 3) c \gset
SELECT count(*) AS n, count(DISTINCT c) AS distinct_codes,
       bool_and(c ~ '^[2-9A-HJ-NP-Z]{4}(-[2-9A-HJ-NP-Z]{4}){3}$') AS well_formed
  FROM unnest(:'codes'::text[]) c;
-- only HMAC-SHA256(code, coupon.code_secret) is stored, as unclaimed coupons
SELECT count(*) AS rows, bool_and(c.status = 'unclaimed') AS unclaimed,
       bool_and(c.user_id IS NULL AND c.issued_at IS NULL AND c.balance IS NULL) AS nobodys,
       bool_and(length(c.code_hash) = 32) AS hash_32_bytes,
       count(*) FILTER (WHERE c.code_hash IN (
           SELECT hmac(replace(x, '-', ''), current_setting('coupon.code_secret'), 'sha256')
             FROM unnest(:'codes'::text[]) x)) AS hmac_matches
  FROM coupon.coupon c WHERE c.policy_id = :p5;
SELECT count(*) AS plain_codes_stored
  FROM coupon.coupon c, unnest(:'codes'::text[]) x
 WHERE position(convert_to(replace(x, '-', ''), 'UTF8') IN c.code_hash) > 0
    OR position(convert_to(x, 'UTF8') IN c.code_hash) > 0;
SELECT codes_generated FROM coupon.policy WHERE id = :p5;

-- total_quantity caps how many codes exist
SELECT coupon.generate_codes(:p5, 3);
SELECT count(*) AS two_more FROM coupon.generate_codes(:p5, 2);
SELECT try($$SELECT coupon.generate_codes(%s, 1)$$, :'p5') AS one_more;
SELECT codes_generated, (SELECT count(*) FROM coupon.coupon WHERE policy_id = :p5) AS rows
  FROM coupon.policy WHERE id = :p5;
SELECT total_quantity, stock_remaining, unclaimed, issued FROM coupon.policy_stats WHERE policy_id = :p5;
-- codes generated in a transaction that rolls back never existed
BEGIN;
SELECT count(*) FROM coupon.generate_codes(:p_many, 10);
ROLLBACK;
SELECT codes_generated, (SELECT count(*) FROM coupon.coupon WHERE policy_id = :p_many) AS rows
  FROM coupon.policy WHERE id = :p_many;
-- draft and paused policies may prepare codes; a retired one may not
SELECT count(*) AS draft_codes FROM coupon.generate_codes(:p_draft, 1);
SELECT count(*) AS paused_codes FROM coupon.generate_codes(:p_paused, 1);
SELECT status FROM coupon.set_policy_status(:p_retired, 'retired');
SELECT coupon.generate_codes(:p_retired, 1);
SELECT coupon.generate_codes(:p_direct, 1);
SELECT coupon.generate_codes(999999999, 1);
SELECT coupon.generate_codes(:p_many, 0);

-- bad input to generate_codes changes nothing
SELECT count(*) AS coupons_before FROM coupon.coupon \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('policy NULL',     $$SELECT coupon.generate_codes(NULL, 1)$$, '{}'::text[]),
	('policy -1',       $$SELECT coupon.generate_codes(-1, 1)$$, '{}'),
	('policy 2^63-1',   $$SELECT coupon.generate_codes(9223372036854775807, 1)$$, '{}'),
	('count NULL',      $$SELECT coupon.generate_codes(%s, NULL)$$, ARRAY[:'p_many']),
	('count 0',         $$SELECT coupon.generate_codes(%s, 0)$$, ARRAY[:'p_many']),
	('count -1',        $$SELECT coupon.generate_codes(%s, -1)$$, ARRAY[:'p_many']),
	('count 100001',    $$SELECT coupon.generate_codes(%s, 100001)$$, ARRAY[:'p_many']),
	('count 2^31-1',    $$SELECT coupon.generate_codes(%s, 2147483647)$$, ARRAY[:'p_many']),
	('count 2^63-1',    $$SELECT coupon.generate_codes(%s, '9223372036854775807')$$, ARRAY[:'p_many']),
	('direct policy',   $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'p_direct']),
	('retired policy',  $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'p_retired']),
	('over quantity',   $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'p5'])
) AS t(label, stmt, args);
SELECT count(*) - :coupons_before AS coupons_created FROM coupon.coupon;

-- redeem_code: the coupon becomes the user's, usable for valid_days
SELECT (:'codes'::text[])[1] AS code1, (:'codes'::text[])[2] AS code2, (:'codes'::text[])[3] AS code3 \gset
SELECT user_id, user_seq, status, code_hash IS NOT NULL AS keeps_hash, issued_at = now() AS issued_now,
       expires_at = issued_at + interval '7 days' AS seven_days, policy_id = :p5 AS of_p5
  FROM coupon.redeem_code(:'code1', 'amy');
SELECT id AS amy_coupon FROM coupon.coupon WHERE user_id = 'amy' AND policy_id = :p5 \gset
-- the same user again (a retried request) gets the same coupon, also when
-- typed in lower case with spaces instead of dashes, without counting a failure
SELECT id = :amy_coupon AS same_coupon, status FROM coupon.redeem_code(:'code1', 'amy');
SELECT id = :amy_coupon AS same_coupon FROM coupon.redeem_code(lower(replace(:'code1', '-', ' ')), 'amy');
SELECT id = :amy_coupon AS same_coupon FROM coupon.redeem_code(replace(:'code1', '-', ''), 'amy');
SELECT id = :amy_coupon AS same_coupon FROM coupon.redeem_code('  ' || :'code1' || ' ', 'amy');
-- another user cannot take it
SELECT coupon.redeem_code(:'code1', :'bob');
-- per_user_limit 1: amy cannot claim a second code of the policy; the code stays free
SELECT coupon.redeem_code(:'code2', 'amy');
SELECT status, user_id FROM coupon.coupon WHERE policy_id = :p5 AND code_hash =
       hmac(replace(:'code2', '-', ''), current_setting('coupon.code_secret'), 'sha256');
SELECT user_id, user_seq FROM coupon.redeem_code(:'code2', 'carl');
-- a balance code carries its stored value; an unlimited one has no user_seq
SELECT c AS gift FROM coupon.generate_codes(:p_gift, 1) c \gset
SELECT status, balance, user_seq FROM coupon.redeem_code(:'gift', 'amy');
SELECT unclaimed, issued, available FROM coupon.policy_stats WHERE policy_id = :p5;

-- codes of policies that cannot issue now
SELECT c AS c_paused FROM coupon.generate_codes(:p_paused, 1) c \gset
SELECT c AS c_draft FROM coupon.generate_codes(:p_draft, 1) c \gset
SELECT c AS c_later FROM coupon.generate_codes(:p_later, 1) c \gset
SELECT c AS c_over FROM coupon.generate_codes(:p_over, 1) c \gset
SELECT c AS c_dead FROM coupon.generate_codes(:p_dead, 1) c \gset
SELECT c AS c_gone FROM coupon.generate_codes(:p_gone, 1) c \gset
SELECT c AS c_ret FROM coupon.generate_codes(:p_many, 1) c \gset
UPDATE coupon.merchant SET status = 'suspended' WHERE id = :m_gone;
SELECT coupon.redeem_code(:'c_paused', 'amy');
SELECT coupon.redeem_code(:'c_later', 'amy');
SELECT coupon.redeem_code(:'c_over', 'amy');
SELECT coupon.redeem_code(:'c_dead', 'amy');
SELECT coupon.redeem_code(:'c_gone', 'amy');
SELECT coupon.redeem_code('2222-2222-2222-2222', :'bob');

-- a code that is wrong by one character fails its check character
SELECT (CASE WHEN left(:'code3', 1) = '2' THEN '3' ELSE '2' END) || substr(:'code3', 2) AS typo \gset
SELECT coupon.redeem_code(:'typo', 'amy');

-- bad input to redeem_code changes nothing
SELECT count(*) AS claimed_before FROM coupon.coupon WHERE user_id IS NOT NULL \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('code NULL',          $$SELECT coupon.redeem_code(NULL, 'amy')$$, '{}'::text[]),
	('code empty',         $$SELECT coupon.redeem_code('', 'amy')$$, '{}'),
	('code dashes only',   $$SELECT coupon.redeem_code('----', 'amy')$$, '{}'),
	('code word',          $$SELECT coupon.redeem_code('WELCOME', 'amy')$$, '{}'),
	('code one short',     $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[left(:'code3', -1)]),
	('code one too many',  $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'code3' || '2']),
	('code with O',        $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY['O' || substr(:'code3', 2)]),
	('code with 0',        $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY['0' || substr(:'code3', 2)]),
	('code with 1',        $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY['1' || substr(:'code3', 2)]),
	('code with I',        $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY['I' || substr(:'code3', 2)]),
	('code one typo',      $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'typo']),
	('code 10000 chars',   $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[repeat('A', 10000)]),
	('user NULL',          $$SELECT coupon.redeem_code(%L, NULL)$$, ARRAY[:'code3']),
	('user empty',         $$SELECT coupon.redeem_code(%L, '')$$, ARRAY[:'code3']),
	('user 201 chars',     $$SELECT coupon.redeem_code(%L, %L)$$, ARRAY[:'code3', repeat('u', 201)]),
	('user 10000 chars',   $$SELECT coupon.redeem_code(%L, %L)$$, ARRAY[:'code3', repeat('u', 10000)]),
	('paused policy',      $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_paused']),
	('draft policy',       $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_draft']),
	('not started',        $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_later']),
	('ended',              $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_over']),
	('past valid_until',   $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_dead']),
	('merchant suspended', $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'c_gone']),
	('per user limit',     $$SELECT coupon.redeem_code(%L, 'amy')$$, ARRAY[:'code3'])
) AS t(label, stmt, args);
SELECT count(*) - :claimed_before AS coupons_claimed FROM coupon.coupon WHERE user_id IS NOT NULL;

-- a retired policy issues nothing more, by code either
SELECT status FROM coupon.set_policy_status(:p_many, 'retired');
SELECT try($$SELECT coupon.redeem_code(%L, 'amy')$$, :'c_ret') AS retired_policy;

-- tenancy: a caller acting for m2 neither generates nor redeems m1's codes
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT coupon.generate_codes(:p_gift, 1);
SELECT coupon.redeem_code(:'code3', 'dora');
RESET request.jwt.claims;
SELECT user_id FROM coupon.redeem_code(:'code3', 'dora');

-- the throttle: after coupon.code_max_failures wrong codes within
-- coupon.code_failure_window, the user is refused, even with a right code.
-- Codes generated in a rolled-back transaction are well formed but unknown.
SET coupon.code_max_failures = 3;
BEGIN;
SELECT array_agg(c) AS ghosts FROM coupon.generate_codes(:p_gift, 5) c \gset
ROLLBACK;
SELECT array_agg(c) AS good FROM coupon.generate_codes(:p_gift, 6) c \gset
SELECT coupon.redeem_code((:'ghosts'::text[])[1], :'eve');
SELECT n AS attempt, try($$SELECT coupon.redeem_code(%L, %L)$$, (:'ghosts'::text[])[n], :'eve') AS result
  FROM generate_series(2, 4) n ORDER BY n;
SELECT coupon.redeem_code((:'good'::text[])[1], :'eve');
SELECT status FROM coupon.coupon WHERE code_hash =
       hmac(replace((:'good'::text[])[1], '-', ''), current_setting('coupon.code_secret'), 'sha256');
-- other users are not affected
SELECT user_id = :'mallory' AS mallory_has_it FROM coupon.redeem_code((:'good'::text[])[1], :'mallory');
-- failures are not rolled back with the transaction that made them
BEGIN;
SELECT coupon.redeem_code((:'ghosts'::text[])[1], :'trent');
ROLLBACK;
BEGIN;
SELECT coupon.redeem_code((:'ghosts'::text[])[2], :'trent');
ROLLBACK;
SELECT try($$SELECT coupon.redeem_code(%L, %L)$$, (:'ghosts'::text[])[3], :'trent') AS third;
SELECT try($$SELECT coupon.redeem_code(%L, %L)$$, (:'good'::text[])[2], :'trent') AS fourth;
-- trying codes others redeemed counts too
SELECT n AS attempt, try($$SELECT coupon.redeem_code(%L, %L)$$, :'code1', :'walter') AS result
  FROM generate_series(1, 4) n ORDER BY n;
-- redeeming one's own code again, refusals for the policy's rules and
-- malformed codes are not wrong guesses: peggy is still welcome afterwards
SELECT count(*) AS calls, count(DISTINCT (coupon.redeem_code((:'good'::text[])[3], :'peggy')).id) AS coupons
  FROM generate_series(1, 4);
SELECT n AS attempt, try($$SELECT coupon.redeem_code(%L, %L)$$, :'typo', :'peggy') AS result
  FROM generate_series(1, 4) n ORDER BY n;
SELECT n AS attempt, try($$SELECT coupon.redeem_code(%L, %L)$$, :'c_paused', :'peggy') AS result
  FROM generate_series(1, 4) n ORDER BY n;
SELECT user_id = :'peggy' AS peggy_has_it FROM coupon.redeem_code((:'good'::text[])[4], :'peggy');
-- the window closes: after coupon.code_failure_window the user may try again
SET coupon.code_failure_window = 1;
SELECT pg_sleep(1.1);
SELECT user_id = :'eve' AS eve_has_it FROM coupon.redeem_code((:'good'::text[])[5], :'eve');
RESET coupon.code_failure_window;
RESET coupon.code_max_failures;

-- without coupon.code_secret there are no codes; with another secret the
-- stored codes are unknown
SET coupon.code_secret = '';
SELECT coupon.generate_codes(:p_gift, 1);
SELECT coupon.redeem_code((:'good'::text[])[6], :'bob');
SET coupon.code_secret = 'another secret';
SELECT coupon.redeem_code((:'good'::text[])[6], :'bob');
RESET coupon.code_secret;
SELECT status, balance FROM coupon.redeem_code((:'good'::text[])[6], :'bob');
