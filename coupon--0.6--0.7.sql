/* coupon--0.6--0.7.sql: money safety.
 *
 * run_settlement(): a merchant funds only discounts of its own policies
 * (merchant_share_bp counts where the coupon is spent at its issuer; at any
 * other merchant the platform funds the whole discount), and a cutoff later
 * than now is refused (PT400 invalid_cutoff): a batch is final and may hold
 * only what has already happened.
 *
 * Payment keys are unique: a caller's key can no longer be given to two
 * payments.  The update fails if two payments already share one; give one
 * of them another key first (SELECT payment_key FROM coupon.payment GROUP BY
 * 1 HAVING count(*) > 1 finds them).
 *
 * policy_stats and merchant_stats show a session bound to a merchant (a
 * merchant_id claim) only that merchant's rows. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.7'" to load this file. \quit

CREATE UNIQUE INDEX payment_key_idx ON coupon.payment (payment_key);
COMMENT ON INDEX coupon.payment_key_idx IS 'One payment per gateway paymentKey: a key cannot be given to two payments.';

CREATE OR REPLACE FUNCTION coupon.run_settlement(until timestamptz DEFAULT date_trunc('day', now()))
RETURNS SETOF coupon.settlement
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $fn$
BEGIN
	IF until IS NULL THEN
		RAISE EXCEPTION 'until must not be null'
			USING ERRCODE = 'PT400', DETAIL = '{"reason": "missing_argument", "argument": "until"}',
				  HINT = 'Pass a value for every required argument.';
	END IF;
	-- a batch is final: it may only hold what has already happened
	IF until > now() THEN
		RAISE EXCEPTION 'until % is later than now', until
			USING ERRCODE = 'PT400', DETAIL = '{"reason": "invalid_cutoff", "argument": "until"}',
				  HINT = 'Settle up to now at the latest; each merchant''s batch ends settlement_delay_days before it.';
	END IF;
	-- one run at a time: a concurrent run waits here, then finds nothing new
	PERFORM pg_advisory_xact_lock(1129316356, 0);

	RETURN QUERY
	WITH m AS (
		SELECT id, commission_bp, pg_fee_bp, until - settlement_delay_days * interval '1 day' AS cutoff
		  FROM coupon.merchant),
	-- sales: completed payments before their merchant's cutoff, not settled
	-- yet, in the order of the payment table, so that the items land at the
	-- end of settlement_item_once_idx
	sale AS (
		SELECT p.id AS payment_id, p.merchant_id, p.completed_at AS occurred_at,
			   p.amount AS gross, p.discount, coalesce(d.merchant_funded, 0) AS d_m, d.policy_id,
			   m.commission_bp, m.pg_fee_bp
		  FROM coupon.payment p
		  JOIN m ON m.id = p.merchant_id
		  -- the coupons' funding and the first coupon's policy; a payment
		  -- without coupons skips the look-up (a one-time filter)
		  LEFT JOIN LATERAL (
			  SELECT sum(coupon.round_half_up_bp(r.discount, CASE WHEN pol.merchant_id = p.merchant_id
																	 THEN pol.merchant_share_bp ELSE 0 END))::bigint
						 AS merchant_funded,
					 max(c.policy_id) FILTER (WHERE c.id = p.coupon_ids[1]) AS policy_id
				FROM coupon.reservation r
				JOIN coupon.coupon c ON c.id = r.coupon_id
				JOIN coupon.policy pol ON pol.id = c.policy_id
			   WHERE cardinality(p.coupon_ids) > 0
				 AND r.payment_id = p.id AND r.status = 'confirmed') d ON true
		 WHERE p.completed_at IS NOT NULL AND p.completed_at < m.cutoff
		   AND NOT EXISTS (SELECT 1 FROM coupon.settlement_item i
							WHERE i.payment_id = p.id AND i.refund_id IS NULL)),
	sale_item AS (
		SELECT s.payment_id, NULL::bigint AS refund_id, 'sale'::text AS kind, s.merchant_id,
			   s.policy_id, s.occurred_at, s.gross, s.d_m, s.discount - s.d_m AS d_p,
			   coupon.round_half_up_bp(s.gross - s.d_m, s.commission_bp) AS commission,
			   coupon.round_half_up_bp(s.gross - s.discount, s.pg_fee_bp) AS pg_fee
		  FROM sale s),
	-- refunds before the cutoff, not settled yet, of payments that completed
	-- (one cancelled while it was authorized is charged and refunded without
	-- ever completing: no sale, so no refund either)
	ref AS (
		SELECT f.id AS refund_id, f.payment_id, f.amount, f.full_refund, f.refunded_at,
			   p.merchant_id, p.amount AS sale_gross, p.discount AS sale_discount,
			   m.commission_bp, m.pg_fee_bp,
			   (SELECT c.policy_id FROM coupon.coupon c WHERE c.id = p.coupon_ids[1]) AS policy_id
		  FROM coupon.payment_refund f
		  JOIN coupon.payment p ON p.id = f.payment_id
		  JOIN m ON m.id = p.merchant_id
		 WHERE f.refunded_at < m.cutoff AND p.completed_at IS NOT NULL
		   AND NOT EXISTS (SELECT 1 FROM coupon.settlement_item i
							WHERE i.payment_id = f.payment_id AND i.refund_id = f.id)),
	-- a partial refund takes back its amount; the refund that completes the
	-- refund reverses the whole sale less what the partial ones took back
	ref_item AS (
		SELECT r.payment_id, r.refund_id,
			   CASE WHEN EXISTS (SELECT 1 FROM coupon.settlement_item i
								  WHERE i.payment_id = r.payment_id AND i.refund_id IS NULL)
					THEN 'adjustment' ELSE 'refund' END AS kind,
			   r.merchant_id, r.policy_id, r.refunded_at AS occurred_at,
			   CASE WHEN r.full_refund THEN -(sale.gross) - prev.gross ELSE -r.amount END AS gross,
			   CASE WHEN r.full_refund THEN -(sale.d_m) ELSE 0 END AS d_m,
			   CASE WHEN r.full_refund THEN -(sale.d_p) ELSE 0 END AS d_p,
			   CASE WHEN r.full_refund THEN -(sale.commission) - prev.commission
					ELSE -coupon.round_half_up_bp(r.amount, r.commission_bp) END AS commission,
			   CASE WHEN r.full_refund THEN -(sale.pg_fee) - prev.pg_fee
					ELSE -coupon.round_half_up_bp(r.amount, r.pg_fee_bp) END AS pg_fee
		  FROM ref r
		  -- the sale's own figures: as its item has them once settled (rates
		  -- may have changed since), else recomputed the same way
		  CROSS JOIN LATERAL (
			  SELECT coalesce(si.gross, r.sale_gross) AS gross,
					 coalesce(si.discount_merchant, x.d_m) AS d_m,
					 coalesce(si.discount_platform, r.sale_discount - x.d_m) AS d_p,
					 coalesce(si.commission, coupon.round_half_up_bp(r.sale_gross - x.d_m, r.commission_bp)) AS commission,
					 coalesce(si.pg_fee, coupon.round_half_up_bp(r.sale_gross - r.sale_discount, r.pg_fee_bp)) AS pg_fee
				FROM (SELECT coalesce(sum(coupon.round_half_up_bp(rs.discount, CASE WHEN pol.merchant_id = r.merchant_id
																				   THEN pol.merchant_share_bp ELSE 0 END)), 0)::bigint AS d_m
						FROM coupon.reservation rs
						JOIN coupon.coupon c ON c.id = rs.coupon_id
						JOIN coupon.policy pol ON pol.id = c.policy_id
					   WHERE rs.payment_id = r.payment_id AND rs.status = 'confirmed') x
				LEFT JOIN coupon.settlement_item si ON si.payment_id = r.payment_id AND si.refund_id IS NULL) sale
		  -- what the earlier partial refunds of the payment took back (as settled, else recomputed)
		  CROSS JOIN LATERAL (
			  SELECT coalesce(sum(coalesce(si.gross, -e.amount)), 0)::bigint AS gross,
					 coalesce(sum(coalesce(si.commission, -coupon.round_half_up_bp(e.amount, r.commission_bp))), 0)::bigint AS commission,
					 coalesce(sum(coalesce(si.pg_fee, -coupon.round_half_up_bp(e.amount, r.pg_fee_bp))), 0)::bigint AS pg_fee
				FROM coupon.payment_refund e
				LEFT JOIN coupon.settlement_item si ON si.payment_id = e.payment_id AND si.refund_id = e.id
			   WHERE e.payment_id = r.payment_id AND e.id < r.refund_id AND NOT e.full_refund) prev),
	-- read in full (by batch, below) before the first item is written: every
	-- look-up of settlement_item above is done before the table grows
	item AS MATERIALIZED (
		SELECT * FROM sale_item
		UNION ALL
		SELECT * FROM ref_item),
	batch AS (
		SELECT i.merchant_id,
			   count(*) FILTER (WHERE i.kind = 'sale') AS sales,
			   count(*) FILTER (WHERE i.kind <> 'sale') AS refunds,
			   sum(i.gross) AS gross, sum(i.d_m) AS d_m, sum(i.d_p) AS d_p,
			   sum(i.gross - i.d_m - i.d_p) AS charged,
			   sum(i.commission) AS commission, sum(i.pg_fee) AS pg_fee,
			   sum(i.gross - i.d_m - i.commission - i.pg_fee) AS items_payout,
			   coalesce((SELECT s.carry_out FROM coupon.settlement s
						  WHERE s.merchant_id = i.merchant_id ORDER BY s.id DESC LIMIT 1), 0) AS carry_in
		  FROM item i
		 GROUP BY i.merchant_id),
	made AS (
		INSERT INTO coupon.settlement (merchant_id, period_end, sales, refunds, gross,
									   discount_merchant, discount_platform, charged, commission,
									   pg_fee, items_payout, carry_in, payout, carry_out, status)
		SELECT b.merchant_id, m.cutoff, b.sales, b.refunds, b.gross, b.d_m, b.d_p,
			   b.charged, b.commission, b.pg_fee, b.items_payout, b.carry_in,
			   greatest(b.items_payout + b.carry_in, 0), least(b.items_payout + b.carry_in, 0),
			   CASE WHEN b.items_payout + b.carry_in < 0 THEN 'carried_forward' ELSE 'payable' END
		  FROM batch b JOIN m ON m.id = b.merchant_id
		RETURNING *),
	stored AS (
		INSERT INTO coupon.settlement_item (settlement_id, merchant_id, payment_id, refund_id, kind,
											policy_id, occurred_at, gross, discount_merchant,
											discount_platform, charged, base, commission, pg_fee, payout)
		SELECT made.id, i.merchant_id, i.payment_id, i.refund_id, i.kind, i.policy_id, i.occurred_at,
			   i.gross, i.d_m, i.d_p, i.gross - i.d_m - i.d_p, i.gross - i.d_m, i.commission, i.pg_fee,
			   i.gross - i.d_m - i.commission - i.pg_fee
		  FROM item i JOIN made ON made.merchant_id = i.merchant_id)
	SELECT * FROM made ORDER BY merchant_id;
END
$fn$;
COMMENT ON FUNCTION coupon.run_settlement(timestamptz) IS
'Builds one settlement batch per merchant from the sales and refunds that happened before until minus the merchant''s settlement_delay_days and that no batch holds yet, and returns the batches. Each item is settled exactly once: concurrent runs queue, and a repeated run adds nothing. Refunds are negative items (adjustments when their sale was settled earlier); a negative total is carried forward. Merchants with nothing new get no batch. A merchant funds (discount_merchant) only discounts of its own policies; elsewhere the platform funds them. Errors: PT400 missing_argument; PT400 invalid_cutoff (until later than now).';

-- only the merchant's side creates its payments: no customer can claim a
-- merchant's order id first (pay() also checks the caller in C)
REVOKE EXECUTE ON FUNCTION coupon.pay(bigint, text, text, bigint, bigint[], text, text) FROM coupon_customer;

CREATE FUNCTION coupon.sees_merchant(merchant_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_sees_merchant'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.sees_merchant(bigint) IS
'Internal: whether the calling session may see the merchant''s rows in a shared view (false for another merchant when the session carries a merchant_id claim, and for customers); used by policy_stats.';
REVOKE EXECUTE ON FUNCTION coupon.sees_merchant(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.sees_merchant(bigint) TO coupon_admin, coupon_app;

-- a session bound to one merchant sees only that merchant's policies
CREATE OR REPLACE VIEW coupon.policy_stats AS
SELECT p.id AS policy_id,
	   p.merchant_id,
	   p.name,
	   p.issue_method,
	   p.status,
	   p.total_quantity,
	   (SELECT sum(s.remaining) FROM coupon.policy_stock s WHERE s.policy_id = p.id)::bigint AS stock_remaining,
	   count(c.id) FILTER (WHERE c.status = 'unclaimed') AS unclaimed,
	   count(c.id) FILTER (WHERE c.status <> 'unclaimed') AS issued,
	   count(c.id) FILTER (WHERE c.status = 'issued') AS available,
	   count(c.id) FILTER (WHERE c.status = 'reserved') AS reserved,
	   count(c.id) FILTER (WHERE c.status = 'used') AS used,
	   count(c.id) FILTER (WHERE c.status = 'expired') AS expired,
	   count(c.id) FILTER (WHERE c.status = 'cancelled') AS cancelled,
	   p.budget,
	   p.budget_used
  FROM coupon.policy p
  LEFT JOIN coupon.coupon c ON c.policy_id = p.id
 WHERE coupon.sees_merchant(p.merchant_id)
 GROUP BY p.id;
COMMENT ON VIEW coupon.policy_stats IS 'Per policy: stock left, coupons by status and budget used. A session with a merchant_id claim sees only that merchant''s policies.';
