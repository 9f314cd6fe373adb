/* coupon--0.3--0.4.sql: a settlement run that writes its items cheaply,
 * and a validate() without the cost of SET clauses.
 *
 * Writing the items was most of run_settlement's time over a million
 * payments (docs/benchmarks.md, "Settlement"): a row-by-row foreign-key check
 * per item, and an index on (merchant_id, occurred_at) that every item lands
 * in at a random place.  Batches and items are now append-only, which keeps
 * every item's batch in place without the foreign key, and settlement_report
 * reaches a merchant's items through its batches instead of that index. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.4'" to load this file. \quit

/* ---------------------------------------------------------------- tables */

ALTER TABLE coupon.settlement_item DROP CONSTRAINT settlement_item_settlement_id_fkey;
DROP INDEX coupon.settlement_item_merchant_idx;

-- each append-only table now says in its trigger's argument what to do instead
CREATE OR REPLACE FUNCTION coupon.forbid_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
		USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[0];
END
$$;
COMMENT ON FUNCTION coupon.forbid_change() IS 'Trigger: the table is append-only (the payment event log, settlement batches and items); the trigger''s argument is the hint.';
DROP TRIGGER payment_event_append_only ON coupon.payment_event;
CREATE TRIGGER payment_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.payment_event
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change('Events are never edited or removed.');
CREATE TRIGGER settlement_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.settlement
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change(
		'Settled figures are never edited or removed; a later batch corrects them with adjustments.');
CREATE TRIGGER settlement_item_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.settlement_item
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change(
		'Settled figures are never edited or removed; a later batch corrects them with adjustments.');
COMMENT ON COLUMN coupon.settlement_item.settlement_id IS 'The batch that settled it (no foreign key: batches are never removed, see the append-only triggers).';

/*
 * The one-column CHECK constraints of coupon and reservation become
 * domains.  PostgreSQL parses a table's CHECK constraints from their stored
 * text again in every statement that writes the table (ExecRelCheck, per
 * executor start), while a domain's constraints are parsed once per backend
 * into the type cache and checked only on the columns a statement assigns.
 * With the status lists among them, that parsing was about a fifth of a
 * checkout's CPU (reserve + confirm, bench/run.sh).  The multi-column
 * checks stay on the tables.
 *
 * The domains get their constraints after the columns change type, so the
 * change is a relabelling and a validating scan, not a table rewrite; the
 * view policy_stats, which reads coupon.status, is rebuilt as it was
 * (definition, comments, grants).
 */
CREATE DOMAIN coupon.external_id AS text;
COMMENT ON DOMAIN coupon.external_id IS 'An id the application gives (a user, an order): 1 to 200 characters.';
CREATE DOMAIN coupon.amount AS bigint;
COMMENT ON DOMAIN coupon.amount IS 'An amount in minor units of the currency: 0 to 10^15.';
CREATE DOMAIN coupon.coupon_status AS text;
COMMENT ON DOMAIN coupon.coupon_status IS 'A coupon''s state: unclaimed, issued, reserved, used, expired or cancelled.';
CREATE DOMAIN coupon.reservation_status AS text;
COMMENT ON DOMAIN coupon.reservation_status IS 'A reservation''s state: held, confirmed, released or expired.';

DO $do$
DECLARE
	view_def text := pg_get_viewdef('coupon.policy_stats'::regclass);
	view_comment text := obj_description('coupon.policy_stats'::regclass, 'pg_class');
	cols text[];
	col_comments text[];
	grants text[];
BEGIN
	SELECT array_agg(attname ORDER BY attnum), array_agg(col_description(attrelid, attnum) ORDER BY attnum)
	  INTO cols, col_comments
	  FROM pg_attribute WHERE attrelid = 'coupon.policy_stats'::regclass AND attnum > 0;
	SELECT array_agg(format('GRANT %s ON coupon.policy_stats TO %I', a.privilege_type, a.grantee::regrole))
	  INTO grants
	  FROM pg_class c, aclexplode(c.relacl) a
	 WHERE c.oid = 'coupon.policy_stats'::regclass AND a.grantee <> c.relowner;
	DROP VIEW coupon.policy_stats;

	ALTER TABLE coupon.coupon
		DROP CONSTRAINT coupon_user_id_check,
		DROP CONSTRAINT coupon_status_check,
		ALTER COLUMN user_id TYPE coupon.external_id,
		ALTER COLUMN status TYPE coupon.coupon_status;
	ALTER TABLE coupon.reservation
		DROP CONSTRAINT reservation_user_id_check,
		DROP CONSTRAINT reservation_order_id_check,
		DROP CONSTRAINT reservation_order_amount_check,
		DROP CONSTRAINT reservation_status_check,
		ALTER COLUMN user_id TYPE coupon.external_id,
		ALTER COLUMN order_id TYPE coupon.external_id,
		ALTER COLUMN order_amount TYPE coupon.amount,
		ALTER COLUMN status TYPE coupon.reservation_status;

	EXECUTE format('CREATE VIEW coupon.policy_stats AS %s', view_def);
	EXECUTE format('COMMENT ON VIEW coupon.policy_stats IS %L', view_comment);
	FOR i IN 1 .. cardinality(cols) LOOP
		EXECUTE format('COMMENT ON COLUMN coupon.policy_stats.%I IS %L', cols[i], col_comments[i]);
	END LOOP;
	FOR i IN 1 .. coalesce(cardinality(grants), 0) LOOP
		EXECUTE grants[i];
	END LOOP;
END
$do$;

ALTER DOMAIN coupon.external_id ADD CONSTRAINT external_id_check CHECK (length(VALUE) BETWEEN 1 AND 200);
ALTER DOMAIN coupon.amount ADD CONSTRAINT amount_check CHECK (VALUE BETWEEN 0 AND 1000000000000000);
ALTER DOMAIN coupon.coupon_status ADD CONSTRAINT coupon_status_check
	CHECK (VALUE IN ('unclaimed', 'issued', 'reserved', 'used', 'expired', 'cancelled'));
ALTER DOMAIN coupon.reservation_status ADD CONSTRAINT reservation_status_check
	CHECK (VALUE IN ('held', 'confirmed', 'released', 'expired'));

/* ------------------------------------------------------------- functions */

/*
 * validate() reads through src/fetch.c (no SPI, no name look-ups by
 * search_path) and checks the tenant itself, so it needs neither the
 * owner's rights nor settings of its own.  Each SET clause made every call
 * save and restore the settings, and SET search_path threw away the
 * session's resolved search path each time: without them a call costs
 * about a fifth less (bench/run.sh).
 */
ALTER FUNCTION coupon.validate(bigint, text, bigint, bigint) SECURITY INVOKER RESET ALL;

/*
 * The same rounding in integers when amount * bp cannot overflow (every
 * amount below 9.2e14 with a bp of 0 to 10000), numeric otherwise: a
 * settlement computes it about three times per item, and the numeric path
 * cost about 0.2 us more per call (bench/settlement.sh).
 */
CREATE OR REPLACE FUNCTION coupon.round_half_up_bp(amount bigint, bp integer)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN bp NOT BETWEEN 0 AND 10000 OR amount NOT BETWEEN -922337203685477 AND 922337203685477
			THEN sign(amount)::bigint * round(abs(amount)::numeric * bp / 10000)::bigint
			WHEN amount < 0 THEN -((-amount * bp + 5000) / 10000)
			ELSE (amount * bp + 5000) / 10000 END;

-- jit off: compiling the query's expressions cost 1.5 to 2 s per run,
-- half of a run that finds little new among a million settled payments,
-- and bought nothing in a run that settles them all (bench/settlement.sh)
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
			  SELECT sum(coupon.round_half_up_bp(r.discount, pol.merchant_share_bp))::bigint AS merchant_funded,
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
				FROM (SELECT coalesce(sum(coupon.round_half_up_bp(rs.discount, pol.merchant_share_bp)), 0)::bigint AS d_m
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

CREATE OR REPLACE FUNCTION coupon.settlement_report(merchant_id bigint, from_date date, to_date date)
RETURNS TABLE (
	day date,
	policy_id bigint,
	policy_name text,
	sales bigint,
	sales_gross bigint,
	refunds bigint,
	refunds_gross bigint,
	discount_merchant bigint,
	discount_platform bigint,
	charged bigint,
	commission bigint,
	pg_fee bigint,
	payout bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF from_date IS NULL OR to_date IS NULL THEN
		RAISE EXCEPTION '% must not be null', CASE WHEN from_date IS NULL THEN 'from_date' ELSE 'to_date' END
			USING ERRCODE = 'PT400',
				  DETAIL = format('{"reason": "missing_argument", "argument": "%s"}',
								  CASE WHEN from_date IS NULL THEN 'from_date' ELSE 'to_date' END),
				  HINT = 'Pass a value for every required argument.';
	END IF;
	RETURN QUERY
	SELECT (i.occurred_at AT TIME ZONE current_setting('TimeZone'))::date AS day,
		   i.policy_id, p.name,
		   count(*) FILTER (WHERE i.kind = 'sale'),
		   coalesce(sum(i.gross) FILTER (WHERE i.kind = 'sale'), 0)::bigint,
		   count(*) FILTER (WHERE i.kind <> 'sale'),
		   coalesce(sum(i.gross) FILTER (WHERE i.kind <> 'sale'), 0)::bigint,
		   sum(i.discount_merchant)::bigint, sum(i.discount_platform)::bigint, sum(i.charged)::bigint,
		   sum(i.commission)::bigint, sum(i.pg_fee)::bigint, sum(i.payout)::bigint
	  -- a batch holds only items from before its period_end, so the batches
	  -- ending after from_date hold every item of the range
	  FROM coupon.settlement s
	  JOIN coupon.settlement_item i ON i.settlement_id = s.id
	  LEFT JOIN coupon.policy p ON p.id = i.policy_id
	 WHERE coupon.check_acting_merchant(settlement_report.merchant_id)
	   AND s.merchant_id = settlement_report.merchant_id
	   AND s.period_end > from_date::timestamptz
	   AND i.occurred_at >= from_date::timestamptz
	   AND i.occurred_at < (to_date + 1)::timestamptz
	 GROUP BY 1, 2, 3
	 ORDER BY 1, 2 NULLS FIRST;
END
$fn$;
