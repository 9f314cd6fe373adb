-- reserve.sql: coupon.reserve, coupon.confirm, coupon.release
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
-- ids of this file start at 8000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 8000, false);
	PERFORM setval('coupon.policy_id_seq', 8000, false);
	PERFORM setval('coupon.coupon_id_seq', 8000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 8000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Reserve shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Reserve other shop') \gset
SELECT id AS p_fixed FROM coupon.create_policy(:m1, 'fixed 3000', 'fixed', 3000, per_user_limit => NULL) \gset
SELECT id AS p_bal FROM coupon.create_policy(:m1, 'gift 20000', 'balance', 20000, per_user_limit => NULL) \gset
SELECT id AS p_budget FROM coupon.create_policy(:m1, 'budget 5000', 'fixed', 3000, budget => 5000, per_user_limit => NULL) \gset
SELECT id AS p_min FROM coupon.create_policy(:m1, 'from 10000', 'fixed', 1000, min_order_amount => 10000) \gset
SELECT id AS p_future FROM coupon.create_policy(:m1, 'from tomorrow', 'fixed', 1000, valid_from => now() + interval '1 day') \gset
SELECT id AS p_pause FROM coupon.create_policy(:m1, 'paused later', 'fixed', 1000) \gset
SELECT id AS p_huge FROM coupon.create_policy(:m1, 'fixed 10^15', 'fixed', 1000000000000000) \gset

SELECT id AS c1 FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c2 FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c3 FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c_ttl FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c_lapse FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c_bal FROM coupon.issue(:p_bal, 'rita') \gset
SELECT id AS c_b1 FROM coupon.issue(:p_budget, 'rita') \gset
SELECT id AS c_b2 FROM coupon.issue(:p_budget, 'rita') \gset
SELECT id AS c_b3 FROM coupon.issue(:p_budget, 'rita') \gset
SELECT id AS c_min FROM coupon.issue(:p_min, 'rita') \gset
SELECT id AS c_future FROM coupon.issue(:p_future, 'rita') \gset
SELECT id AS c_pause FROM coupon.issue(:p_pause, 'rita') \gset
SELECT id AS c_huge FROM coupon.issue(:p_huge, 'rita') \gset
SELECT id AS c_cancel FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c_late FROM coupon.issue(:p_fixed, 'rita') \gset
SELECT id AS c_sam FROM coupon.issue(:p_fixed, 'sam') \gset
SELECT status FROM coupon.set_policy_status(:p_pause, 'paused');
-- no function cancels a coupon yet, and time cannot be waited for here
UPDATE coupon.coupon SET status = 'cancelled' WHERE id = :c_cancel;
UPDATE coupon.coupon SET expires_at = now() - interval '1 second' WHERE id = :c_late;

-- a hold: the coupon becomes reserved for coupon.reservation_ttl (900 s)
SELECT id, coupon_id = :c1 AS on_c1, merchant_id = :m1 AS at_m1, user_id, order_id, payment_id,
       order_amount, discount, status, expires_at - created_at AS ttl
  FROM coupon.reserve(:c1, 'rita', :m1, 'order-1', 10000);
SELECT id AS r1 FROM coupon.reservation WHERE coupon_id = :c1 AND order_id = 'order-1' \gset
SELECT status FROM coupon.coupon WHERE id = :c1;
-- the same request again (a retry) returns the same hold
SELECT count(*) AS reservations_before FROM coupon.reservation \gset
SELECT id = :r1 AS same_hold, status FROM coupon.reserve(:c1, 'rita', :m1, 'order-1', 10000);
SELECT count(*) - :reservations_before AS new_rows FROM coupon.reservation;
-- any other request finds the coupon held
SELECT coupon.reserve(:c1, 'rita', :m1, 'order-2', 10000);
SELECT try($$SELECT coupon.reserve(%s, 'rita', %s, 'order-1', 20000)$$, :'c1', :'m1') AS other_amount;
SELECT try($$SELECT coupon.reserve(%s, 'sam', %s, 'order-1', 10000)$$, :'c1', :'m1') AS other_user;

-- confirm spends the coupon; confirming again returns it unchanged
SELECT id = :r1 AS same, status, discount FROM coupon.confirm(:r1);
SELECT status, used_at IS NOT NULL AS used_at_set FROM coupon.coupon WHERE id = :c1;
SELECT updated_at AS r1_updated FROM coupon.reservation WHERE id = :r1 \gset
SELECT status, updated_at = :'r1_updated' AS unchanged FROM coupon.confirm(:r1);
SELECT coupon.release(:r1);
SELECT coupon.reserve(:c1, 'rita', :m1, 'order-3', 10000);
SELECT status FROM coupon.reservation WHERE id = :r1;

-- release gives the coupon back; releasing again returns it unchanged
SELECT id AS r2 FROM coupon.reserve(:c2, 'rita', :m1, 'order-4', 10000) \gset
SELECT status FROM coupon.release(:r2);
SELECT status FROM coupon.coupon WHERE id = :c2;
SELECT updated_at AS r2_updated FROM coupon.reservation WHERE id = :r2 \gset
SELECT status, updated_at = :'r2_updated' AS unchanged FROM coupon.release(:r2);
SELECT coupon.confirm(:r2);
-- and the coupon can be held again, for another order
SELECT id <> :r2 AS new_hold, status, order_id FROM coupon.reserve(:c2, 'rita', :m1, 'order-5', 10000);

-- ttl: explicit, or coupon.reservation_ttl seconds
SELECT expires_at - created_at AS ttl FROM coupon.reserve(:c3, 'rita', :m1, 'order-6', 10000, interval '10 minutes');
SELECT status FROM coupon.release((SELECT id FROM coupon.reservation WHERE order_id = 'order-6'));
SELECT expires_at - created_at AS ttl FROM coupon.reserve(:c3, 'rita', :m1, 'order-7', 10000, interval '7 days');
SELECT status FROM coupon.release((SELECT id FROM coupon.reservation WHERE order_id = 'order-7'));
SELECT expires_at - created_at AS ttl FROM coupon.reserve(:c3, 'rita', :m1, 'order-8', 10000, interval '1 second');
SELECT status FROM coupon.release((SELECT id FROM coupon.reservation WHERE order_id = 'order-8'));
SET coupon.reservation_ttl = 60;
SELECT expires_at - created_at AS ttl FROM coupon.reserve(:c3, 'rita', :m1, 'order-9', 10000);
RESET coupon.reservation_ttl;
SELECT status FROM coupon.release((SELECT id FROM coupon.reservation WHERE order_id = 'order-9'));
SET coupon.reservation_ttl = 0;

-- a hold past its expires_at cannot be confirmed, but can still be released
SELECT id AS r_lapse FROM coupon.reserve(:c_lapse, 'rita', :m1, 'order-lapse', 10000) \gset
UPDATE coupon.reservation SET expires_at = now() - interval '1 second' WHERE id = :r_lapse;
SELECT coupon.confirm(:r_lapse);
SELECT r.status, c.status AS coupon_status FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
 WHERE r.id = :r_lapse;
SELECT status FROM coupon.release(:r_lapse);
SELECT status FROM coupon.coupon WHERE id = :c_lapse;

-- a balance coupon is spent over several orders
SELECT discount FROM coupon.confirm((SELECT id FROM coupon.reserve(:c_bal, 'rita', :m1, 'gift-1', 5000)));
SELECT status, balance FROM coupon.coupon WHERE id = :c_bal;
SELECT discount FROM coupon.confirm((SELECT id FROM coupon.reserve(:c_bal, 'rita', :m1, 'gift-2', 30000)));
SELECT status, balance FROM coupon.coupon WHERE id = :c_bal;
SELECT coupon.reserve(:c_bal, 'rita', :m1, 'gift-3', 1000);

-- the budget counts held and spent discounts; a release gives it back
SELECT id AS rb1 FROM coupon.reserve(:c_b1, 'rita', :m1, 'budget-1', 10000) \gset
SELECT budget, budget_used FROM coupon.policy_stats WHERE policy_id = :p_budget;
SELECT coupon.reserve(:c_b2, 'rita', :m1, 'budget-2', 10000);
SELECT status FROM coupon.release(:rb1);
SELECT budget_used FROM coupon.policy WHERE id = :p_budget;
SELECT discount FROM coupon.confirm((SELECT id FROM coupon.reserve(:c_b2, 'rita', :m1, 'budget-2', 10000)));
SELECT budget_used, reserved, used FROM coupon.policy_stats WHERE policy_id = :p_budget;
SELECT discount FROM coupon.reserve(:c_b1, 'rita', :m1, 'budget-3', 2000);
SELECT budget, budget_used FROM coupon.policy WHERE id = :p_budget;

-- the largest order and discount
SELECT order_amount, discount FROM coupon.reserve(:c_huge, 'rita', :m1, 'huge', 1000000000000000);

-- every reason of validate, raised
SELECT coupon.reserve(999999999, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c_sam, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c_pause, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c_cancel, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c_late, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c_future, 'rita', :m1, 'o', 10000);
SELECT coupon.reserve(:c3, 'rita', :m2, 'o', 10000);
SELECT coupon.reserve(:c_min, 'rita', :m1, 'o', 9999);
SELECT coupon.reserve(:c_b3, 'rita', :m1, 'o', 10000);

-- refusals and malformed input change nothing
SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) AS coupons_md5 FROM coupon.coupon c \gset
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) AS policies_md5 FROM coupon.policy p \gset
SELECT count(*) AS reservations_before FROM coupon.reservation \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('coupon NULL',       $$SELECT coupon.reserve(NULL, 'rita', %s, 'o', 1)$$, ARRAY[:'m1']),
	('coupon -1',         $$SELECT coupon.reserve(-1, 'rita', %s, 'o', 1)$$, ARRAY[:'m1']),
	('coupon 2^63-1',     $$SELECT coupon.reserve(9223372036854775807, 'rita', %s, 'o', 1)$$, ARRAY[:'m1']),
	('user NULL',         $$SELECT coupon.reserve(%s, NULL, %s, 'o', 1)$$, ARRAY[:'c3', :'m1']),
	('user empty',        $$SELECT coupon.reserve(%s, '', %s, 'o', 1)$$, ARRAY[:'c3', :'m1']),
	('user 201',          $$SELECT coupon.reserve(%s, %L, %s, 'o', 1)$$, ARRAY[:'c3', repeat('r', 201), :'m1']),
	('user 10000',        $$SELECT coupon.reserve(%s, %L, %s, 'o', 1)$$, ARRAY[:'c3', repeat('r', 10000), :'m1']),
	('merchant NULL',     $$SELECT coupon.reserve(%s, 'rita', NULL, 'o', 1)$$, ARRAY[:'c3']),
	('merchant -1',       $$SELECT coupon.reserve(%s, 'rita', -1, 'o', 1)$$, ARRAY[:'c3']),
	('order NULL',        $$SELECT coupon.reserve(%s, 'rita', %s, NULL, 1)$$, ARRAY[:'c3', :'m1']),
	('order empty',       $$SELECT coupon.reserve(%s, 'rita', %s, '', 1)$$, ARRAY[:'c3', :'m1']),
	('order 201',         $$SELECT coupon.reserve(%s, 'rita', %s, %L, 1)$$, ARRAY[:'c3', :'m1', repeat('o', 201)]),
	('order 10000',       $$SELECT coupon.reserve(%s, 'rita', %s, %L, 1)$$, ARRAY[:'c3', :'m1', repeat('o', 10000)]),
	('amount NULL',       $$SELECT coupon.reserve(%s, 'rita', %s, 'o', NULL)$$, ARRAY[:'c3', :'m1']),
	('amount -1',         $$SELECT coupon.reserve(%s, 'rita', %s, 'o', -1)$$, ARRAY[:'c3', :'m1']),
	('amount 10^15+1',    $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1000000000000001)$$, ARRAY[:'c3', :'m1']),
	('amount 2^63-1',     $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 9223372036854775807)$$, ARRAY[:'c3', :'m1']),
	('amount 2^63',       $$SELECT coupon.reserve(%s, 'rita', %s, 'o', '9223372036854775808')$$, ARRAY[:'c3', :'m1']),
	('ttl 0',             $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '0')$$, ARRAY[:'c3', :'m1']),
	('ttl -1 second',     $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '-1 second')$$, ARRAY[:'c3', :'m1']),
	('ttl 0.5 second',    $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '0.5 second')$$, ARRAY[:'c3', :'m1']),
	('ttl 7 days 1 s',    $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '7 days 1 second')$$, ARRAY[:'c3', :'m1']),
	('ttl 169 hours',     $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '169 hours')$$, ARRAY[:'c3', :'m1']),
	('ttl 8 days',        $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '8 days')$$, ARRAY[:'c3', :'m1']),
	('ttl 1 month',       $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '1 month')$$, ARRAY[:'c3', :'m1']),
	('ttl -7 days',       $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '-7 days')$$, ARRAY[:'c3', :'m1']),
	('ttl 1 day -2 days', $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '1 day -48 hours')$$, ARRAY[:'c3', :'m1']),
	('ttl 10^6 years',    $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 1, '1000000 years')$$, ARRAY[:'c3', :'m1']),
	('not found',         $$SELECT coupon.reserve(999999999, 'rita', %s, 'o', 1)$$, ARRAY[:'m1']),
	('not owner',         $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_sam', :'m1']),
	('policy paused',     $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_pause', :'m1']),
	('held elsewhere',    $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c2', :'m1']),
	('used',              $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c1', :'m1']),
	('cancelled',         $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_cancel', :'m1']),
	('expired',           $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_late', :'m1']),
	('not yet valid',     $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_future', :'m1']),
	('merchant not allowed', $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c3', :'m2']),
	('below min order',   $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 9999)$$, ARRAY[:'c_min', :'m1']),
	('budget exhausted',  $$SELECT coupon.reserve(%s, 'rita', %s, 'o', 10000)$$, ARRAY[:'c_b3', :'m1'])
) AS t(label, stmt, args);
SELECT count(*) - :reservations_before AS reservations_made FROM coupon.reservation;
SELECT md5(string_agg(c::text, ',' ORDER BY c.id)) = :'coupons_md5' AS coupons_unchanged FROM coupon.coupon c;
SELECT md5(string_agg(p::text, ',' ORDER BY p.id)) = :'policies_md5' AS policies_unchanged FROM coupon.policy p;

-- confirm and release: missing reservations
SELECT coupon.confirm(999999999);
SELECT coupon.release(999999999);
SELECT label, try(stmt) AS result FROM (VALUES
	('confirm NULL',      $$SELECT coupon.confirm(NULL)$$),
	('confirm -1',        $$SELECT coupon.confirm(-1)$$),
	('confirm 0',         $$SELECT coupon.confirm(0)$$),
	('confirm 2^63-1',    $$SELECT coupon.confirm(9223372036854775807)$$),
	('confirm 2^63',      $$SELECT coupon.confirm('9223372036854775808')$$),
	('release NULL',      $$SELECT coupon.release(NULL)$$),
	('release -1',        $$SELECT coupon.release(-1)$$),
	('release 2^63-1',    $$SELECT coupon.release(9223372036854775807)$$)
) AS t(label, stmt);

-- tenancy: a caller acting for m2 cannot hold, confirm or release at m1
SELECT id AS r_t FROM coupon.reserve(:c3, 'rita', :m1, 'tenant', 10000) \gset
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS as_m2;
SELECT coupon.reserve(:c_ttl, 'rita', :m1, 'tenant-2', 10000);
SELECT coupon.confirm(:r_t);
SELECT coupon.release(:r_t);
RESET request.jwt.claims;
SELECT status FROM coupon.reservation WHERE id = :r_t;

-- the user sees held and spent coupons
SELECT status, count(*) FROM coupon.user_coupons('rita') GROUP BY status ORDER BY status;
SELECT policy_id = :p_fixed AS fixed, reserved, used, available, cancelled FROM coupon.policy_stats WHERE policy_id = :p_fixed;

-- several coupons on one order: at most one non-stackable, and the discounts
-- together never above the order amount
SELECT id AS p_stack FROM coupon.create_policy(:m1, 'stackable 4000', 'fixed', 4000, stackable => true, per_user_limit => NULL) \gset
SELECT id AS p_solo FROM coupon.create_policy(:m1, 'solo 4000', 'fixed', 4000, per_user_limit => NULL) \gset
SELECT id AS s1 FROM coupon.issue(:p_stack, 'sam') \gset
SELECT id AS s2 FROM coupon.issue(:p_stack, 'sam') \gset
SELECT id AS s3 FROM coupon.issue(:p_solo, 'sam') \gset
SELECT id AS s4 FROM coupon.issue(:p_solo, 'sam') \gset
SELECT discount FROM coupon.reserve(:s3, 'sam', :m1, 'stack-1', 10000);
SELECT try($$SELECT coupon.reserve(%s, 'sam', %s, 'stack-1', 10000)$$, :'s4', :'m1') AS second_solo;
SELECT discount FROM coupon.reserve(:s1, 'sam', :m1, 'stack-1', 10000);
-- one order has one amount: a coupon for it with another amount is refused
-- (else each hold would be cut against a different order)
SELECT try($$SELECT coupon.reserve(%s, 'sam', %s, 'stack-1', 20000)$$, :'s2', :'m1') AS other_amount;
-- only 2000 of the order is left for the third coupon
SELECT discount FROM coupon.reserve(:s2, 'sam', :m1, 'stack-1', 10000);
SELECT sum(discount) AS order_discount, count(*) AS holds
  FROM coupon.reservation WHERE merchant_id = :m1 AND order_id = 'stack-1' AND status = 'held';
SELECT status FROM coupon.coupon WHERE id = :s4;

-- a checkout in one transaction, and in one statement: confirm finds the
-- hold that reserve made just before it (its reads take a new snapshot)
SELECT id AS s_one FROM coupon.issue(:p_stack, 'olga') \gset
SELECT id AS s_two FROM coupon.issue(:p_stack, 'olga') \gset
BEGIN;
SELECT id AS r_one FROM coupon.reserve(:s_one, 'olga', :m1, 'one-tx', 10000) \gset
SELECT status, discount FROM coupon.confirm(:r_one);
COMMIT;
SELECT (coupon.confirm((coupon.reserve(:s_two, 'olga', :m1, 'one-stmt', 10000)).id)).status AS nested;
SELECT id, status FROM coupon.coupon WHERE id IN (:s_one, :s_two) ORDER BY id;

-- a caller's search path does not reach the statements inside: with an
-- evil.now() ahead of pg_catalog, a hold would expire in 2000 if it did
CREATE SCHEMA evil;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$;
SET search_path = evil, pg_catalog;
SELECT id AS s_evil FROM coupon.issue(:p_stack, 'eve') \gset
SELECT expires_at > '2001-01-01' AS expiry_from_the_real_now
  FROM coupon.reserve(:s_evil, 'eve', :m1, 'evil-order', 10000);
RESET search_path;
DROP SCHEMA evil CASCADE;

-- coupons are never deleted: reservations point at them without a foreign key
SELECT try($$DELETE FROM coupon.coupon WHERE id = %s$$, :'s_evil') AS delete_coupon;
SELECT try('TRUNCATE coupon.coupon CASCADE') AS truncate_coupon;
SELECT count(*) AS still_there FROM coupon.coupon WHERE id = :s_evil;

-- the writes of a checkout go through the executor's row-write entry
-- points (src/rowwrite.c): row triggers see them
CREATE TABLE public.hold_log (op text, reservation_id bigint, status text);
CREATE FUNCTION public.log_hold() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.hold_log VALUES (TG_OP, NEW.id, NEW.status);
	RETURN NEW;
END $$;
CREATE TRIGGER log_hold AFTER INSERT OR UPDATE ON coupon.reservation
	FOR EACH ROW EXECUTE FUNCTION public.log_hold();
SELECT id AS s_trig FROM coupon.issue(:p_stack, 'tina') \gset
SELECT id AS r_trig FROM coupon.reserve(:s_trig, 'tina', :m1, 'trigger-order', 10000) \gset
SELECT status FROM coupon.confirm(:r_trig);
SELECT op, reservation_id = :r_trig AS this_hold, status FROM public.hold_log ORDER BY op;
DROP TRIGGER log_hold ON coupon.reservation;
DROP FUNCTION public.log_hold();
DROP TABLE public.hold_log;

-- a column with a default that this build does not set is an error, not a
-- silent NULL (a newer upgrade script under an older module)
SELECT id AS s_guard FROM coupon.issue(:p_stack, 'gus') \gset
BEGIN;
ALTER TABLE coupon.reservation ADD COLUMN note text DEFAULT 'x';
SELECT coupon.reserve(:s_guard, 'gus', :m1, 'guard-order', 10000);
ROLLBACK;
SELECT status FROM coupon.coupon WHERE id = :s_guard;

-- the domains of the columns written in C are checked there: a constraint
-- added to external_id refuses the hold, and nothing is left behind
SELECT id AS s_dom FROM coupon.issue(:p_stack, 'dora') \gset
BEGIN;
ALTER DOMAIN coupon.external_id ADD CONSTRAINT not_this_order CHECK (VALUE <> 'forbidden-order') NOT VALID;
SELECT coupon.reserve(:s_dom, 'dora', :m1, 'forbidden-order', 10000);
ROLLBACK;
SELECT status, (SELECT count(*) FROM coupon.reservation WHERE coupon_id = :s_dom) AS holds
  FROM coupon.coupon WHERE id = :s_dom;

-- the tables' CHECK constraints are compiled once per session and follow
-- DDL: one added after this session's first holds refuses the next under
-- its own name, a rollback takes it away again, and one calling a PL
-- function (compiled at every write instead) refuses as well
CREATE FUNCTION public.refused_by(stmt text) RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	st text;
	cn text;
BEGIN
	EXECUTE stmt;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, cn = CONSTRAINT_NAME;
	RETURN st || ' ' || coalesce(cn, '-');
END
$fn$;
CREATE FUNCTION public.small_amount(bigint) RETURNS boolean
	LANGUAGE plpgsql IMMUTABLE AS $$BEGIN RETURN $1 < 5000; END$$;
SELECT id AS s_chk FROM coupon.issue(:p_stack, 'cher') \gset
SELECT format('SELECT coupon.reserve(%s, %L, %s, %L, 10000)', :s_chk, 'cher', :m1, 'check-order')
	AS chk_stmt \gset
BEGIN;
ALTER TABLE coupon.reservation ADD CONSTRAINT small_orders CHECK (order_amount < 5000) NOT VALID;
SELECT public.refused_by(:'chk_stmt') AS sql_check;
ROLLBACK;
BEGIN;
ALTER TABLE coupon.reservation ADD CONSTRAINT small_orders_pl CHECK (public.small_amount(order_amount)) NOT VALID;
SELECT public.refused_by(:'chk_stmt') AS pl_check;
ROLLBACK;
SELECT public.refused_by(:'chk_stmt') AS after_rollback;
SELECT status FROM coupon.coupon WHERE id = :s_chk;
DROP FUNCTION public.refused_by(text);
DROP FUNCTION public.small_amount(bigint);

-- a BEFORE ROW trigger that writes through the extension after a policy
-- change (whose invalidation drops the backend's caches of compiled
-- constraints and index descriptions) leaves the write that fired it
-- whole: the hold is checked, indexed and found, and so is the coupon
-- the trigger issued
SELECT format($f$CREATE FUNCTION public.write_in_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM coupon.set_policy_status(%s, 'paused');
	PERFORM coupon.set_policy_status(%s, 'active');
	PERFORM coupon.issue(%s, 'nested-' || NEW.order_id);
	RETURN NEW;
END$$$f$, :p_future, :p_future, :p_stack) \gexec
CREATE TRIGGER write_in_trigger BEFORE INSERT ON coupon.reservation
	FOR EACH ROW EXECUTE FUNCTION public.write_in_trigger();
SELECT id AS s_nest FROM coupon.issue(:p_stack, 'nell') \gset
SELECT status FROM coupon.reserve(:s_nest, 'nell', :m1, 'nest-order', 10000);
DROP TRIGGER write_in_trigger ON coupon.reservation;
DROP FUNCTION public.write_in_trigger();
SELECT c.status, r.status AS hold, r.discount
  FROM coupon.coupon c JOIN coupon.reservation r ON r.coupon_id = c.id
 WHERE c.id = :s_nest AND r.merchant_id = :m1 AND r.order_id = 'nest-order';
SELECT count(*) AS nested_issue FROM coupon.coupon WHERE user_id = 'nested-nest-order';

-- a BEFORE ROW trigger that skips a write the extension makes is refused,
-- not ignored: the hold would be missing while the coupon is reserved
CREATE FUNCTION public.skip_row() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;
CREATE TRIGGER skip_hold BEFORE INSERT ON coupon.reservation
	FOR EACH ROW EXECUTE FUNCTION public.skip_row();
SELECT id AS s_skip FROM coupon.issue(:p_stack, 'sky') \gset
SELECT try($$SELECT coupon.reserve(%s, 'sky', %s, 'skip-order', 10000)$$, :'s_skip', :'m1') AS skipped_hold;
DROP TRIGGER skip_hold ON coupon.reservation;
DROP FUNCTION public.skip_row();
SELECT status, (SELECT count(*) FROM coupon.reservation WHERE coupon_id = :s_skip) AS holds
  FROM coupon.coupon WHERE id = :s_skip;
