-- bench/sql/settlement_data.sql: the data bench/settlement.sh settles.
--
-- Loaded by bench/settlement.sh (psql -v payments=N -v merchants=M) into a
-- fresh database after CREATE EXTENSION coupon.  Nothing here is part of the
-- extension.  Merchants and policies are created through the API; the rows
-- a settlement reads (payments, their coupons and reservations, and the
-- refund ledger) are written directly with INSERT ... SELECT in the shape
-- the saga leaves them, because a million pay() calls through the saga
-- would take far longer than the run being measured.
--
--   * merchants: :merchants of them, settlement_delay_days 0, each with its
--     own commission_bp (0 to 20 %) and pg_fee_bp (1.5 to 3.5 %);
--   * policies: six, merchant_share_bp 10000, 5000, 0, 3333, 7500 and 5000
--     (five fixed amounts, one 10 % capped at 5,000), usable at every
--     merchant;
--   * payments 1..:payments, all 'completed' (or refunded, below), amount
--     1,000..200,000, completed_at spread over the 30 days before the load
--     (at least 2 hours ago); every third one carries one coupon: a coupon
--     row with the payment's id as its id, a 'confirmed' reservation owned
--     by the payment, payment.discount = the reservation's discount and
--     approved_amount = amount - discount (0 when the coupon pays it all);
--   * refunds, 5 % of the rows a settlement makes: payments with id % 20 = 1
--     and (id / 20) % 10 < 9 (4.5 % of the payments) get, by (id / 20) % 10:
--     0-3 one partial refund (10 to 50 % of what was charged), 4-7 one full
--     refund, 8 a partial refund and then the rest.  A payment that charged
--     less than 100 is refunded in full only.  The payment's state,
--     refunded_amount, refunds and refunded_at are written as the saga
--     leaves them, and a fully refunded payment's coupon is back to 'issued'
--     while its reservation stays 'confirmed' (reserve_restore_holds()).
--
-- The refund ledger is written directly (INSERT INTO payment_refund, partial
-- refunds first so their ids come before the full refund of the same
-- payment) and the payments are inserted with their final refund columns:
-- the ledger trigger fires on UPDATE only, so nothing fires and nothing needs
-- to be disabled.  That is faster than inserting completed payments and
-- updating 45,000 of them once or twice so the trigger writes the ledger.
-- CHECK constraints hold for every row.

\set ON_ERROR_STOP 1
SET client_min_messages = warning;
CREATE SCHEMA settle_bench;

CREATE TABLE settle_bench.merchant AS
SELECT g AS n, m.id
  FROM generate_series(1, :merchants) g,
	   LATERAL coupon.create_merchant('settle shop ' || g, 'KRW',
			commission_bp => (ARRAY[1000, 0, 250, 300, 333, 500, 550, 700, 800, 875,
									1050, 1200, 1250, 1333, 1500, 1750, 2000, 999, 1234, 650])[1 + (g - 1) % 20],
			pg_fee_bp => 150 + (g * 37) % 200,
			settlement_delay_days => 0) m;

CREATE TABLE settle_bench.policy AS
SELECT v.n, p.id, v.discount_type, v.discount_value, v.max_discount, v.share
  FROM (VALUES (1, 'fixed', 1000::bigint, NULL::bigint, 10000),
			   (2, 'fixed', 2000, NULL, 5000),
			   (3, 'fixed', 3000, NULL, 0),
			   (4, 'fixed', 1500, NULL, 3333),
			   (5, 'fixed', 5000, NULL, 7500),
			   (6, 'percent', 1000, 5000, 5000)) v (n, discount_type, discount_value, max_discount, share),
	   LATERAL coupon.create_policy((SELECT min(id) FROM settle_bench.merchant),
			'settle policy ' || v.n || ' share ' || v.share, v.discount_type, v.discount_value,
			max_discount => v.max_discount, merchant_share_bp => v.share, per_user_limit => NULL,
			allowed_merchants => (SELECT array_agg(id ORDER BY id) FROM settle_bench.merchant)) p;

-- one row per payment with everything derived from its id
CREATE UNLOGGED TABLE settle_bench.src AS
WITH g AS (
	SELECT g AS id,
		   1 + (g * 7) % :merchants AS mn,
		   1000 + (g * 2654435761) % 199001 AS amount,
		   CASE WHEN g % 3 = 0 THEN 1 + (g / 3) % 6 END AS pn,
		   now() - make_interval(secs => 7200 + (g * 7877) % (30 * 86400)) AS completed_at,
		   CASE WHEN g % 20 = 1 AND (g / 20) % 10 < 9 THEN ((g / 20) % 10)::int END AS rk
	  FROM generate_series(1::bigint, :payments) g),
d AS (
	SELECT g.*, m.id AS merchant_id, p.id AS policy_id,
		   CASE WHEN p.id IS NULL THEN 0
				WHEN p.discount_type = 'percent' THEN least(g.amount * p.discount_value / 10000, p.max_discount)
				ELSE least(p.discount_value, g.amount) END AS discount
	  FROM g JOIN settle_bench.merchant m ON m.n = g.mn
	  LEFT JOIN settle_bench.policy p ON p.n = g.pn),
a AS (
	SELECT d.*, d.amount - d.discount AS approved,
		   -- the partial refund, if any: 10 to 50 % of what was charged
		   CASE WHEN d.rk IN (0, 1, 2, 3, 8) AND d.amount - d.discount >= 100
				THEN (d.amount - d.discount) * (10 + d.id % 41) / 100 END AS part
	  FROM d)
SELECT a.*,
	   a.rk IS NOT NULL AND (a.rk >= 4 OR a.part IS NULL) AS full_refund,
	   CASE WHEN a.rk IS NULL THEN 'completed'
			WHEN a.rk >= 4 OR a.part IS NULL THEN 'refunded'
			ELSE 'partially_refunded' END AS state
  FROM a;

INSERT INTO coupon.payment (id, merchant_id, user_id, order_id, amount, discount, coupon_ids,
							payment_key, state, attempts, next_attempt_at, approved_amount,
							refunded_amount, refunds, created_at, authorized_at, approved_at,
							completed_at, refunded_at, updated_at)
SELECT s.id, s.merchant_id, 'u' || s.id, 'order-' || s.id, s.amount, s.discount,
	   CASE WHEN s.policy_id IS NULL THEN '{}'::bigint[] ELSE ARRAY[s.id] END,
	   'pk-' || s.id, s.state, 0, s.completed_at, s.approved,
	   CASE WHEN s.full_refund THEN s.approved ELSE coalesce(s.part, 0) END,
	   (s.part IS NOT NULL)::int + s.full_refund::int,
	   s.completed_at - interval '3 seconds', s.completed_at - interval '2 seconds',
	   s.completed_at - interval '1 second', s.completed_at,
	   CASE WHEN s.full_refund THEN s.completed_at + interval '1 hour'
			WHEN s.part IS NOT NULL THEN s.completed_at + interval '30 minutes' END,
	   coalesce(CASE WHEN s.full_refund THEN s.completed_at + interval '1 hour'
					 WHEN s.part IS NOT NULL THEN s.completed_at + interval '30 minutes' END,
				s.completed_at)
  FROM settle_bench.src s
 ORDER BY s.id;

INSERT INTO coupon.coupon (id, policy_id, user_id, user_seq, status, issued_at, used_at, updated_at)
SELECT s.id, s.policy_id, 'u' || s.id, 1,
	   CASE WHEN s.full_refund THEN 'issued' ELSE 'used' END,
	   s.completed_at - interval '1 day',
	   CASE WHEN s.full_refund THEN NULL ELSE s.completed_at END,
	   s.completed_at
  FROM settle_bench.src s
 WHERE s.policy_id IS NOT NULL
 ORDER BY s.id;

INSERT INTO coupon.reservation (id, coupon_id, merchant_id, user_id, order_id, payment_id,
								order_amount, discount, status, expires_at, created_at, updated_at)
SELECT s.id, s.id, s.merchant_id, 'u' || s.id, 'order-' || s.id, s.id, s.amount, s.discount,
	   'confirmed', s.completed_at + interval '15 minutes', s.completed_at - interval '3 seconds',
	   s.completed_at
  FROM settle_bench.src s
 WHERE s.policy_id IS NOT NULL
 ORDER BY s.id;

-- the refund ledger: partial refunds first, then the full ones
INSERT INTO coupon.payment_refund (payment_id, amount, full_refund, refunded_at)
SELECT s.id, s.part, false, s.completed_at + interval '30 minutes'
  FROM settle_bench.src s
 WHERE s.part IS NOT NULL
 ORDER BY s.id;
INSERT INTO coupon.payment_refund (payment_id, amount, full_refund, refunded_at)
SELECT s.id, s.approved - coalesce(s.part, 0), true, s.completed_at + interval '1 hour'
  FROM settle_bench.src s
 WHERE s.full_refund
 ORDER BY s.id;

SELECT setval(pg_get_serial_sequence('coupon.payment', 'id'), (SELECT max(id) FROM coupon.payment));
SELECT setval(pg_get_serial_sequence('coupon.coupon', 'id'), (SELECT coalesce(max(id), 1) FROM coupon.coupon));
SELECT setval(pg_get_serial_sequence('coupon.reservation', 'id'), (SELECT coalesce(max(id), 1) FROM coupon.reservation));

/*
 * The floor: the same rows written by one plain INSERT ... SELECT into a
 * table of settlement_item's shape (LIKE ... INCLUDING ALL: the same
 * columns, identity, CHECK constraints and indexes, the exactly-once unique
 * index included; logged, like the real table).  Each row's figures come from the same formulas
 * (coupon.round_half_up_bp), the merchant-funded discount from the payment's
 * discount and its first coupon's policy; every refund is priced like a
 * partial refund.  What it leaves out is what makes settlement correct: the
 * exactly-once anti-joins, the per-payment look-ups of reservations and
 * earlier refunds, the batch totals and carry-forward.
 */
CREATE TABLE settle_bench.item_floor (LIKE coupon.settlement_item INCLUDING ALL);

-- bench/settlement.sh times the floor's INSERT ... SELECT itself
