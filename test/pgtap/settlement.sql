-- pgTAP: settlement properties over a randomized workload (docs/settlement.md).
--
-- Five merchants with different commission, gateway fee and settlement
-- delay, each with policies of different merchant_share_bp (fixed, percent
-- with a cap, balance; stackable or not), take a seeded random mix of 3000
-- payments in March 2020: no coupon, one, or two stacked, some paid wholly
-- by their coupons.  Payments are driven as the saga would (pay() holds the
-- coupons; completed with approved_amount = amount - discount and the holds
-- confirmed); a few are completed late, with an instant before a run that
-- has already passed.  Refunds (partial, the rest, or all at once; 0 for a
-- payment the coupons paid) are recorded between the runs, some of them
-- late as well.  run_settlement runs at increasing untils, each run followed
-- by a re-run that must add nothing; after each run every sale and refund
-- before its merchant's cutoff must be settled exactly once.  Then the
-- books must balance: per batch, per item (the formulas, recomputed), per
-- payment, and along each merchant's carry chain.
BEGIN;
SELECT plan(34);

SELECT setseed(0.20300301);

-- spend(payment): what the saga does when the gateway approves a payment:
-- its holds confirmed, each coupon spent (a balance coupon keeps what is
-- left).  The holds are the saga's alone, so confirm() would refuse them.
CREATE FUNCTION pg_temp.spend(pid bigint) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
	h record;
BEGIN
	FOR h IN SELECT id, coupon_id, discount FROM coupon.reservation
			  WHERE payment_id = pid AND status = 'held' ORDER BY coupon_id LOOP
		UPDATE coupon.coupon
		   SET balance = balance - h.discount,
			   status = CASE WHEN coalesce(balance - h.discount, 0) > 0 THEN 'issued' ELSE 'used' END,
			   used_at = now(), updated_at = now()
		 WHERE id = h.coupon_id;
		UPDATE coupon.reservation SET status = 'confirmed', updated_at = now() WHERE id = h.id;
	END LOOP;
END
$fn$;
CREATE TEMP TABLE merch (k int PRIMARY KEY, id bigint NOT NULL, commission_bp int NOT NULL,
						 pg_fee_bp int NOT NULL, delay int NOT NULL, refund_rate float8 NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE pol (merchant_k int NOT NULL, id bigint NOT NULL, stackable boolean NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE pay (id bigint PRIMARY KEY, merchant_k int NOT NULL, late_at timestamptz) ON COMMIT DROP;
-- refunds to record: at their instant, or (late) one run after it
CREATE TEMP TABLE ev (seq serial PRIMARY KEY, payment_id bigint NOT NULL, at timestamptz NOT NULL,
					  amount bigint, late boolean NOT NULL, applied boolean NOT NULL DEFAULT false) ON COMMIT DROP;
CREATE TEMP TABLE tally (op text NOT NULL, outcome text NOT NULL) ON COMMIT DROP;
-- what each run returned, and what the checks after it found
CREATE TEMP TABLE run (k int NOT NULL, until timestamptz NOT NULL, batch bigint NOT NULL,
					   merchant_id bigint NOT NULL, period_end timestamptz NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE rerun (k int NOT NULL, batches bigint NOT NULL, items bigint NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE violation (k int NOT NULL, what text NOT NULL, id bigint) ON COMMIT DROP;
-- the rates each run settled with (they change before run 5)
CREATE TEMP TABLE rates (k int NOT NULL, merchant_id bigint NOT NULL, commission_bp int NOT NULL,
						 pg_fee_bp int NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE shares (k int NOT NULL, policy_id bigint NOT NULL, merchant_share_bp int NOT NULL) ON COMMIT DROP;

DO $setup$
DECLARE
	mid bigint;
	m record;
BEGIN
	--                         commission, fee,  delay, refunds
	FOR m IN SELECT * FROM (VALUES (1, 1000,    0, 0, 0.25),
								   (2,  250,  330, 1, 0.30),
								   (3, 1234,  275, 2, 0.20),
								   (4,    0,    0, 0, 0.15),
								   (5, 3000,  500, 3, 0.70)) v(k, c, f, d, r) LOOP
		mid := (coupon.create_merchant('tap settlement ' || m.k, 'KRW', m.c, m.f, m.d)).id;
		INSERT INTO merch VALUES (m.k, mid, m.c, m.f, m.d, m.r);
		INSERT INTO pol SELECT m.k, id, true FROM coupon.create_policy(mid, 'fixed 1000 platform', 'fixed', 1000,
			per_user_limit => NULL, merchant_share_bp => 0, stackable => true);
		INSERT INTO pol SELECT m.k, id, true FROM coupon.create_policy(mid, 'percent 15 capped', 'percent', 1500,
			per_user_limit => NULL, max_discount => 5000, merchant_share_bp => 3333, stackable => true);
		INSERT INTO pol SELECT m.k, id, false FROM coupon.create_policy(mid, 'fixed 3000 half', 'fixed', 3000,
			per_user_limit => NULL, merchant_share_bp => 5000);
		INSERT INTO pol SELECT m.k, id, false FROM coupon.create_policy(mid, 'balance 20000 merchant', 'balance', 20000,
			per_user_limit => NULL, merchant_share_bp => 10000);
		INSERT INTO pol SELECT m.k, id, true FROM coupon.create_policy(mid, 'fixed 777 odd share', 'fixed', 777,
			per_user_limit => NULL, merchant_share_bp => 4999, stackable => true);
	END LOOP;
END
$setup$;

-- the payments, completed (or, a few, left for a late completion) and their refunds
DO $work$
DECLARE
	t0 timestamptz := '2020-03-01 00:00+00';
	mk int;
	m record;
	u text;
	amt bigint;
	coupons bigint[];
	r float8;
	p coupon.payment;
	done_at timestamptz;
	part bigint;
	st text;
	det text;
	msg text;
	reason text;
BEGIN
	FOR i IN 1 .. 3000 LOOP
		mk := 1 + floor(random() * 5)::int;
		SELECT * INTO m FROM merch WHERE merch.k = mk;
		u := 'ts-' || i;
		r := random();
		amt := CASE WHEN r < 0.15 THEN 100 + floor(random() * 2900)::bigint
					WHEN r < 0.9 THEN 3000 + floor(random() * 60000)::bigint
					ELSE 60000 + floor(random() * 940000)::bigint END;
		r := random();
		coupons := CASE
			WHEN r < 0.4 THEN NULL
			WHEN r < 0.8 THEN ARRAY[(coupon.issue((SELECT id FROM pol WHERE merchant_k = mk ORDER BY random() LIMIT 1), u)).id]
			ELSE ARRAY[(coupon.issue((SELECT id FROM pol WHERE merchant_k = mk ORDER BY random() LIMIT 1), u)).id,
					   (coupon.issue((SELECT id FROM pol WHERE merchant_k = mk AND stackable ORDER BY random() LIMIT 1), u)).id]
		END;
		BEGIN
			p := coupon.pay(m.id, u, 'order-' || i, amt, coupons);
			INSERT INTO tally VALUES ('pay', 'ok');
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
			BEGIN
				reason := det::jsonb ->> 'reason';
			EXCEPTION WHEN OTHERS THEN
				reason := NULL;
			END;
			INSERT INTO tally VALUES ('pay', st || ' ' || coalesce(reason, msg));
			CONTINUE;
		END;
		-- merchant 5 sells early and late, and is refunded in between: its
		-- batches go negative, carry the balance, and absorb it later
		IF mk = 5 THEN
			done_at := t0 + CASE WHEN random() < 0.5 THEN random() * 4 ELSE 10 + random() * 3 END * interval '1 day';
		ELSE
			done_at := t0 + random() * 13 * interval '1 day';
		END IF;
		IF random() < 0.04 THEN
			-- completed by a late commit: its instant lies before a cutoff already passed
			INSERT INTO pay VALUES (p.id, mk, done_at);
			INSERT INTO tally VALUES ('complete', 'late');
			CONTINUE;
		ELSIF random() < 0.04 THEN
			-- never completes: still pending; or voided after the approval (failed,
			-- the charge given back); or charged and refunded while authorizing
			-- (refunded without completing).  Never settled, ledger rows or not.
			r := random();
			IF r >= 1.0 / 3 THEN
				UPDATE coupon.payment SET approved_amount = amount - discount WHERE id = p.id;
				UPDATE coupon.payment SET state = CASE WHEN r < 2.0 / 3 THEN 'failed' ELSE 'refunded' END,
					   refunded_amount = approved_amount, refunded_at = done_at
				 WHERE id = p.id;
				UPDATE coupon.payment_refund SET refunded_at = done_at WHERE payment_id = p.id;
			END IF;
			INSERT INTO pay VALUES (p.id, mk, NULL);
			INSERT INTO tally VALUES ('complete', 'never');
			CONTINUE;
		END IF;
		UPDATE coupon.payment SET state = 'completed', approved_amount = amount - discount, completed_at = done_at
		 WHERE id = p.id;
		PERFORM pg_temp.spend(p.id);
		INSERT INTO pay VALUES (p.id, mk, NULL);
		INSERT INTO tally VALUES ('complete', 'ok');

		-- its refunds, to be recorded between the runs (none for merchant 5's late sales)
		IF random() >= m.refund_rate OR (mk = 5 AND done_at >= t0 + interval '5 days') THEN
			CONTINUE;
		END IF;
		r := random();
		IF mk = 5 AND done_at < t0 + interval '5 days' THEN
			done_at := t0 + interval '4 days' + random() * interval '4 days';
		END IF;
		IF p.amount - p.discount > 1 AND r < 0.6 THEN
			-- a partial refund, then sometimes the rest
			part := 1 + floor(random() * (p.amount - p.discount - 1))::bigint;
			done_at := done_at + (0.01 + random() * 2) * interval '1 day';
			INSERT INTO ev (payment_id, at, amount, late) VALUES (p.id, done_at, part, random() < 0.1);
			IF random() < 0.5 THEN
				INSERT INTO ev (payment_id, at, amount, late)
				VALUES (p.id, done_at + (0.01 + random() * 2) * interval '1 day', NULL,
						(SELECT late FROM ev WHERE payment_id = p.id));
			END IF;
		ELSE
			-- all at once (0 for a payment its coupons paid wholly)
			INSERT INTO ev (payment_id, at, amount, late)
			VALUES (p.id, done_at + (0.01 + random() * 3) * interval '1 day', NULL, random() < 0.1);
		END IF;
	END LOOP;
END
$work$;

-- the runs: refunds and late completions recorded, then run_settlement(until)
-- and a re-run with the same until; after each, the coverage checks
DO $runs$
DECLARE
	t0 timestamptz := '2020-03-01 00:00+00';
	untils timestamptz[] := ARRAY(SELECT t0 + d * interval '1 day' FROM unnest('{2,4,6,8,10,12,14,16,40,50}'::int[]) d ORDER BY d);
	u timestamptz;
	prev timestamptz;
	e record;
	n bigint;
	b bigint;
BEGIN
	FOR rk IN 1 .. cardinality(untils) LOOP
		u := untils[rk];
		prev := CASE WHEN rk > 1 THEN untils[rk - 1] ELSE '-infinity' END;
		-- late completions: their instant is before the previous run's until
		UPDATE coupon.payment p SET state = 'completed', approved_amount = p.amount - p.discount,
			   completed_at = x.late_at
		  FROM pay x
		 WHERE x.id = p.id AND x.late_at IS NOT NULL AND x.late_at < prev AND p.completed_at IS NULL;
		PERFORM pg_temp.spend(x.id) FROM pay x WHERE x.late_at IS NOT NULL AND x.late_at < prev;
		-- refunds up to this until; a late one one run after its instant
		FOR e IN SELECT * FROM ev
				  WHERE NOT applied AND at < CASE WHEN late THEN prev ELSE u END
				  ORDER BY at, seq LOOP
			UPDATE coupon.payment p
			   SET refunded_amount = p.refunded_amount + coalesce(e.amount, p.approved_amount - p.refunded_amount),
				   state = CASE WHEN e.amount IS NULL THEN 'refunded' ELSE 'partially_refunded' END,
				   refunded_at = e.at
			 WHERE p.id = e.payment_id;
			UPDATE coupon.payment_refund f SET refunded_at = e.at
			 WHERE f.id = (SELECT max(x.id) FROM coupon.payment_refund x WHERE x.payment_id = e.payment_id);
			UPDATE ev SET applied = true WHERE seq = e.seq;
		END LOOP;

		-- new rates from run 5 on: merchant 2's and 3's commission and fee, and
		-- the shares of merchant 2's policies; settled items keep theirs
		IF rk = 5 THEN
			UPDATE coupon.merchant SET commission_bp = 777, pg_fee_bp = 0 WHERE id = (SELECT id FROM merch WHERE k = 2);
			UPDATE coupon.merchant SET commission_bp = 1500, pg_fee_bp = 301 WHERE id = (SELECT id FROM merch WHERE k = 3);
			UPDATE coupon.policy SET merchant_share_bp = 10000 - merchant_share_bp
			 WHERE merchant_id = (SELECT id FROM merch WHERE k = 2);
		END IF;
		INSERT INTO rates SELECT rk, id, commission_bp, pg_fee_bp FROM coupon.merchant WHERE id IN (SELECT id FROM merch);
		INSERT INTO shares SELECT rk, id, merchant_share_bp FROM coupon.policy
		 WHERE merchant_id IN (SELECT id FROM merch);
		INSERT INTO run SELECT rk, u, s.id, s.merchant_id, s.period_end FROM coupon.run_settlement(u) s;
		n := (SELECT count(*) FROM coupon.settlement_item);
		b := (SELECT count(*) FROM coupon.run_settlement(u));
		INSERT INTO rerun VALUES (rk, b, (SELECT count(*) FROM coupon.settlement_item) - n);

		-- every completed payment before its merchant's cutoff: exactly one sale item
		INSERT INTO violation
		SELECT rk, 'sale not settled exactly once', p.id
		  FROM coupon.payment p JOIN merch m ON m.id = p.merchant_id
		 WHERE p.completed_at < u - m.delay * interval '1 day'
		   AND (SELECT count(*) FROM coupon.settlement_item i WHERE i.payment_id = p.id AND i.refund_id IS NULL) <> 1;
		-- every refund of a completed payment before the cutoff: exactly one item
		INSERT INTO violation
		SELECT rk, 'refund not settled exactly once', f.id
		  FROM coupon.payment_refund f JOIN coupon.payment p ON p.id = f.payment_id
		  JOIN merch m ON m.id = p.merchant_id
		 WHERE f.refunded_at < u - m.delay * interval '1 day' AND p.completed_at IS NOT NULL
		   AND (SELECT count(*) FROM coupon.settlement_item i WHERE i.refund_id = f.id) <> 1;
		-- and nothing settled ahead of its cutoff
		INSERT INTO violation
		SELECT rk, 'item at or after its batch''s period_end', i.id
		  FROM coupon.settlement_item i JOIN coupon.settlement s ON s.id = i.settlement_id
		 WHERE i.occurred_at >= s.period_end;
	END LOOP;
END
$runs$;

CREATE TEMP VIEW my_items AS
	SELECT i.* FROM coupon.settlement_item i WHERE i.merchant_id IN (SELECT id FROM merch);
CREATE TEMP VIEW my_batches AS
	SELECT s.* FROM coupon.settlement s WHERE s.merchant_id IN (SELECT id FROM merch);
CREATE TEMP VIEW my_payments AS
	SELECT p.* FROM coupon.payment p WHERE p.merchant_id IN (SELECT id FROM merch);

SELECT diag('pay: ' || string_agg(op || ' ' || outcome || '=' || n, ', ' ORDER BY op, outcome))
  FROM (SELECT op, outcome, count(*) n FROM tally GROUP BY 1, 2) s;
SELECT diag(format('%s payments, %s refunds, %s batches (%s carried forward), %s items: %s sales, %s refunds, %s adjustments',
				   (SELECT count(*) FROM my_payments),
				   (SELECT count(*) FROM coupon.payment_refund f JOIN my_payments p ON p.id = f.payment_id),
				   (SELECT count(*) FROM my_batches),
				   (SELECT count(*) FROM my_batches WHERE status = 'carried_forward'),
				   (SELECT count(*) FROM my_items),
				   (SELECT count(*) FROM my_items WHERE kind = 'sale'),
				   (SELECT count(*) FROM my_items WHERE kind = 'refund'),
				   (SELECT count(*) FROM my_items WHERE kind = 'adjustment')));

-- 1: the workload
SELECT is_empty($$SELECT op, outcome FROM tally WHERE outcome NOT IN ('ok', 'late', 'never')$$,
	'every payment was accepted');

-- 2-10: and covered what it should
SELECT ok((SELECT count(*) FROM my_payments WHERE completed_at IS NOT NULL) >= 2500, 'at least 2500 payments completed');
SELECT ok((SELECT count(*) FROM my_payments WHERE completed_at IS NOT NULL AND discount = amount
			  AND EXISTS (SELECT 1 FROM coupon.payment_refund f WHERE f.payment_id = my_payments.id)) > 0,
		  'some payments the coupons paid wholly were refunded (refunds of 0)');
SELECT ok((SELECT count(*) FROM my_payments WHERE cardinality(coupon_ids) = 2 AND completed_at IS NOT NULL) > 100,
		  'over 100 payments with two stacked coupons');
SELECT ok((SELECT count(*) FROM my_payments WHERE state = 'partially_refunded') > 50
		  AND (SELECT count(*) FROM my_payments p WHERE p.state = 'refunded'
				  AND (SELECT count(*) FROM coupon.payment_refund f WHERE f.payment_id = p.id) = 2) > 50,
		  'partial refunds, and partial refunds followed by the rest');
SELECT ok((SELECT count(*) FROM my_items WHERE kind = 'refund') > 20
		  AND (SELECT count(*) FROM my_items WHERE kind = 'adjustment') > 200,
		  'refunds settled with their sale (refund) and after it (adjustment)');
SELECT ok((SELECT count(*) FROM my_batches WHERE carry_in < 0 AND status = 'carried_forward') > 0
		  AND (SELECT count(*) FROM my_batches WHERE carry_in < 0 AND status = 'payable') > 0,
		  'negative balances carried over several batches, then absorbed');
SELECT ok((SELECT count(*) FROM my_payments p JOIN pay x ON x.id = p.id
			WHERE x.late_at IS NOT NULL AND p.completed_at IS NOT NULL) > 20
		  AND (SELECT count(*) FROM ev WHERE late AND applied) > 20,
		  'sales and refunds recorded after a run whose cutoff they precede');
SELECT ok((SELECT count(*) FROM ev WHERE NOT applied) = 0
		  AND NOT EXISTS (SELECT 1 FROM pay x JOIN coupon.payment p ON p.id = x.id
						   WHERE x.late_at IS NOT NULL AND p.completed_at IS NULL),
		  'every refund was recorded and every late sale completed');
SELECT ok((SELECT count(*) FROM my_payments p WHERE p.completed_at IS NULL AND p.state = 'failed'
			  AND EXISTS (SELECT 1 FROM coupon.payment_refund f WHERE f.payment_id = p.id)) > 0
		  AND (SELECT count(*) FROM my_payments p WHERE p.completed_at IS NULL AND p.state = 'refunded'
				  AND EXISTS (SELECT 1 FROM coupon.payment_refund f WHERE f.payment_id = p.id)) > 0,
		  'payments voided, or charged and refunded, without completing (ledger rows, no sale)');

-- 11: each run made at most one batch per merchant, with period_end = until - delay
SELECT is_empty($$
	SELECT r.k, r.merchant_id FROM run r JOIN merch m ON m.id = r.merchant_id
	 GROUP BY r.k, r.merchant_id, r.until, m.delay
	HAVING count(*) <> 1 OR min(r.period_end) <> r.until - m.delay * interval '1 day'$$,
	'one batch per merchant and run, ending at until - settlement_delay_days');

-- 12: a re-run adds nothing
SELECT is_empty($$SELECT * FROM rerun WHERE batches <> 0 OR items <> 0$$,
	'every re-run with the same until returned no batch and added no item');

-- 13: after every run, every sale and refund before the cutoff exactly once, nothing after it
SELECT is_empty($$SELECT k, what, count(*), min(id) FROM violation GROUP BY 1, 2$$,
	'after each run: every sale and refund before its cutoff settled exactly once, none at or after it');

-- 14: per batch, the invariant of docs/settlement.md over its items
SELECT is_empty($$
	SELECT i.settlement_id FROM my_items i GROUP BY i.settlement_id
	HAVING sum(i.payout + i.commission + i.pg_fee - i.discount_platform) <> sum(i.charged)$$,
	'per batch: sum(payout + commission + pg_fee - discount_platform) = sum(charged)');

-- 15: the batch's columns are the sums of its items
SELECT is_empty($$
	SELECT s.id FROM my_batches s
	  LEFT JOIN LATERAL (
		  SELECT count(*) FILTER (WHERE i.kind = 'sale') AS sales, count(*) FILTER (WHERE i.kind <> 'sale') AS refunds,
				 sum(i.gross) AS gross, sum(i.discount_merchant) AS d_m, sum(i.discount_platform) AS d_p,
				 sum(i.charged) AS charged, sum(i.commission) AS commission, sum(i.pg_fee) AS pg_fee,
				 sum(i.payout) AS payout
			FROM coupon.settlement_item i WHERE i.settlement_id = s.id) x ON true
	 WHERE (s.sales, s.refunds, s.gross, s.discount_merchant, s.discount_platform, s.charged, s.commission,
			s.pg_fee, s.items_payout)
		   IS DISTINCT FROM (x.sales, x.refunds, x.gross, x.d_m, x.d_p, x.charged, x.commission, x.pg_fee, x.payout)$$,
	'every batch''s counts and figures are the sums of its items');

-- 16: no empty batch
SELECT is_empty($$SELECT s.id FROM my_batches s WHERE s.sales + s.refunds = 0$$, 'no batch without items');

-- 17: per item: charged, base and payout
SELECT is_empty($$
	SELECT id FROM my_items
	 WHERE charged <> gross - discount_merchant - discount_platform OR base <> gross - discount_merchant
		OR payout <> base - commission - pg_fee OR payout + commission + pg_fee - discount_platform <> charged$$,
	'per item: charged = gross - d_m - d_p, base = gross - d_m, payout = base - commission - pg_fee');

-- 18: sale items: the payment's figures and the merchant's rates, rounded half up
SELECT is_empty($$
	SELECT i.id
	  FROM my_items i JOIN coupon.payment p ON p.id = i.payment_id
	  JOIN run ON run.batch = i.settlement_id JOIN rates m ON m.k = run.k AND m.merchant_id = i.merchant_id
	 WHERE i.kind = 'sale'
	   AND (i.gross <> p.amount OR i.charged <> p.approved_amount
			OR i.discount_merchant + i.discount_platform <> p.discount
			OR i.occurred_at <> p.completed_at
			OR i.commission <> round((i.gross - i.discount_merchant)::numeric * m.commission_bp / 10000)
			OR i.pg_fee <> round(i.charged::numeric * m.pg_fee_bp / 10000))$$,
	'sale items: gross = amount, charged = approved_amount, commission and pg_fee at the run''s rates, rounded half up');

-- 19: the merchant's share of each coupon's discount, rounded half up per coupon
SELECT is_empty($$
	SELECT i.id
	  FROM my_items i JOIN run ON run.batch = i.settlement_id
	 WHERE i.kind = 'sale'
	   AND i.discount_merchant <> (SELECT coalesce(sum(round(r.discount::numeric * sh.merchant_share_bp / 10000)), 0)
									 FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
									 JOIN shares sh ON sh.k = run.k AND sh.policy_id = c.policy_id
									WHERE r.payment_id = i.payment_id AND r.status = 'confirmed')$$,
	'sale items: d_m = sum over the coupons of discount * the run''s merchant_share_bp, rounded half up');

-- 20: the policy of the first coupon
SELECT is_empty($$
	SELECT i.id FROM my_items i JOIN coupon.payment p ON p.id = i.payment_id
	 WHERE i.policy_id IS DISTINCT FROM (SELECT c.policy_id FROM coupon.coupon c WHERE c.id = p.coupon_ids[1])$$,
	'every item carries the policy of its payment''s first coupon');

-- 21: partial refunds take back their amount at the merchant's rates
SELECT is_empty($$
	SELECT i.id
	  FROM my_items i JOIN coupon.payment_refund f ON f.id = i.refund_id
	  JOIN run ON run.batch = i.settlement_id JOIN rates m ON m.k = run.k AND m.merchant_id = i.merchant_id
	 WHERE NOT f.full_refund
	   AND (i.gross <> -f.amount OR i.discount_merchant <> 0 OR i.discount_platform <> 0
			OR i.occurred_at <> f.refunded_at
			OR i.commission <> -round(f.amount::numeric * m.commission_bp / 10000)
			OR i.pg_fee <> -round(f.amount::numeric * m.pg_fee_bp / 10000))$$,
	'partial refund items: gross = -amount, no discount, commission and pg_fee at the run''s rates, rounded half away from zero');

-- 22: the refund that completes a payment's refund reverses what its sale and
-- the earlier refunds left (as they were settled, whatever the rates now)
SELECT is_empty($$
	SELECT i.id
	  FROM my_items i JOIN coupon.payment_refund f ON f.id = i.refund_id
	  JOIN my_items s ON s.payment_id = i.payment_id AND s.kind = 'sale'
	  LEFT JOIN LATERAL (
		  SELECT coalesce(sum(e.gross), 0) AS gross, coalesce(sum(e.commission), 0) AS commission,
				 coalesce(sum(e.pg_fee), 0) AS pg_fee
			FROM my_items e WHERE e.payment_id = i.payment_id AND e.refund_id < i.refund_id) x ON true
	 WHERE f.full_refund
	   AND (i.charged <> -f.amount OR i.occurred_at <> f.refunded_at
			OR (i.gross, i.discount_merchant, i.discount_platform, i.commission, i.pg_fee)
			   <> (-s.gross - x.gross, -s.discount_merchant, -s.discount_platform,
				   -s.commission - x.commission, -s.pg_fee - x.pg_fee))$$,
	'completing refund items: charged = -amount, the rest of the sale reversed');

-- 23: refund in the sale's batch, adjustment in a later one, never before it
SELECT is_empty($$
	SELECT i.id
	  FROM my_items i JOIN my_items s ON s.payment_id = i.payment_id AND s.kind = 'sale'
	 WHERE i.kind <> 'sale'
	   AND NOT ((i.kind = 'refund' AND i.settlement_id = s.settlement_id)
				OR (i.kind = 'adjustment' AND i.settlement_id > s.settlement_id))$$,
	'kind refund: same batch as the sale; adjustment: a later batch');

-- 24-25: every completed payment has exactly one sale item; every ledger row of a completed payment one item
SELECT is_empty($$
	SELECT p.id FROM my_payments p
	 WHERE (p.state IN ('completed', 'partially_refunded') OR p.completed_at IS NOT NULL)
	   AND (SELECT count(*) FROM my_items i WHERE i.payment_id = p.id AND i.kind = 'sale') <> 1$$,
	'every payment that completed (completed, partially refunded or refunded since) has exactly one sale item');
SELECT is_empty($$
	SELECT f.id FROM coupon.payment_refund f JOIN my_payments p ON p.id = f.payment_id
	 WHERE p.completed_at IS NOT NULL
	   AND (SELECT count(*) FROM coupon.settlement_item i WHERE i.refund_id = f.id AND i.payment_id = f.payment_id) <> 1
	UNION ALL
	SELECT i.id FROM my_items i
	 WHERE i.kind <> 'sale' AND NOT EXISTS (SELECT 1 FROM coupon.payment_refund f
											 WHERE f.id = i.refund_id AND f.payment_id = i.payment_id)$$,
	'every payment_refund row of a completed payment has exactly one item, and every refund item a ledger row');

-- 26: payments that never completed are never settled, refunded or not
SELECT is_empty($$SELECT p.id FROM my_payments p JOIN my_items i ON i.payment_id = p.id WHERE p.completed_at IS NULL$$,
	'payments that never completed (pending, voided, refunded while authorizing) have no items');

-- 27: the ledger adds up to what the payments say
SELECT is_empty($$
	SELECT p.id FROM my_payments p
	 WHERE p.refunded_amount <> (SELECT coalesce(sum(f.amount), 0) FROM coupon.payment_refund f WHERE f.payment_id = p.id)
		OR (p.state = 'refunded') <> EXISTS (SELECT 1 FROM coupon.payment_refund f
											  WHERE f.payment_id = p.id AND f.full_refund)$$,
	'payment_refund: amounts sum to refunded_amount, one full_refund row exactly for refunded payments');

-- 28: everything settled: per payment, charged = approved_amount - refunded_amount
SELECT is_empty($$
	SELECT p.id FROM my_payments p
	 WHERE p.completed_at IS NOT NULL
	   AND (SELECT sum(i.charged) FROM my_items i WHERE i.payment_id = p.id)
		   IS DISTINCT FROM p.approved_amount - p.refunded_amount$$,
	'per payment: the items'' charged sum to approved_amount - refunded_amount');

-- 29: fully refunded payments net to zero in every column
SELECT is_empty($$
	SELECT i.payment_id FROM my_items i JOIN my_payments p ON p.id = i.payment_id
	 WHERE p.state = 'refunded' GROUP BY i.payment_id
	HAVING (sum(i.gross), sum(i.discount_merchant), sum(i.discount_platform), sum(i.charged), sum(i.base),
			sum(i.commission), sum(i.pg_fee), sum(i.payout)) <> (0, 0, 0, 0, 0, 0, 0, 0)$$,
	'the items of a refunded payment sum to zero in every column');

-- 30: batches: payout >= 0, carry_out <= 0, payout + carry_out = items_payout + carry_in, status
SELECT is_empty($$
	SELECT id FROM my_batches
	 WHERE payout < 0 OR carry_out > 0 OR carry_in > 0 OR payout + carry_out <> items_payout + carry_in
		OR (payout <> 0 AND carry_out <> 0)
		OR status <> CASE WHEN items_payout + carry_in < 0 THEN 'carried_forward' ELSE 'payable' END$$,
	'batches: payout >= 0 and carry_out <= 0, one of them 0, payout + carry_out = items_payout + carry_in');

-- 31: the carry chain: each batch's carry_in is the merchant's previous batch's carry_out
SELECT is_empty($$
	SELECT id FROM (
		SELECT id, carry_in, coalesce(lag(carry_out) OVER (PARTITION BY merchant_id ORDER BY id), 0) AS prev_out
		  FROM my_batches) c
	 WHERE carry_in <> prev_out$$,
	'carry_in = the previous batch''s carry_out (0 for a merchant''s first batch)');

-- 32: what is paid out plus what is still carried is what the items earned
SELECT is_empty($$
	SELECT m.id FROM merch m
	 WHERE (SELECT coalesce(sum(s.payout), 0) FROM my_batches s WHERE s.merchant_id = m.id)
		   + coalesce((SELECT s.carry_out FROM my_batches s WHERE s.merchant_id = m.id ORDER BY s.id DESC LIMIT 1), 0)
		   <> (SELECT coalesce(sum(i.payout), 0) FROM my_items i WHERE i.merchant_id = m.id)$$,
	'per merchant: sum(payout) + last carry_out = sum of the items'' payouts');

-- 33: settlement_report adds up to the items
SELECT is_empty($$
	SELECT m.id FROM merch m
	 WHERE (SELECT ARRAY[sum(r.sales), sum(r.refunds), sum(r.sales_gross + r.refunds_gross), sum(r.discount_merchant),
					 sum(r.discount_platform), sum(r.charged), sum(r.commission), sum(r.pg_fee), sum(r.payout)]
			  FROM coupon.settlement_report(m.id, '2020-01-01', '2020-12-31') r)
		   IS DISTINCT FROM
		   (SELECT ARRAY[count(*) FILTER (WHERE i.kind = 'sale'), count(*) FILTER (WHERE i.kind <> 'sale'), sum(i.gross),
					 sum(i.discount_merchant), sum(i.discount_platform), sum(i.charged), sum(i.commission),
					 sum(i.pg_fee), sum(i.payout)]::numeric[]
			  FROM my_items i WHERE i.merchant_id = m.id)$$,
	'settlement_report over the whole period adds up to the merchant''s items');

-- 34: one more run adds nothing
SELECT is((SELECT count(*) FROM coupon.run_settlement('2021-01-01 00:00+00')), 0::bigint,
		  'a final run after everything was settled makes no batch');

SELECT * FROM finish();
ROLLBACK;
