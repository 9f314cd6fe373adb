-- validate.sql: coupon.validate, the discount engine and every reason it reports
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
-- ids of this file start at 9000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 9000, false);
	PERFORM setval('coupon.policy_id_seq', 9000, false);
	PERFORM setval('coupon.coupon_id_seq', 9000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 9000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Validate shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Validate partner') \gset
SELECT id AS m3 FROM coupon.create_merchant('Validate stranger') \gset
SELECT id AS m_susp FROM coupon.create_merchant('Validate suspended') \gset

SELECT id AS p_fixed FROM coupon.create_policy(:m1, 'fixed 3000 from 10000', 'fixed', 3000,
       min_order_amount => 10000, per_user_limit => NULL) \gset
SELECT id AS p_pct FROM coupon.create_policy(:m1, '12.5% up to 5000', 'percent', 1250,
       max_discount => 5000, per_user_limit => NULL) \gset
SELECT id AS p_pct_nomax FROM coupon.create_policy(:m1, '12.5%', 'percent', 1250, per_user_limit => NULL) \gset
SELECT id AS p_pct_full FROM coupon.create_policy(:m1, '100%', 'percent', 10000, per_user_limit => NULL) \gset
SELECT id AS p_bal FROM coupon.create_policy(:m1, 'gift 20000', 'balance', 20000, per_user_limit => NULL) \gset
SELECT id AS p_huge FROM coupon.create_policy(:m1, 'fixed 10^15', 'fixed', 1000000000000000) \gset
SELECT id AS p_partner FROM coupon.create_policy(:m1, 'at m1 and m2', 'fixed', 1000,
       allowed_merchants => ARRAY[:m1, :m2]::bigint[]) \gset
SELECT id AS p_elsewhere FROM coupon.create_policy(:m1, 'at m2 only', 'fixed', 1000,
       allowed_merchants => ARRAY[:m2]::bigint[]) \gset
SELECT id AS p_future FROM coupon.create_policy(:m1, 'valid from tomorrow', 'fixed', 1000,
       valid_from => now() + interval '1 day') \gset
SELECT id AS p_budget FROM coupon.create_policy(:m1, 'budget 5000', 'fixed', 3000, budget => 5000,
       per_user_limit => NULL) \gset
SELECT id AS p_pause FROM coupon.create_policy(:m1, 'to be paused', 'fixed', 1000) \gset
SELECT id AS p_retire FROM coupon.create_policy(:m1, 'to be retired', 'fixed', 1000) \gset
SELECT id AS p_code FROM coupon.create_policy(:m1, 'by code', 'fixed', 1000, issue_method => 'code') \gset
SELECT id AS p_susp FROM coupon.create_policy(:m_susp, 'of a suspended shop', 'fixed', 1000) \gset

SELECT id AS c_fixed FROM coupon.issue(:p_fixed, 'vic') \gset
SELECT id AS c_pct FROM coupon.issue(:p_pct, 'vic') \gset
SELECT id AS c_pct_nomax FROM coupon.issue(:p_pct_nomax, 'vic') \gset
SELECT id AS c_pct_full FROM coupon.issue(:p_pct_full, 'vic') \gset
SELECT id AS c_bal FROM coupon.issue(:p_bal, 'vic') \gset
SELECT id AS c_huge FROM coupon.issue(:p_huge, 'vic') \gset
SELECT id AS c_partner FROM coupon.issue(:p_partner, 'vic') \gset
SELECT id AS c_elsewhere FROM coupon.issue(:p_elsewhere, 'vic') \gset
SELECT id AS c_future FROM coupon.issue(:p_future, 'vic') \gset
SELECT id AS c_b1 FROM coupon.issue(:p_budget, 'vic') \gset
SELECT id AS c_b2 FROM coupon.issue(:p_budget, 'vic') \gset
SELECT id AS c_pause FROM coupon.issue(:p_pause, 'vic') \gset
SELECT id AS c_retire FROM coupon.issue(:p_retire, 'vic') \gset
SELECT id AS c_susp FROM coupon.issue(:p_susp, 'vic') \gset
SELECT id AS c_used FROM coupon.issue(:p_fixed, 'vic') \gset
SELECT id AS c_cancel FROM coupon.issue(:p_fixed, 'vic') \gset
SELECT id AS c_late FROM coupon.issue(:p_fixed, 'vic') \gset
SELECT id AS c_expired FROM coupon.issue(:p_fixed, 'vic') \gset
SELECT id AS c_walt FROM coupon.issue(:p_fixed, 'walt') \gset
SELECT count(*) AS codes FROM coupon.generate_codes(:p_code, 1);
SELECT id AS c_unclaimed FROM coupon.coupon WHERE policy_id = :p_code \gset

-- states that need other functions (or an operator) first
SELECT status FROM coupon.set_policy_status(:p_pause, 'paused');
SELECT status FROM coupon.set_policy_status(:p_retire, 'retired');
SELECT discount FROM coupon.reserve(:c_b1, 'vic', :m1, 'order-b1', 10000);
SELECT status, discount FROM coupon.confirm((SELECT id FROM coupon.reserve(:c_used, 'vic', :m1, 'order-used', 10000)));
-- no function cancels a coupon yet, and time cannot be waited for here:
-- an operator's UPDATE stands in for both
UPDATE coupon.coupon SET status = 'cancelled' WHERE id = :c_cancel;
UPDATE coupon.coupon SET expires_at = now() - interval '1 second' WHERE id = :c_late;
UPDATE coupon.coupon SET status = 'expired', expires_at = now() - interval '1 day' WHERE id = :c_expired;
UPDATE coupon.merchant SET status = 'suspended' WHERE id = :m_susp;
SELECT budget, budget_used FROM coupon.policy WHERE id = :p_budget;

SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) AS coupons_md5 FROM coupon.coupon c \gset
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) AS policies_md5 FROM coupon.policy p \gset
SELECT count(*) AS reservations_before FROM coupon.reservation \gset

-- discounts: fixed up to the order amount; percent is floor(amount * bp /
-- 10000) capped by max_discount; balance up to what is left
SELECT t.label, v.ok, v.discount, v.reason FROM (VALUES
	('fixed at min order',       :c_fixed,     :m1, 10000),
	('fixed at 10^15',           :c_fixed,     :m1, 1000000000000000),
	('fixed 10^15 at 10^15',     :c_huge,      :m1, 1000000000000000),
	('fixed 10^15 at 1',         :c_huge,      :m1, 1),
	('fixed 10^15 at 0',         :c_huge,      :m1, 0),
	('percent 9999 floors',      :c_pct,       :m1, 9999),
	('percent 39999',            :c_pct,       :m1, 39999),
	('percent 40000 = cap',      :c_pct,       :m1, 40000),
	('percent 100000 capped',    :c_pct,       :m1, 100000),
	('percent 7 -> 0',           :c_pct_nomax, :m1, 7),
	('percent 8 -> 1',           :c_pct_nomax, :m1, 8),
	('percent 0',                :c_pct_nomax, :m1, 0),
	('percent 10^15 no cap',     :c_pct_nomax, :m1, 1000000000000000),
	('percent 10^15 - 1',        :c_pct_nomax, :m1, 999999999999999),
	('100% of 10^15',            :c_pct_full,  :m1, 1000000000000000),
	('balance 20000 at 5000',    :c_bal,       :m1, 5000),
	('balance 20000 at 30000',   :c_bal,       :m1, 30000),
	('partner coupon at issuer', :c_partner,   :m1, 5000),
	('partner coupon at m2',     :c_partner,   :m2, 5000),
	('m2-only coupon at m2',     :c_elsewhere, :m2, 5000),
	('retired policy',           :c_retire,    :m1, 5000),
	('budget room for 2000',     :c_b2,        :m1, 2000)
) AS t(label, cid, mid, amount), LATERAL coupon.validate(t.cid, 'vic', t.mid, t.amount) v;

-- every reason, reported and never raised
SELECT t.label, v.ok, v.discount, v.reason FROM (VALUES
	('coupon 999999999',         999999999,    'vic',  :m1, 10000),
	('coupon -1',                -1,           'vic',  :m1, 10000),
	('coupon 2^63-1',            9223372036854775807, 'vic', :m1, 10000),
	('unclaimed code',           :c_unclaimed, 'vic',  :m1, 10000),
	('another user''s coupon',   :c_walt,      'vic',  :m1, 10000),
	('user id differs in case',  :c_fixed,     'Vic',  :m1, 10000),
	('paused policy',            :c_pause,     'vic',  :m1, 10000),
	('reserved',                 :c_b1,        'vic',  :m1, 10000),
	('used',                     :c_used,      'vic',  :m1, 10000),
	('cancelled',                :c_cancel,    'vic',  :m1, 10000),
	('past expires_at',          :c_late,      'vic',  :m1, 10000),
	('marked expired',           :c_expired,   'vic',  :m1, 10000),
	('not valid yet',            :c_future,    'vic',  :m1, 10000),
	('issuer only, at m2',       :c_fixed,     'vic',  :m2, 10000),
	-- where a coupon cannot be spent, neither its owner nor its state shows
	('at m2, another user',      :c_fixed,     'eve',  :m2, 10000),
	('at m2, used',              :c_used,      'vic',  :m2, 10000),
	('not in allowed_merchants', :c_partner,   'vic',  :m3, 10000),
	('m2-only coupon at issuer', :c_elsewhere, 'vic',  :m1, 10000),
	('merchant 999999999',       :c_fixed,     'vic',  999999999, 10000),
	('below min order',          :c_fixed,     'vic',  :m1, 9999),
	('budget exhausted',         :c_b2,        'vic',  :m1, 10000),
	-- a suspended merchant's coupons are not usable (no new policies, issuance or use)
	('merchant suspended',       :c_susp,      'vic',  :m_susp, 10000)
) AS t(label, cid, uid, mid, amount), LATERAL coupon.validate(t.cid, t.uid, t.mid, t.amount) v;

-- malformed input raises PT400
SELECT coupon.validate(:c_fixed, 'vic', :m1, -1);
SELECT coupon.validate(:c_fixed, '', :m1, 10000);
SELECT coupon.validate(NULL, 'vic', :m1, 10000);
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('coupon NULL',   $$SELECT coupon.validate(NULL, 'vic', %s, 1)$$, ARRAY[:'m1']),
	('user NULL',     $$SELECT coupon.validate(%s, NULL, %s, 1)$$, ARRAY[:'c_fixed', :'m1']),
	('user empty',    $$SELECT coupon.validate(%s, '', %s, 1)$$, ARRAY[:'c_fixed', :'m1']),
	('user 201',      $$SELECT coupon.validate(%s, %L, %s, 1)$$, ARRAY[:'c_fixed', repeat('v', 201), :'m1']),
	('user 10000',    $$SELECT coupon.validate(%s, %L, %s, 1)$$, ARRAY[:'c_fixed', repeat('v', 10000), :'m1']),
	('merchant NULL', $$SELECT coupon.validate(%s, 'vic', NULL, 1)$$, ARRAY[:'c_fixed']),
	('amount NULL',   $$SELECT coupon.validate(%s, 'vic', %s, NULL)$$, ARRAY[:'c_fixed', :'m1']),
	('amount -1',     $$SELECT coupon.validate(%s, 'vic', %s, -1)$$, ARRAY[:'c_fixed', :'m1']),
	('amount 10^15+1',$$SELECT coupon.validate(%s, 'vic', %s, 1000000000000001)$$, ARRAY[:'c_fixed', :'m1']),
	('amount 2^63-1', $$SELECT coupon.validate(%s, 'vic', %s, 9223372036854775807)$$, ARRAY[:'c_fixed', :'m1']),
	('amount -2^63',  $$SELECT coupon.validate(%s, 'vic', %s, -9223372036854775808)$$, ARRAY[:'c_fixed', :'m1']),
	('amount 2^63',   $$SELECT coupon.validate(%s, 'vic', %s, '9223372036854775808')$$, ARRAY[:'c_fixed', :'m1'])
) AS t(label, stmt, args);

-- tenancy: a caller acting for m2 cannot ask about orders at m1
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT coupon.validate(:c_partner, 'vic', :m1, 5000);
SELECT ok, discount, reason FROM coupon.validate(:c_partner, 'vic', :m2, 5000);
RESET request.jwt.claims;

-- validate() keeps copies of policies and merchants (src/factcache.c; other
-- sessions' changes: test/isolation/specs/validate_cache.spec).  The
-- session's own uncommitted changes show at once, and go with a rollback.
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
BEGIN;
SELECT status FROM coupon.set_policy_status(:p_fixed, 'paused');
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
ROLLBACK;
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
BEGIN;
UPDATE coupon.merchant SET status = 'suspended' WHERE id = :m1;
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
-- such a transaction can be prepared: until COMMIT PREPARED the change is
-- not seen (and no copy is used: the prepared transaction holds the guard);
-- the commit, here from this session, drops every session's copies
PREPARE TRANSACTION 'coupon_validate_test';
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
COMMIT PREPARED 'coupon_validate_test';
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
UPDATE coupon.merchant SET status = 'active' WHERE id = :m1;
SELECT ok, discount, reason FROM coupon.validate(:c_fixed, 'vic', :m1, 20000);
-- the triggers that drop the copies fire even in replica sessions
SELECT tgrelid::regclass AS "table", tgname, tgenabled FROM pg_trigger
 WHERE tgname IN ('policy_fact_change', 'merchant_fact_change') ORDER BY 1;
-- validate() answers with a row of the named type coupon.validation
SELECT pg_typeof(coupon.validate(:c_fixed, 'vic', :m1, 20000));

-- validate changed nothing
SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) = :'coupons_md5' AS coupons_unchanged FROM coupon.coupon c;
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) = :'policies_md5' AS policies_unchanged FROM coupon.policy p;
SELECT count(*) - :reservations_before AS reservations_made FROM coupon.reservation;
