-- settlement.sql: the refund ledger, coupon.run_settlement, settlement_report,
-- purge and the argument checks of the 0.3 functions (docs/settlement.md).
--
-- No gateway and no worker here: payments are driven to completion the way
-- the saga would, as superuser (pay() holds the coupons, then the payment is
-- marked completed and its holds confirmed), and refunds are recorded by
-- raising refunded_amount / moving to refunded, which the trigger copies into
-- coupon.payment_refund.  Every instant is fixed (the sales and refunds of
-- January 2030, runs with an explicit until), so nothing depends on now().
--
-- Merchants (commission / pg fee in bp, delay in days):
--   figures  10 % / 0    / 1: the three checked figures of docs/settlement.md
--   rounding 2.5 % / 3.3 % / 0: halves, stacked coupons
--   delay    10 % / 2 %  / 3: settlement_delay_days
--   refunds  10 % / 3 %  / 0: refunds before and after settlement
--   carry    10 % / 0    / 0: a negative balance over several batches
--   rates    10 % / 0    / 0: rates changed after a sale was settled
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
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
-- whatever earlier files left to settle is settled now; their instants are
-- now(), after every cutoff below (2020), so the runs below see only this
-- file's payments
SELECT count(*) >= 0 AS earlier_files_settled FROM coupon.run_settlement(now());
-- ids of this file start at 11000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 11000, false);
	PERFORM setval('coupon.policy_id_seq', 11000, false);
	PERFORM setval('coupon.coupon_id_seq', 110000, false);
	PERFORM setval('coupon.reservation_id_seq', 11000, false);
	PERFORM setval('coupon.payment_id_seq', 11000, false);
	PERFORM setval('coupon.payment_refund_id_seq', 11000, false);
	PERFORM setval('coupon.settlement_id_seq', 11000, false);
	PERFORM setval('coupon.settlement_item_id_seq', 11000, false);
END $$;

-- sold(merchant, order, amount, coupons, at): pay(), then what the saga does
-- on approval: the payment completed at `at`, its holds confirmed
CREATE FUNCTION sold(m bigint, o text, amt bigint, coupons bigint[], at timestamptz)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
	pid bigint;
BEGIN
	pid := (coupon.pay(m, 'sue', o, amt, coupons)).id;
	-- approved as the gateway would; the saga's own local step spends the
	-- holds (a payment's holds are the saga's alone) and completes it
	UPDATE coupon.payment SET state = 'approved', approved_amount = amount - discount
	 WHERE id = pid;
	PERFORM coupon.process_payments();
	UPDATE coupon.payment SET completed_at = at WHERE id = pid AND state = 'completed';
	RETURN pid;
END
$fn$;
-- refunded(payment, amount, at): a refund that went through at `at` (the
-- rest of the payment: refunded; less: partially_refunded); the trigger
-- writes the ledger row, whose instant is then fixed to `at`
CREATE FUNCTION refunded(pid bigint, amt bigint, at timestamptz)
RETURNS TABLE (refund_id bigint, amount bigint, full_refund boolean)
LANGUAGE plpgsql AS $fn$
BEGIN
	UPDATE coupon.payment p
	   SET refunded_amount = p.refunded_amount + amt, refunded_at = at,
		   state = CASE WHEN p.refunded_amount + amt = p.approved_amount THEN 'refunded'
						ELSE 'partially_refunded' END
	 WHERE p.id = pid;
	RETURN QUERY
	UPDATE coupon.payment_refund f SET refunded_at = at
	 WHERE f.id = (SELECT max(x.id) FROM coupon.payment_refund x WHERE x.payment_id = pid)
	RETURNING f.id, f.amount, f.full_refund;
END
$fn$;
-- this file's items and batches, figures only
CREATE VIEW items AS
	SELECT i.settlement_id AS batch, i.merchant_id AS merchant, i.payment_id AS payment,
		   p.order_id, i.refund_id AS refund, i.kind, i.policy_id AS policy, i.occurred_at,
		   i.gross, i.discount_merchant AS d_m, i.discount_platform AS d_p, i.charged, i.base,
		   i.commission, i.pg_fee, i.payout
	  FROM coupon.settlement_item i JOIN coupon.payment p ON p.id = i.payment_id
	 WHERE i.merchant_id >= 11000;
CREATE VIEW batches AS
	SELECT s.id AS batch, s.merchant_id AS merchant, s.period_end, s.sales, s.refunds, s.gross,
		   s.discount_merchant AS d_m, s.discount_platform AS d_p, s.charged, s.commission, s.pg_fee,
		   s.items_payout, s.carry_in, s.payout, s.carry_out, s.status
	  FROM coupon.settlement s
	 WHERE s.merchant_id >= 11000;

SELECT id AS m_fig FROM coupon.create_merchant('figures', 'KRW', 1000, 0, 1) \gset
SELECT id AS m_rnd FROM coupon.create_merchant('rounding', 'KRW', 250, 330, 0) \gset
SELECT id AS m_dly FROM coupon.create_merchant('delay', 'KRW', 1000, 200, 3) \gset
SELECT id AS m_ref FROM coupon.create_merchant('refunds', 'KRW', 1000, 300, 0) \gset
SELECT id AS m_car FROM coupon.create_merchant('carry', 'KRW', 1000, 0, 0) \gset
SELECT id AS m_rat FROM coupon.create_merchant('rates', 'KRW', 1000, 0, 0) \gset
SELECT id AS p_plat FROM coupon.create_policy(:m_fig, 'platform funds', 'fixed', 2000, per_user_limit => NULL, merchant_share_bp => 0) \gset
SELECT id AS p_half FROM coupon.create_policy(:m_fig, 'half each', 'fixed', 2000, per_user_limit => NULL, merchant_share_bp => 5000) \gset
SELECT id AS p_merc FROM coupon.create_policy(:m_fig, 'merchant funds', 'fixed', 2000, per_user_limit => NULL, merchant_share_bp => 10000) \gset
SELECT id AS p_odd FROM coupon.create_policy(:m_rnd, 'fixed 1001 half', 'fixed', 1001, per_user_limit => NULL, merchant_share_bp => 5000, stackable => true) \gset
SELECT id AS p_pct FROM coupon.create_policy(:m_rnd, '10 percent platform', 'percent', 1000, per_user_limit => NULL, merchant_share_bp => 0, stackable => true) \gset
SELECT id AS p_ref FROM coupon.create_policy(:m_ref, 'refund 2000 half', 'fixed', 2000, per_user_limit => NULL, merchant_share_bp => 5000) \gset
SELECT id AS p_rat FROM coupon.create_policy(:m_rat, 'rates 2000 half', 'fixed', 2000, per_user_limit => NULL, merchant_share_bp => 5000) \gset

-- the sales up to 2020-01-10 (the first run's until)
SELECT sold(:m_fig, 'fig-plat', 10000, ARRAY[(coupon.issue(:p_plat, 'sue')).id], '2020-01-05 10:00+00') AS fig_plat,
	   sold(:m_fig, 'fig-half', 10000, ARRAY[(coupon.issue(:p_half, 'sue')).id], '2020-01-05 10:01+00') AS fig_half,
	   sold(:m_fig, 'fig-merc', 10000, ARRAY[(coupon.issue(:p_merc, 'sue')).id], '2020-01-05 10:02+00') AS fig_merc,
	   sold(:m_fig, 'fig-none', 10000, NULL, '2020-01-05 10:03+00') AS fig_none \gset
SELECT sold(:m_rnd, 'rnd-half', 1500, NULL, '2020-01-09 12:00+00') AS rnd_half,
	   sold(:m_rnd, 'rnd-below', 1499, NULL, '2020-01-09 12:01+00') AS rnd_below,
	   sold(:m_rnd, 'rnd-stack', 10000, ARRAY[(coupon.issue(:p_pct, 'sue')).id, (coupon.issue(:p_odd, 'sue')).id],
			'2020-01-09 12:02+00') AS rnd_stack \gset
-- delay 3 days: the run of 2020-01-10 takes what completed before 2020-01-07
SELECT sold(:m_dly, 'dly-1', 5000, NULL, '2020-01-06 12:00+00') AS dly_1,
	   sold(:m_dly, 'dly-cutoff', 5000, NULL, '2020-01-07 00:00+00') AS dly_cutoff,
	   sold(:m_dly, 'dly-2', 5000, NULL, '2020-01-07 12:00+00') AS dly_2,
	   sold(:m_dly, 'dly-3', 5000, NULL, '2020-01-08 12:00+00') AS dly_3 \gset
SELECT sold(:m_ref, 'ref-a', 10000, ARRAY[(coupon.issue(:p_ref, 'sue')).id], '2020-01-08 10:00+00') AS ref_a,
	   sold(:m_ref, 'ref-b', 10000, NULL, '2020-01-08 11:00+00') AS ref_b,
	   sold(:m_ref, 'ref-c', 10000, ARRAY[(coupon.issue(:p_ref, 'sue')).id], '2020-01-08 12:00+00') AS ref_c,
	   sold(:m_ref, 'ref-free', 1500, ARRAY[(coupon.issue(:p_ref, 'sue')).id], '2020-01-08 13:00+00') AS ref_free,
	   sold(:m_ref, 'ref-e', 4000, NULL, '2020-01-09 10:00+00') AS ref_e \gset
SELECT sold(:m_car, 'car-1', 10000, NULL, '2020-01-09 10:00+00') AS car_1,
	   sold(:m_car, 'car-2', 10000, NULL, '2020-01-09 11:00+00') AS car_2 \gset
SELECT sold(:m_rat, 'rat-g', 10000, ARRAY[(coupon.issue(:p_rat, 'sue')).id], '2020-01-09 10:00+00') AS rat_g \gset
SELECT id, order_id, state, amount, discount, approved_amount, completed_at, cardinality(coupon_ids) AS coupons
  FROM coupon.payment WHERE merchant_id >= 11000 ORDER BY id;
-- the coupon paying ref-free wholly: nothing charged
SELECT state, discount, approved_amount FROM coupon.payment WHERE id = :ref_free;
SELECT payment_id, coupon_id, status, discount FROM coupon.reservation WHERE merchant_id >= 11000 ORDER BY id;

-- refunds before the first run: a partial one (kind refund, same batch as
-- its sale), and a partial then the rest (the payment's items sum to zero)
SELECT * FROM refunded(:rnd_below, 500, '2020-01-09 13:00+00');
SELECT * FROM refunded(:ref_a, 3000, '2020-01-09 09:00+00');
SELECT * FROM refunded(:ref_e, 1000, '2020-01-09 11:00+00');
SELECT * FROM refunded(:ref_e, 3000, '2020-01-09 12:00+00');
SELECT id, state, approved_amount, refunded_amount FROM coupon.payment WHERE id IN (:ref_a, :ref_e) ORDER BY id;
-- the ledger: one row per refund that went through, none for other updates
UPDATE coupon.payment SET updated_at = updated_at WHERE id = :ref_e;
UPDATE coupon.payment SET state = 'refunded' WHERE id = :ref_e;
SELECT id, payment_id, amount, full_refund, refunded_at FROM coupon.payment_refund WHERE id >= 11000 ORDER BY id;

-- run 1: one batch per merchant
SELECT id AS batch, merchant_id AS merchant, period_end, sales, refunds, gross, discount_merchant AS d_m,
	   discount_platform AS d_p, charged, commission, pg_fee, items_payout, carry_in, payout, carry_out, status
  FROM coupon.run_settlement('2020-01-10 00:00+00') ORDER BY merchant_id;
-- the checked figures: 10,000 sale, 2,000 coupon, 10 % commission pays out
-- 9,000 (platform funds it), 8,100 (50/50), 7,200 (merchant funds it);
-- without a coupon 9,000 as well
SELECT order_id, kind, policy, gross, d_m, d_p, charged, base, commission, pg_fee, payout,
	   payout + commission + pg_fee - d_p AS "payout+commission+pg_fee-d_p"
  FROM items WHERE merchant = :m_fig ORDER BY payment;
-- halves round up: 1500 * 2.5 % = 37.5 -> 38, 1500 * 3.3 % = 49.5 -> 50;
-- 1499: 37.475 -> 37, 49.467 -> 49; a refund of 500 takes back 12.5 -> 13
-- and 16.5 -> 17; stacked coupons: fixed 1001 (half: 500.5 -> 501 by the
-- merchant) then 10 % of the rest (platform)
SELECT order_id, kind, gross, d_m, d_p, charged, base, commission, pg_fee, payout,
	   payout + commission + pg_fee - d_p AS "payout+commission+pg_fee-d_p"
  FROM items WHERE merchant = :m_rnd ORDER BY payment, refund NULLS FIRST;
SELECT r.payment_id, r.coupon_id, p.name, r.discount, p.merchant_share_bp
  FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id JOIN coupon.policy p ON p.id = c.policy_id
 WHERE r.payment_id = :rnd_stack ORDER BY r.coupon_id;
-- delay: only the sale before until - 3 days; the one at the cutoff waits
SELECT order_id, occurred_at, gross, commission, pg_fee, payout FROM items WHERE merchant = :m_dly ORDER BY payment;
-- refunds before settlement: kind refund in the sale's batch
SELECT order_id, refund, kind, occurred_at, gross, d_m, d_p, charged, base, commission, pg_fee, payout
  FROM items WHERE merchant = :m_ref ORDER BY payment, refund NULLS FIRST;

-- a re-run adds nothing
SELECT count(*) AS items_before FROM coupon.settlement_item \gset
SELECT count(*) AS rerun_batches FROM coupon.run_settlement('2020-01-10 00:00+00');
SELECT count(*) - :items_before AS rerun_items FROM coupon.settlement_item;

-- between the first and the second run (until 2020-01-11)
SELECT * FROM refunded(:ref_b, 10000, '2020-01-10 15:00+00');
SELECT * FROM refunded(:ref_c, 1000, '2020-01-10 16:00+00');
-- a payment the coupon paid wholly: refunded at once, 0 given back
UPDATE coupon.payment SET state = 'refunded', refunded_at = '2020-01-10 17:00+00' WHERE id = :ref_free;
UPDATE coupon.payment_refund SET refunded_at = '2020-01-10 17:00+00' WHERE payment_id = :ref_free
RETURNING id, amount, full_refund;
SELECT * FROM refunded(:car_1, 10000, '2020-01-10 09:00+00');
SELECT * FROM refunded(:car_2, 10000, '2020-01-10 09:30+00');
SELECT sold(:m_car, 'car-3', 1000, NULL, '2020-01-10 10:00+00') AS car_3 \gset
-- the merchant's commission and the policy's share change after rat-g was
-- settled; its refund takes back exactly what its sale item paid, and a new
-- sale is settled at the new rates
UPDATE coupon.merchant SET commission_bp = 2000 WHERE id = :m_rat;
UPDATE coupon.policy SET merchant_share_bp = 10000 WHERE id = :p_rat;
SELECT * FROM refunded(:rat_g, 8000, '2020-01-10 11:00+00');
SELECT sold(:m_rat, 'rat-h', 10000, ARRAY[(coupon.issue(:p_rat, 'sue')).id], '2020-01-10 12:00+00') AS rat_h \gset

-- run 2
SELECT id AS batch, merchant_id AS merchant, period_end, sales, refunds, gross, discount_merchant AS d_m,
	   discount_platform AS d_p, charged, commission, pg_fee, items_payout, carry_in, payout, carry_out, status
  FROM coupon.run_settlement('2020-01-11 00:00+00') ORDER BY merchant_id;
-- refunds of payments settled in run 1: adjustments; the full one of ref-c
-- has not happened yet, the partial one takes back its amount only
SELECT batch, order_id, refund, kind, occurred_at, gross, d_m, d_p, charged, base, commission, pg_fee, payout
  FROM items WHERE merchant = :m_ref AND batch > (SELECT min(batch) FROM batches WHERE merchant = :m_ref)
 ORDER BY payment, refund;
SELECT batch, order_id, kind, gross, d_m, d_p, charged, base, commission, pg_fee, payout
  FROM items WHERE merchant = :m_rat ORDER BY payment, refund NULLS FIRST;
SELECT batch, order_id, occurred_at, payout FROM items WHERE merchant = :m_dly ORDER BY payment;

-- between the second and the third run (until 2020-01-12)
SELECT * FROM refunded(:ref_c, 7000, '2020-01-11 10:00+00');
SELECT sold(:m_car, 'car-4', 10000, NULL, '2020-01-11 10:00+00') AS car_4 \gset

-- run 3
SELECT id AS batch, merchant_id AS merchant, period_end, sales, refunds, gross, discount_merchant AS d_m,
	   discount_platform AS d_p, charged, commission, pg_fee, items_payout, carry_in, payout, carry_out, status
  FROM coupon.run_settlement('2020-01-12 00:00+00') ORDER BY merchant_id;
-- partial then the rest, over three batches: the items of ref-c sum to zero
SELECT batch, refund, kind, gross, d_m, d_p, charged, base, commission, pg_fee, payout
  FROM items WHERE payment = :ref_c ORDER BY refund NULLS FIRST;

-- run 4: nothing happened since run 3: no batch, the carry stays
SELECT count(*) AS empty_period_batches FROM coupon.run_settlement('2020-01-13 00:00+00');
SELECT count(*) AS batches_of_carry, min(carry_out) FILTER (WHERE batch = (SELECT max(batch) FROM batches WHERE merchant = :m_car)) AS last_carry_out
  FROM batches WHERE merchant = :m_car;

-- run 5: sales absorb the carried balance
SELECT sold(:m_car, 'car-5', 10000, NULL, '2020-01-13 10:00+00') AS car_5,
	   sold(:m_car, 'car-6', 10000, NULL, '2020-01-13 11:00+00') AS car_6 \gset
SELECT id AS batch, merchant_id AS merchant, period_end, sales, refunds, items_payout, carry_in, payout,
	   carry_out, status
  FROM coupon.run_settlement('2020-01-14 00:00+00') ORDER BY merchant_id;
-- the carry chain of the carry merchant: each carry_in is the previous carry_out
SELECT batch, period_end, sales, refunds, items_payout, carry_in, payout, carry_out, status,
	   carry_in = coalesce(lag(carry_out) OVER (ORDER BY batch), 0) AS chained
  FROM batches WHERE merchant = :m_car ORDER BY batch;

-- the books
-- every batch is the sum of its items
SELECT b.batch, b.merchant,
	   (b.sales, b.refunds, b.gross, b.d_m, b.d_p, b.charged, b.commission, b.pg_fee, b.items_payout)
	   = (SELECT count(*) FILTER (WHERE i.kind = 'sale'), count(*) FILTER (WHERE i.kind <> 'sale'),
				 sum(i.gross), sum(i.d_m), sum(i.d_p), sum(i.charged), sum(i.commission), sum(i.pg_fee),
				 sum(i.payout)
			FROM items i WHERE i.batch = b.batch) AS sums_of_items,
	   b.items_payout + b.commission + b.pg_fee - b.d_p = b.charged AS balanced
  FROM batches b ORDER BY b.batch;
-- per payment: sales once, every ledger row once, charged net of refunds
SELECT p.order_id, p.state, p.approved_amount - p.refunded_amount AS kept,
	   (SELECT count(*) FROM items i WHERE i.payment = p.id AND i.kind = 'sale') AS sales,
	   (SELECT count(*) FROM coupon.payment_refund f WHERE f.payment_id = p.id) AS ledger_rows,
	   (SELECT count(*) FROM items i WHERE i.payment = p.id AND i.kind <> 'sale') AS refund_items,
	   (SELECT sum(i.charged) FROM items i WHERE i.payment = p.id) AS charged,
	   (SELECT sum(i.gross) FROM items i WHERE i.payment = p.id) AS gross,
	   (SELECT sum(i.commission) FROM items i WHERE i.payment = p.id) AS commission,
	   (SELECT sum(i.pg_fee) FROM items i WHERE i.payment = p.id) AS pg_fee,
	   (SELECT sum(i.payout) FROM items i WHERE i.payment = p.id) AS payout
  FROM coupon.payment p WHERE p.merchant_id >= 11000 ORDER BY p.id;
-- fully refunded payments net to zero in every column
SELECT i.order_id, sum(i.gross) AS gross, sum(i.d_m) AS d_m, sum(i.d_p) AS d_p, sum(i.charged) AS charged,
	   sum(i.base) AS base, sum(i.commission) AS commission, sum(i.pg_fee) AS pg_fee, sum(i.payout) AS payout
  FROM items i JOIN coupon.payment p ON p.id = i.payment
 WHERE p.state = 'refunded' GROUP BY i.payment, i.order_id ORDER BY i.payment;
-- everything settled: one more run adds nothing
SELECT count(*) AS final_rerun FROM coupon.run_settlement('2020-02-01 00:00+00');

-- settlement_report: per day (session time zone) and per policy
SELECT * FROM coupon.settlement_report(:m_fig, '2020-01-01', '2020-01-31');
SELECT * FROM coupon.settlement_report(:m_ref, '2020-01-08', '2020-01-11');
-- from_date and to_date are inclusive days
SELECT day, sales, refunds, payout FROM coupon.settlement_report(:m_ref, '2020-01-10', '2020-01-10');
-- another time zone moves the day boundaries
SET TimeZone = 'Asia/Seoul';
SELECT day, policy_id, sales, refunds, payout FROM coupon.settlement_report(:m_ref, '2020-01-08', '2020-01-11');
SET TimeZone = 'UTC';
-- as CSV
COPY (SELECT * FROM coupon.settlement_report(:m_ref, '2020-01-01', '2020-01-31')) TO STDOUT WITH (FORMAT csv, HEADER);
-- bad input
SELECT try('SELECT coupon.settlement_report(NULL, ''2020-01-01'', ''2020-01-31'')') AS null_merchant;
SELECT try('SELECT coupon.settlement_report(%s, NULL, ''2020-01-31'')', :'m_ref') AS null_from;
SELECT try('SELECT coupon.settlement_report(%s, ''2020-01-01'', NULL)', :'m_ref') AS null_to;
SELECT count(*) AS reversed_range FROM coupon.settlement_report(:m_ref, '2020-01-31', '2020-01-01');
SELECT count(*) AS no_such_merchant FROM coupon.settlement_report(999999, '2020-01-01', '2020-01-31');
-- tenancy: a merchant reads its own report only, a customer none
SET ROLE coupon_merchant;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m_ref)::text, false) IS NOT NULL AS claims;
SELECT count(*) AS own_rows FROM coupon.settlement_report(:m_ref, '2020-01-01', '2020-01-31');
SELECT try('SELECT coupon.settlement_report(%s, ''2020-01-01'', ''2020-01-31'')', :'m_fig') AS other_merchant;
SELECT try('SELECT coupon.run_settlement(''2020-02-01'')') AS merchant_runs_settlement;
SELECT try('SELECT count(*) FROM coupon.settlement_item') AS merchant_reads_items;
RESET ROLE;
SELECT set_config('request.jwt.claims', '{"sub": "sue"}', false) IS NOT NULL AS claims;
SET ROLE coupon_customer;
SELECT try('SELECT coupon.settlement_report(%s, ''2020-01-01'', ''2020-01-31'')', :'m_ref') AS customer;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;

-- batches and items are the books: append-only, corrected only by later adjustments
SELECT count(*) AS batches_before, sum(payout) AS payout_before FROM coupon.settlement \gset
SELECT count(*) AS items_before, sum(payout) AS item_payout_before FROM coupon.settlement_item \gset
SELECT try('UPDATE coupon.settlement SET payout = 0') AS update_batch;
SELECT try('DELETE FROM coupon.settlement') AS delete_batch;
SELECT try('TRUNCATE coupon.settlement') AS truncate_batch;
SELECT try('UPDATE coupon.settlement_item SET payout = 0') AS update_item;
SELECT try('DELETE FROM coupon.settlement_item') AS delete_item;
SELECT try('TRUNCATE coupon.settlement_item') AS truncate_item;
SELECT (SELECT (count(*), sum(payout)) FROM coupon.settlement) = (:batches_before::bigint, :payout_before::numeric)
	   AND (SELECT (count(*), sum(payout)) FROM coupon.settlement_item) = (:items_before::bigint, :item_payout_before::numeric)
	   AS books_unchanged;

-- round_half_up_bp: integers where amount * bp cannot overflow, numeric
-- beyond; both round half away from zero and agree everywhere
SELECT coupon.round_half_up_bp(15000, 3333) AS half_up, coupon.round_half_up_bp(-15000, 3333) AS half_down,
	   coupon.round_half_up_bp(14999, 3333) AS below_half, coupon.round_half_up_bp(0, 10000) AS zero,
	   coupon.round_half_up_bp(922337203685477, 10000) AS last_integer,
	   coupon.round_half_up_bp(922337203685479, 5000) AS first_numeric,
	   coupon.round_half_up_bp(9223372036854775807, 10000) AS max_amount,
	   coupon.round_half_up_bp(15000, 10001) AS bp_above_range,
	   coupon.round_half_up_bp(15000, -3333) AS negative_bp;
SELECT count(*) AS cases,
	   count(*) FILTER (WHERE coupon.round_half_up_bp(a, bp)
						 <> sign(a)::bigint * round(abs(a)::numeric * bp / 10000)::bigint) AS disagreeing
  FROM unnest('{0,1,-1,2,5,-5,49,50,-50,51,9999,15000,-15000,14999,15001,1234567,
				922337203685476,922337203685477,922337203685478,-922337203685477,-922337203685478,
				4611686018427387903,-4611686018427387903}'::bigint[]) a,
	   unnest('{0,1,2,3333,5000,6667,9999,10000,-1,10001,20000}'::int[]) bp;

-- run_settlement needs an until
SELECT try('SELECT coupon.run_settlement(NULL)') AS null_until;
-- and it may not lie in the future: a batch is final, so it can only hold
-- what has already happened (nothing is written)
SELECT count(*) AS batches_before FROM coupon.settlement \gset
SELECT try('SELECT coupon.run_settlement(''infinity'')') AS infinite_until,
	   try('SELECT coupon.run_settlement(now() + interval ''1 day'')') AS tomorrow;
SELECT count(*) = :batches_before AS nothing_written FROM coupon.settlement;

-- purge: at least 24 hours; deletes idempotency keys older than older_than
SELECT try('SELECT coupon.purge(''23 hours 59 minutes'')') AS under_a_day;
SELECT try('SELECT coupon.purge(''-1 day'')') AS negative;
SELECT try('SELECT coupon.purge(NULL)') AS null_ttl;
SELECT coupon.purge() >= 0 AS older_keys_purged;
SELECT id AS keyed FROM coupon.pay(:m_ref, 'sue', 'keyed-1', 100, NULL, NULL, 'settle-key-1') \gset
SELECT id AS keyed FROM coupon.pay(:m_ref, 'sue', 'keyed-2', 100, NULL, NULL, 'settle-key-2') \gset
SELECT id AS keyed FROM coupon.pay(:m_ref, 'sue', 'keyed-3', 100, NULL, NULL, 'settle-key-3') \gset
UPDATE coupon.idempotency_key SET created_at = now() - interval '25 hours' WHERE key = 'settle-key-1';
UPDATE coupon.idempotency_key SET created_at = now() - interval '8 days' WHERE key = 'settle-key-2';
SELECT coupon.purge('1 week') AS purged_week;
SELECT coupon.purge() AS purged_day;
SELECT coupon.purge() AS purged_again;
SELECT key FROM coupon.idempotency_key WHERE key LIKE 'settle-key-%' ORDER BY key;

-- pg_cron is not installed in this database: a clear error
SELECT try('SELECT coupon.schedule_jobs()') AS schedule_without_cron;
SELECT try('SELECT coupon.unschedule_jobs()') AS unschedule_without_cron;

-- a merchant funds only discounts of its own policies: a platform campaign
-- of m_own also spendable at m_host costs m_host nothing (the platform
-- funds it there), while at m_own the merchant's share applies
SELECT id AS m_own FROM coupon.create_merchant('funds its own', 'KRW', 0, 0, 0) \gset
SELECT id AS m_host FROM coupon.create_merchant('hosts a campaign', 'KRW', 0, 0, 0) \gset
SELECT id AS p_camp FROM coupon.create_policy(:m_own, 'campaign', 'fixed', 2000, per_user_limit => NULL,
	merchant_share_bp => 10000, allowed_merchants => ARRAY[:m_own, :m_host]::bigint[]) \gset
SELECT sold(:m_host, 'camp-host', 10000, ARRAY[(coupon.issue(:p_camp, 'sue')).id], '2020-06-01 10:00+00') AS camp_host,
	   sold(:m_own, 'camp-own', 10000, ARRAY[(coupon.issue(:p_camp, 'sue')).id], '2020-06-01 11:00+00') AS camp_own \gset
SELECT CASE merchant_id WHEN :m_own THEN 'issuer' ELSE 'host' END AS merchant,
	   gross, discount_merchant, discount_platform, charged, payout
  FROM coupon.run_settlement('2020-06-02 00:00+00') WHERE merchant_id IN (:m_own, :m_host) ORDER BY merchant_id;

-- one merchant's batch whose totals would not fit (9300 sales of 10^15,
-- past bigint, which stopped the whole run before 0.7) is left out and
-- reported; the other merchant of the run is
-- settled all the same
SELECT id AS m_whale FROM coupon.create_merchant('whale', 'KRW', 0, 0, 0) \gset
SELECT id AS m_small FROM coupon.create_merchant('small', 'KRW', 0, 0, 0) \gset
SELECT count(coupon.pay(:m_whale, 'whale', 'whale-' || g, 1000000000000000)) AS whale_payments
  FROM generate_series(1, 9300) g;
SELECT sold(:m_small, 'small-1', 5000, NULL, '2020-07-01 11:00+00') AS small_1 \gset
UPDATE coupon.payment SET state = 'completed', approved_amount = amount, completed_at = '2020-07-01 10:00+00'
 WHERE merchant_id = :m_whale;
SELECT CASE merchant_id WHEN :m_small THEN 'small' ELSE 'whale' END AS merchant, sales, gross, payout
  FROM coupon.run_settlement('2020-07-02 00:00+00') WHERE merchant_id IN (:m_whale, :m_small);
SELECT merchant_id = :m_whale AS whale, reason, detail ->> 'items' AS items, detail ->> 'gross' AS gross
  FROM coupon.settlement_problem;
SELECT count(*) AS whale_items_settled FROM coupon.settlement_item WHERE merchant_id = :m_whale;
