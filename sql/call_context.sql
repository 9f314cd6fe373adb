-- call_context.sql: calls chained and nested in one statement see what the
-- calls before them did, as the same calls run one per statement do
-- (docs/concepts.md, "One call context").  Each case runs the calls one per
-- statement first, keeps what they answered (ids left out), then the same
-- calls in one statement, and compares.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- code policies need a code secret (the session's is enough here)
SET coupon.code_secret = 'call context test secret';
SELECT id AS m FROM coupon.create_merchant('chained shop') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'five hundred', 'fixed', 500, per_user_limit => NULL) \gset
SELECT id AS pc FROM coupon.create_policy(:m, 'by code', 'fixed', 700, issue_method => 'code',
                                          per_user_limit => NULL) \gset

-- issue -> reserve
SELECT id AS c FROM coupon.issue(:p, 'ir-1') \gset
SELECT format('%s %s', status, discount) AS want FROM coupon.reserve(:c, 'ir-1', :m, 'ir-o1', 5000) \gset
SELECT format('%s %s', r.status, r.discount) = :'want' AS nested, r.status, r.discount
  FROM coupon.reserve((coupon.issue(:p, 'ir-2')).id, 'ir-2', :m, 'ir-o2', 5000) r;
WITH i AS (SELECT id FROM coupon.issue(:p, 'ir-3')),
	 r AS (SELECT x.* FROM i, coupon.reserve(i.id, 'ir-3', :m, 'ir-o3', 5000) x)
SELECT format('%s %s', r.status, r.discount) = :'want' AS in_cte FROM r;
-- a coupon inserted by one CTE's call and used by the next one's
CREATE TEMP TABLE kept (coupon_id bigint);
WITH ins AS (INSERT INTO kept SELECT (coupon.issue(:p, 'ir-4')).id RETURNING coupon_id)
SELECT format('%s %s', r.status, r.discount) = :'want' AS after_insert
  FROM ins, coupon.reserve(ins.coupon_id, 'ir-4', :m, 'ir-o4', 5000) r;

-- issue -> pay (the coupon in the payment's list)
SELECT id AS c FROM coupon.issue(:p, 'ip-1') \gset
SELECT format('%s %s %s', state, discount, amount) AS want
  FROM coupon.pay(:m, 'ip-1', 'ip-o1', 5000, ARRAY[:c]) \gset
SELECT format('%s %s %s', y.state, y.discount, y.amount) = :'want' AS nested, y.state, y.discount
  FROM coupon.pay(:m, 'ip-2', 'ip-o2', 5000, ARRAY[(coupon.issue(:p, 'ip-2')).id]) y;

-- reserve -> confirm
SELECT id AS c FROM coupon.issue(:p, 'rc-1') \gset
SELECT id AS r FROM coupon.reserve(:c, 'rc-1', :m, 'rc-o1', 5000) \gset
SELECT format('%s %s', status, discount) AS want FROM coupon.confirm(:r) \gset
SELECT id AS c FROM coupon.issue(:p, 'rc-2') \gset
SELECT format('%s %s', x.status, x.discount) = :'want' AS nested, x.status
  FROM coupon.confirm((coupon.reserve(:c, 'rc-2', :m, 'rc-o2', 5000)).id) x;
SELECT id AS c FROM coupon.issue(:p, 'rc-3') \gset
WITH h AS (SELECT id FROM coupon.reserve(:c, 'rc-3', :m, 'rc-o3', 5000))
SELECT format('%s %s', x.status, x.discount) = :'want' AS in_cte
  FROM h, coupon.confirm(h.id) x;
SELECT status AS coupon_after FROM coupon.coupon WHERE id = :c;

-- reserve -> release
SELECT id AS c FROM coupon.issue(:p, 'rr-1') \gset
SELECT id AS r FROM coupon.reserve(:c, 'rr-1', :m, 'rr-o1', 5000) \gset
SELECT format('%s %s', status, discount) AS want FROM coupon.release(:r) \gset
SELECT id AS c FROM coupon.issue(:p, 'rr-2') \gset
SELECT format('%s %s', x.status, x.discount) = :'want' AS nested, x.status
  FROM coupon.release((coupon.reserve(:c, 'rr-2', :m, 'rr-o2', 5000)).id) x;
SELECT status AS coupon_after FROM coupon.coupon WHERE id = :c;

-- redeem_code -> reserve
SELECT code AS code1 FROM coupon.generate_codes(:pc, 1) code \gset
SELECT code AS code2 FROM coupon.generate_codes(:pc, 1) code \gset
SELECT id AS c FROM coupon.redeem_code(:'code1', 'cr-1') \gset
SELECT format('%s %s', status, discount) AS want FROM coupon.reserve(:c, 'cr-1', :m, 'cr-o1', 5000) \gset
SELECT format('%s %s', x.status, x.discount) = :'want' AS nested, x.status, x.discount
  FROM coupon.reserve((coupon.redeem_code(:'code2', 'cr-2')).id, 'cr-2', :m, 'cr-o2', 5000) x;

-- a PL/pgSQL loop, each step's calls nested in one expression
SELECT set_config('call_context.p', :'p', false) IS NOT NULL AS p_set,
	   set_config('call_context.m', :'m', false) IS NOT NULL AS m_set;
DO $$
DECLARE
	p bigint := current_setting('call_context.p')::bigint;
	m bigint := current_setting('call_context.m')::bigint;
	r coupon.reservation;
BEGIN
	FOR i IN 1 .. 3 LOOP
		r := coupon.confirm((coupon.reserve((coupon.issue(p, 'loop-' || i)).id, 'loop-' || i, m,
											 'loop-o' || i, 5000)).id);
		RAISE WARNING 'step %: %', i, r.status;
	END LOOP;
END
$$;
SELECT count(*) AS loop_coupons_used FROM coupon.coupon WHERE user_id LIKE 'loop-%' AND status = 'used';

-- a STABLE function reads under the calling statement's snapshot, as
-- PostgreSQL's own STABLE functions do: a coupon that an earlier call of
-- the same statement issued is not there yet for validate()
SELECT v.ok, v.reason FROM coupon.validate((coupon.issue(:p, 'st-1')).id, 'st-1', :m, 5000) v;
-- in the next statement it is
SELECT v.ok, v.reason FROM coupon.validate((SELECT max(id) FROM coupon.coupon WHERE user_id = 'st-1'),
										   'st-1', :m, 5000) v;
