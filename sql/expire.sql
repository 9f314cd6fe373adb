-- expire.sql: coupon.expire_coupons, coupon.expire_reservations (real time passes: one short sleep)
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
-- ids of this file start at 2000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 2000, false);
	PERFORM setval('coupon.policy_id_seq', 2000, false);
	PERFORM setval('coupon.coupon_id_seq', 2000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 2000, false);
END $$;

-- the sweepers see the whole database: start from a clean slate
SELECT coupon.expire_reservations() >= 0 AS swept, coupon.expire_coupons() >= 0 AS swept;

-- the setup runs in one transaction: its now() is fixed, so however slow the
-- machine, everything below is made within the second it is valid for
BEGIN;
SELECT id AS m1 FROM coupon.create_merchant('Expire shop') \gset
-- coupons valid for one more second
SELECT id AS p_short FROM coupon.create_policy(:m1, 'one second', 'fixed', 1000, per_user_limit => NULL,
       valid_until => now() + interval '1 second') \gset
SELECT id AS e1 FROM coupon.issue(:p_short, 'xena') \gset
SELECT id AS e2 FROM coupon.issue(:p_short, 'xena') \gset
SELECT id AS e3 FROM coupon.issue(:p_short, 'xena') \gset
SELECT id AS e4 FROM coupon.issue(:p_short, 'xena') \gset
SELECT id AS re4 FROM coupon.reserve(:e4, 'xena', :m1, 'held-past-expiry', 5000, interval '1 hour') \gset
-- holds of one second on coupons that do not expire, against a budget
SELECT id AS p_long FROM coupon.create_policy(:m1, 'no expiry', 'fixed', 1000, per_user_limit => NULL,
       budget => 10000) \gset
SELECT id AS l1 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS l2 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS l3 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS l4 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS l5 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS l6 FROM coupon.issue(:p_long, 'xena') \gset
SELECT id AS rl1 FROM coupon.reserve(:l1, 'xena', :m1, 'short-1', 5000, interval '1 second') \gset
SELECT id AS rl2 FROM coupon.reserve(:l2, 'xena', :m1, 'short-2', 5000, interval '1 second') \gset
SELECT id AS rl3 FROM coupon.reserve(:l3, 'xena', :m1, 'paying', 5000, interval '1 second') \gset
SELECT id AS rl4 FROM coupon.reserve(:l4, 'xena', :m1, 'long', 5000) \gset
SELECT id AS rl5 FROM coupon.reserve(:l5, 'xena', :m1, 'confirmed', 5000, interval '1 second') \gset
SELECT id AS rl6 FROM coupon.reserve(:l6, 'xena', :m1, 'released', 5000, interval '1 second') \gset
SELECT status FROM coupon.confirm(:rl5);
SELECT status FROM coupon.release(:rl6);
-- pay() does not exist yet: a payment id stands in for a live payment's hold
UPDATE coupon.reservation SET payment_id = 424242 WHERE id = :rl3;
SELECT budget_used FROM coupon.policy WHERE id = :p_long;
COMMIT;

SELECT pg_sleep(1.2);

-- past expires_at, an issued coupon is refused before any sweeper runs
SELECT ok, reason FROM coupon.validate(:e1, 'xena', :m1, 5000);
-- expire_coupons marks issued coupons past expires_at, max_rows at a time;
-- the reserved one is left to its reservation
SELECT coupon.expire_coupons(1) AS marked;
SELECT coupon.expire_coupons() AS marked;
SELECT coupon.expire_coupons() AS marked;
SELECT id = :e4 AS is_e4, status FROM coupon.coupon WHERE policy_id = :p_short ORDER BY id;
SELECT issued, available, reserved, expired FROM coupon.policy_stats WHERE policy_id = :p_short;
SELECT ok, reason FROM coupon.validate(:e2, 'xena', :m1, 5000);
SELECT coupon.reserve(:e2, 'xena', :m1, 'too-late', 5000);
SELECT status, count(*) FROM coupon.user_coupons('xena') GROUP BY status ORDER BY status;

-- expire_reservations releases lapsed holds no payment owns, max_rows at a
-- time: the coupons come back, and so does the budget
SELECT coupon.expire_reservations(1) AS released;
SELECT coupon.expire_reservations() AS released;
SELECT coupon.expire_reservations() AS released;
SELECT r.order_id, r.status, c.status AS coupon_status
  FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
 WHERE c.policy_id = :p_long ORDER BY r.id;
SELECT budget_used FROM coupon.policy WHERE id = :p_long;
-- an expired hold cannot be confirmed; releasing it returns it unchanged
SELECT coupon.confirm(:rl1);
SELECT status FROM coupon.release(:rl1);
SELECT status FROM coupon.coupon WHERE id = :l1;
-- and its coupon can be held again
SELECT status FROM coupon.reserve(:l1, 'xena', :m1, 'second-try', 5000);

-- releasing the hold on a coupon past its validity returns it as expired (nothing left for the sweeper)
SELECT status FROM coupon.release(:re4);
SELECT status FROM coupon.coupon WHERE id = :e4;
SELECT coupon.expire_coupons() AS marked;
SELECT status FROM coupon.coupon WHERE id = :e4;

-- malformed max_rows change nothing
SELECT label, try(stmt) AS result FROM (VALUES
	('coupons NULL',          $$SELECT coupon.expire_coupons(NULL)$$),
	('coupons 0',             $$SELECT coupon.expire_coupons(0)$$),
	('coupons -1',            $$SELECT coupon.expire_coupons(-1)$$),
	('coupons 10000001',      $$SELECT coupon.expire_coupons(10000001)$$),
	('coupons 2^31-1',        $$SELECT coupon.expire_coupons(2147483647)$$),
	('coupons 2^63-1',        $$SELECT coupon.expire_coupons('9223372036854775807')$$),
	('reservations NULL',     $$SELECT coupon.expire_reservations(NULL)$$),
	('reservations 0',        $$SELECT coupon.expire_reservations(0)$$),
	('reservations -1',       $$SELECT coupon.expire_reservations(-1)$$),
	('reservations 1000001',  $$SELECT coupon.expire_reservations(1000001)$$),
	('reservations 2^31-1',   $$SELECT coupon.expire_reservations(2147483647)$$)
) AS t(label, stmt);
SELECT coupon.expire_reservations(NULL);
