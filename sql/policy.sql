-- policy.sql: coupon.create_policy, coupon.set_policy_status, policy_stock, view policy_stats
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
-- ids of this file start at 6000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 6000, false);
	PERFORM setval('coupon.policy_id_seq', 6000, false);
	PERFORM setval('coupon.coupon_id_seq', 6000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 6000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Policy shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Policy partner') \gset
SELECT id AS m_gone FROM coupon.create_merchant('Policy suspended') \gset
UPDATE coupon.merchant SET status = 'suspended' WHERE id = :m_gone;

-- the defaults of a minimal fixed policy
SELECT id, merchant_id, name, discount_type, discount_value, max_discount, min_order_amount,
       issue_method, total_quantity, per_user_limit, valid_from, valid_until, valid_days,
       issue_starts_at, issue_ends_at, allowed_merchants, merchant_share_bp, budget,
       budget_used, codes_generated, stackable, status
  FROM coupon.create_policy(:m1, 'Fixed 1000', 'fixed', 1000);
-- every kind, with every optional field
SELECT id, discount_type, discount_value, max_discount, min_order_amount, issue_method,
       total_quantity, per_user_limit, valid_days, allowed_merchants, merchant_share_bp,
       budget, stackable, status
  FROM coupon.create_policy(:m1, 'Percent 12.5%', 'percent', 1250, issue_method => 'fcfs',
       total_quantity => 100, per_user_limit => 2, max_discount => 5000,
       min_order_amount => 10000, valid_days => 30, allowed_merchants => ARRAY[:m1, :m2]::bigint[],
       merchant_share_bp => 5000, budget => 1000000, stackable => true, status => 'draft');
SELECT id, discount_type, discount_value, issue_method, total_quantity, per_user_limit, status,
       valid_until - valid_from AS valid_for, issue_ends_at - issue_starts_at AS issue_for
  FROM coupon.create_policy(:m1, 'Gift card', 'balance', 50000, issue_method => 'code',
       total_quantity => 10, per_user_limit => NULL, status => 'paused',
       valid_from => '2030-01-01 00:00+00', valid_until => '2031-01-01 00:00+00',
       issue_starts_at => '2030-01-01 00:00+00', issue_ends_at => '2031-01-01 00:00+00');
-- boundaries that are accepted
SELECT discount_type, discount_value, max_discount, total_quantity, per_user_limit, valid_days,
       merchant_share_bp, budget, min_order_amount
  FROM coupon.create_policy(:m1, 'max fixed', 'fixed', 1000000000000000,
       total_quantity => 1000000000, per_user_limit => 1000000, valid_days => 3650,
       merchant_share_bp => 0, budget => 1000000000000000, min_order_amount => 1000000000000000);
SELECT discount_type, discount_value, max_discount
  FROM coupon.create_policy(:m1, 'percent 100%', 'percent', 10000, max_discount => 1000000000000000);
SELECT discount_type, discount_value FROM coupon.create_policy(:m1, 'percent 0.01%', 'percent', 1);
SELECT length(name) AS name_len FROM coupon.create_policy(:m1, repeat('p', 200), 'fixed', 1);
-- a policy of another merchant, spendable at the issuer and at a partner
SELECT merchant_id = :m2 AS is_m2, allowed_merchants = ARRAY[:m2, :m1]::bigint[] AS allowed_ok
  FROM coupon.create_policy(:m2, 'Partner', 'fixed', 500, allowed_merchants => ARRAY[:m2, :m1]::bigint[]);

-- limited direct and fcfs policies get their stock in up to 64 shards; code
-- policies count generated codes instead; unlimited ones have no stock
SELECT id AS p100 FROM coupon.create_policy(:m1, 'stock 100', 'fixed', 1, total_quantity => 100) \gset
SELECT id AS p3 FROM coupon.create_policy(:m1, 'stock 3', 'fixed', 1, issue_method => 'fcfs', total_quantity => 3) \gset
SELECT id AS pcode FROM coupon.create_policy(:m1, 'code 5', 'fixed', 1, issue_method => 'code', total_quantity => 5) \gset
SELECT id AS pfree FROM coupon.create_policy(:m1, 'no stock', 'fixed', 1) \gset
SELECT p.name, count(s.shard) AS shards, sum(s.remaining) AS remaining,
       min(s.remaining) AS min_shard, max(s.remaining) AS max_shard
  FROM coupon.policy p LEFT JOIN coupon.policy_stock s ON s.policy_id = p.id
 WHERE p.id IN (:p100, :p3, :pcode, :pfree)
 GROUP BY p.id, p.name ORDER BY p.id;
SELECT policy_id = :p100 AS is_p100, name, issue_method, status, total_quantity, stock_remaining,
       unclaimed, issued, available, reserved, used, expired, cancelled, budget, budget_used
  FROM coupon.policy_stats WHERE policy_id = :p100;
SELECT name, total_quantity, stock_remaining FROM coupon.policy_stats
 WHERE policy_id IN (:p3, :pcode, :pfree) ORDER BY policy_id;

-- errors raise PTnnn, a JSON DETAIL naming the argument, and a HINT
SELECT coupon.create_policy(:m1, 'bad', 'fixed', 0);
SELECT coupon.create_policy(:m1, 'bad', 'fixed', 1, valid_from => '2030-02-01', valid_until => '2030-01-01');
SELECT coupon.create_policy(:m1, 'bad', 'fixed', 1, issue_method => 'fcfs');
SELECT coupon.create_policy(999999999, 'bad', 'fixed', 1);
SELECT coupon.create_policy(:m_gone, 'bad', 'fixed', 1);

-- every malformed field, and none of these calls creates anything
SELECT count(*) AS policies_before FROM coupon.policy \gset
SELECT count(*) AS shards_before FROM coupon.policy_stock \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('merchant NULL',        $$SELECT coupon.create_policy(NULL, 'p', 'fixed', 1)$$, '{}'::text[]),
	('merchant 0',           $$SELECT coupon.create_policy(0, 'p', 'fixed', 1)$$, '{}'),
	('merchant -1',          $$SELECT coupon.create_policy(-1, 'p', 'fixed', 1)$$, '{}'),
	('merchant 2^63-1',      $$SELECT coupon.create_policy(9223372036854775807, 'p', 'fixed', 1)$$, '{}'),
	('merchant suspended',   $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1)$$, ARRAY[:'m_gone']),
	('name NULL',            $$SELECT coupon.create_policy(%s, NULL, 'fixed', 1)$$, ARRAY[:'m1']),
	('name empty',           $$SELECT coupon.create_policy(%s, '', 'fixed', 1)$$, ARRAY[:'m1']),
	('name 201 chars',       $$SELECT coupon.create_policy(%s, %L, 'fixed', 1)$$, ARRAY[:'m1', repeat('p', 201)]),
	('name 10000 chars',     $$SELECT coupon.create_policy(%s, %L, 'fixed', 1)$$, ARRAY[:'m1', repeat('p', 10000)]),
	('type NULL',            $$SELECT coupon.create_policy(%s, 'p', NULL, 1)$$, ARRAY[:'m1']),
	('type empty',           $$SELECT coupon.create_policy(%s, 'p', '', 1)$$, ARRAY[:'m1']),
	('type unknown',         $$SELECT coupon.create_policy(%s, 'p', 'bogo', 1)$$, ARRAY[:'m1']),
	('type upper case',      $$SELECT coupon.create_policy(%s, 'p', 'FIXED', 1)$$, ARRAY[:'m1']),
	('type 10000 chars',     $$SELECT coupon.create_policy(%s, 'p', %L, 1)$$, ARRAY[:'m1', repeat('f', 10000)]),
	('value NULL',           $$SELECT coupon.create_policy(%s, 'p', 'fixed', NULL)$$, ARRAY[:'m1']),
	('fixed 0',              $$SELECT coupon.create_policy(%s, 'p', 'fixed', 0)$$, ARRAY[:'m1']),
	('fixed -1',             $$SELECT coupon.create_policy(%s, 'p', 'fixed', -1)$$, ARRAY[:'m1']),
	('fixed 10^15+1',        $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1000000000000001)$$, ARRAY[:'m1']),
	('fixed 2^63-1',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 9223372036854775807)$$, ARRAY[:'m1']),
	('fixed -2^63',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', -9223372036854775808)$$, ARRAY[:'m1']),
	('fixed 2^63 (overflow)',$$SELECT coupon.create_policy(%s, 'p', 'fixed', '9223372036854775808')$$, ARRAY[:'m1']),
	('balance 10^15+1',      $$SELECT coupon.create_policy(%s, 'p', 'balance', 1000000000000001)$$, ARRAY[:'m1']),
	('balance 0',            $$SELECT coupon.create_policy(%s, 'p', 'balance', 0)$$, ARRAY[:'m1']),
	('percent 0',            $$SELECT coupon.create_policy(%s, 'p', 'percent', 0)$$, ARRAY[:'m1']),
	('percent 10001',        $$SELECT coupon.create_policy(%s, 'p', 'percent', 10001)$$, ARRAY[:'m1']),
	('percent 10^15',        $$SELECT coupon.create_policy(%s, 'p', 'percent', 1000000000000000)$$, ARRAY[:'m1']),
	('max_discount on fixed',$$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, max_discount => 1)$$, ARRAY[:'m1']),
	('max_discount on balance',$$SELECT coupon.create_policy(%s, 'p', 'balance', 1, max_discount => 1)$$, ARRAY[:'m1']),
	('max_discount 0',       $$SELECT coupon.create_policy(%s, 'p', 'percent', 1, max_discount => 0)$$, ARRAY[:'m1']),
	('max_discount -1',      $$SELECT coupon.create_policy(%s, 'p', 'percent', 1, max_discount => -1)$$, ARRAY[:'m1']),
	('max_discount 10^15+1', $$SELECT coupon.create_policy(%s, 'p', 'percent', 1, max_discount => 1000000000000001)$$, ARRAY[:'m1']),
	('min_order NULL',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, min_order_amount => NULL)$$, ARRAY[:'m1']),
	('min_order -1',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, min_order_amount => -1)$$, ARRAY[:'m1']),
	('min_order 10^15+1',    $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, min_order_amount => 1000000000000001)$$, ARRAY[:'m1']),
	('min_order 2^63-1',     $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, min_order_amount => 9223372036854775807)$$, ARRAY[:'m1']),
	('method NULL',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_method => NULL)$$, ARRAY[:'m1']),
	('method empty',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_method => '')$$, ARRAY[:'m1']),
	('method unknown',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_method => 'lottery')$$, ARRAY[:'m1']),
	('method 10000 chars',   $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_method => %L)$$, ARRAY[:'m1', repeat('d', 10000)]),
	('fcfs without total',   $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_method => 'fcfs')$$, ARRAY[:'m1']),
	('total 0',              $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, total_quantity => 0)$$, ARRAY[:'m1']),
	('total -1',             $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, total_quantity => -1)$$, ARRAY[:'m1']),
	('total 10^9+1',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, total_quantity => 1000000001)$$, ARRAY[:'m1']),
	('total 10^15',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, total_quantity => 1000000000000000)$$, ARRAY[:'m1']),
	('total 2^63-1',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, total_quantity => 9223372036854775807)$$, ARRAY[:'m1']),
	('per_user 0',           $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, per_user_limit => 0)$$, ARRAY[:'m1']),
	('per_user -1',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, per_user_limit => -1)$$, ARRAY[:'m1']),
	('per_user 10^6+1',      $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, per_user_limit => 1000001)$$, ARRAY[:'m1']),
	('per_user 2^31-1',      $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, per_user_limit => 2147483647)$$, ARRAY[:'m1']),
	('valid_until = valid_from', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_from => '2030-01-01', valid_until => '2030-01-01')$$, ARRAY[:'m1']),
	('valid_until < valid_from', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_from => '2030-01-02', valid_until => '2030-01-01')$$, ARRAY[:'m1']),
	('issue_ends = issue_starts', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_starts_at => '2030-01-01', issue_ends_at => '2030-01-01')$$, ARRAY[:'m1']),
	('issue_ends < issue_starts', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, issue_starts_at => '2030-01-02', issue_ends_at => '2030-01-01')$$, ARRAY[:'m1']),
	('issue_ends > valid_until', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_until => '2030-01-01', issue_ends_at => '2030-01-02')$$, ARRAY[:'m1']),
	('issue_starts = valid_until', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_until => '2030-01-01', issue_starts_at => '2030-01-01')$$, ARRAY[:'m1']),
	('issue_starts > valid_until', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_until => '2030-01-01', issue_starts_at => '2030-01-02')$$, ARRAY[:'m1']),
	('valid_days 0',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_days => 0)$$, ARRAY[:'m1']),
	('valid_days -1',        $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_days => -1)$$, ARRAY[:'m1']),
	('valid_days 3651',      $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, valid_days => 3651)$$, ARRAY[:'m1']),
	('share NULL',           $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, merchant_share_bp => NULL)$$, ARRAY[:'m1']),
	('share -1',             $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, merchant_share_bp => -1)$$, ARRAY[:'m1']),
	('share 10001',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, merchant_share_bp => 10001)$$, ARRAY[:'m1']),
	('budget 0',             $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, budget => 0)$$, ARRAY[:'m1']),
	('budget -1',            $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, budget => -1)$$, ARRAY[:'m1']),
	('budget 10^15+1',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, budget => 1000000000000001)$$, ARRAY[:'m1']),
	('budget 2^63-1',        $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, budget => 9223372036854775807)$$, ARRAY[:'m1']),
	('stackable NULL',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, stackable => NULL)$$, ARRAY[:'m1']),
	('status NULL',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, status => NULL)$$, ARRAY[:'m1']),
	('status retired',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, status => 'retired')$$, ARRAY[:'m1']),
	('status unknown',       $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, status => 'live')$$, ARRAY[:'m1']),
	('status upper case',    $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, status => 'ACTIVE')$$, ARRAY[:'m1']),
	('status empty',         $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, status => '')$$, ARRAY[:'m1']),
	('allowed empty',        $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => '{}')$$, ARRAY[:'m1']),
	('allowed NULL element', $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => '{NULL}')$$, ARRAY[:'m1']),
	('allowed duplicate',    $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => ARRAY[%s, %s]::bigint[])$$, ARRAY[:'m1', :'m1', :'m1']),
	('allowed unknown',      $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => ARRAY[%s, -1]::bigint[])$$, ARRAY[:'m1', :'m1']),
	('allowed 2-D',          $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => ARRAY[[%s], [%s]]::bigint[])$$, ARRAY[:'m1', :'m1', :'m2']),
	('allowed 1001 ids',     $$SELECT coupon.create_policy(%s, 'p', 'fixed', 1, allowed_merchants => (SELECT array_agg(i) FROM generate_series(1, 1001) i)::bigint[])$$, ARRAY[:'m1'])
) AS t(label, stmt, args);
SELECT count(*) - :policies_before AS policies_created FROM coupon.policy;
SELECT count(*) - :shards_before AS shards_created FROM coupon.policy_stock;

-- tenancy: a caller whose JWT says merchant m2 acts on m2 only
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT coupon.create_policy(:m1, 'not mine', 'fixed', 1);
SELECT merchant_id = :m2 AS own_policy FROM coupon.create_policy(:m2, 'mine', 'fixed', 1);
SELECT coupon.set_policy_status(:pfree, 'paused');
-- a merchant may not make a policy another merchant would take: naming
-- other merchants in allowed_merchants is the platform's (it funds the
-- discount there)
SELECT try($$SELECT coupon.create_policy(%s, 'partner', 'fixed', 1, allowed_merchants => ARRAY[%s, %s]::bigint[])$$,
		   :'m2', :'m2', :'m1') AS merchant_names_another;
SELECT count(*) AS partner_policies FROM coupon.policy WHERE name = 'partner';
-- while a coupon_app session bound to m2 sees only m2's policies in policy_stats
SET ROLE coupon_app;
SELECT bool_and(merchant_id = :m2) AS only_m2, count(*) > 0 AS some FROM coupon.policy_stats;
RESET ROLE;
RESET request.jwt.claims;
SELECT count(DISTINCT merchant_id) > 1 AS platform_sees_all FROM coupon.policy_stats;
-- allowed merchants keep the issuer's currency: a discount is only ever
-- taken off an amount of the same currency
SELECT id AS m_usd FROM coupon.create_merchant('Dollar shop', 'USD') \gset
SELECT try($$SELECT coupon.create_policy(%s, 'cross currency', 'fixed', 1000, allowed_merchants => ARRAY[%s, %s]::bigint[])$$,
		   :'m1', :'m1', :'m_usd') AS other_currency;

-- set_policy_status: every transition; retired is final, nothing returns to
-- draft, draft goes to active (or retired) only; the same status is a no-op
CREATE FUNCTION policy_in(m bigint, s text) RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
	p bigint;
BEGIN
	SELECT id INTO p FROM coupon.create_policy(m, 'transition from ' || s, 'fixed', 1,
		status => CASE WHEN s = 'retired' THEN 'active' ELSE s END);
	IF s = 'retired' THEN
		PERFORM coupon.set_policy_status(p, 'retired');
	END IF;
	RETURN p;
END
$fn$;
SELECT f.s AS "from", t.s AS "to",
       try($$SELECT coupon.set_policy_status(%s, %L)$$, policy_in(:m1, f.s)::text, t.s) AS result
  FROM (VALUES (1, 'draft'), (2, 'active'), (3, 'paused'), (4, 'retired')) f(i, s),
       (VALUES (1, 'draft'), (2, 'active'), (3, 'paused'), (4, 'retired')) t(j, s)
 ORDER BY f.i, t.j;

-- the transitions change the row; the same status again changes nothing
SELECT id AS pst, updated_at AS pst_updated FROM coupon.create_policy(:m1, 'status walk', 'fixed', 1, status => 'draft') \gset
SELECT status, updated_at = :'pst_updated' AS unchanged FROM coupon.set_policy_status(:pst, 'draft');
SELECT status, updated_at > :'pst_updated' AS updated FROM coupon.set_policy_status(:pst, 'active');
SELECT status FROM coupon.set_policy_status(:pst, 'paused');
SELECT status FROM coupon.set_policy_status(:pst, 'active');
SELECT status FROM coupon.set_policy_status(:pst, 'retired');
SELECT coupon.set_policy_status(:pst, 'active');
SELECT status FROM coupon.policy WHERE id = :pst;
SELECT coupon.set_policy_status(:pst, 'archived');
SELECT coupon.set_policy_status(999999999, 'active');

SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('policy NULL',      $$SELECT coupon.set_policy_status(NULL, 'active')$$, '{}'::text[]),
	('policy -1',        $$SELECT coupon.set_policy_status(-1, 'active')$$, '{}'),
	('policy 2^63-1',    $$SELECT coupon.set_policy_status(9223372036854775807, 'active')$$, '{}'),
	('status NULL',      $$SELECT coupon.set_policy_status(%s, NULL)$$, ARRAY[:'pfree']),
	('status empty',     $$SELECT coupon.set_policy_status(%s, '')$$, ARRAY[:'pfree']),
	('status unknown',   $$SELECT coupon.set_policy_status(%s, 'deleted')$$, ARRAY[:'pfree']),
	('status upper case',$$SELECT coupon.set_policy_status(%s, 'PAUSED')$$, ARRAY[:'pfree']),
	('status 10000 chars', $$SELECT coupon.set_policy_status(%s, %L)$$, ARRAY[:'pfree', repeat('a', 10000)])
) AS t(label, stmt, args);
SELECT status FROM coupon.policy WHERE id = :pfree;
