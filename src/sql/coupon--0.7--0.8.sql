/* coupon--0.7--0.8.sql
 *
 * reconcile() on a day of any size: the gateway's transaction list comes as
 * rows (gateway_transactions is now a set-returning function reading the
 * list page by page into a tuplestore) and is summed per order into a
 * temporary table before any row is touched; before 0.8 the list was one
 * jsonb value, which fails near a million transactions. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.8'" to load this file. \quit

DROP FUNCTION coupon.gateway_transactions(timestamptz, timestamptz);
CREATE FUNCTION coupon.gateway_transactions(start_at timestamptz, end_at timestamptz)
RETURNS TABLE (transaction_key text, order_id text, type text, amount bigint)
AS 'MODULE_PATHNAME', 'coupon_gateway_transaction_rows'
LANGUAGE C VOLATILE STRICT ROWS 100000;
COMMENT ON FUNCTION coupon.gateway_transactions(timestamptz, timestamptz) IS
'Internal: the gateway''s transactions between two instants (GET /v1/transactions, read page by page, coupon.reconcile_page_size at a time), one row each: its transactionKey, orderId, type (APPROVE or CANCEL) and amount. Raises 08006 when the gateway does not answer and 58000 when it answers with an error or with something that is not a list of transactions.';
REVOKE ALL ON FUNCTION coupon.gateway_transactions(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.gateway_transactions(timestamptz, timestamptz) TO coupon_admin;

CREATE OR REPLACE FUNCTION coupon.reconcile(day date)
RETURNS SETOF coupon.reconciliation_issue
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	from_at timestamptz := day::timestamptz;
	to_at timestamptz := (day + 1)::timestamptz - interval '1 microsecond';
BEGIN
	IF day IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'day must not be null', '{"argument": "day"}');
	END IF;
	-- the gateway first, before any row is touched: no locks are held while
	-- it answers; its list, summed per order, goes to a temporary table (a
	-- second call in one transaction replaces the first one's)
	IF to_regclass('pg_temp.coupon_reconcile_gateway') IS NOT NULL THEN
		DROP TABLE pg_temp.coupon_reconcile_gateway;
	END IF;
	CREATE TEMPORARY TABLE coupon_reconcile_gateway ON COMMIT DROP AS
	SELECT t.order_id,
		   sum(t.amount) FILTER (WHERE t.type = 'APPROVE') AS approved,
		   coalesce(sum(t.amount) FILTER (WHERE t.type = 'CANCEL'), 0) AS cancelled,
		   count(*) FILTER (WHERE t.type = 'APPROVE') AS approvals,
		   CASE WHEN t.order_id ~ '^cp-[0-9]{1,18}$' THEN substr(t.order_id, 4)::bigint END AS payment_id
	  FROM coupon.gateway_transactions(from_at, to_at) t
	 GROUP BY t.order_id;
	ANALYZE pg_temp.coupon_reconcile_gateway;

	DELETE FROM coupon.reconciliation_issue r WHERE r.day = reconcile.day;
	RETURN QUERY
	WITH gp AS (
		SELECT * FROM pg_temp.coupon_reconcile_gateway),
	-- our side of the day: approvals recorded that day, refunds recorded that day
	d AS (
		SELECT p.id AS payment_id, 'cp-' || p.id AS order_id, p.approved_amount AS approved
		  FROM coupon.payment p
		 WHERE p.approved_at BETWEEN from_at AND to_at),
	dr AS (
		SELECT f.payment_id, sum(f.amount) AS refunded
		  FROM coupon.payment_refund f
		 WHERE f.refunded_at BETWEEN from_at AND to_at
		 GROUP BY 1),
	found AS (
		-- approved here, no approval there
		SELECT 'missing_at_gateway'::text AS kind, d.payment_id, d.order_id,
			   NULL::bigint AS gateway_amount, d.approved AS database_amount,
			   format('payment %s was approved for %s here, the gateway has no approval for %s that day',
					  d.payment_id, d.approved, d.order_id) AS detail
		  FROM d LEFT JOIN gp ON gp.order_id = d.order_id
		 WHERE d.approved > 0 AND coalesce(gp.approvals, 0) = 0
		UNION ALL
		-- approved there, unknown or unapproved here
		SELECT 'missing_in_database', gp.payment_id, gp.order_id, gp.approved::bigint, p.approved_amount,
			   CASE WHEN p.id IS NULL THEN format('the gateway approved %s for %s, which is no payment here',
												  gp.approved, gp.order_id)
					ELSE format('the gateway approved %s for %s, payment %s is %s with nothing approved',
								gp.approved, gp.order_id, p.id, p.state) END
		  FROM gp LEFT JOIN coupon.payment p ON p.id = gp.payment_id
		 WHERE gp.approvals > 0 AND (p.id IS NULL OR p.approved_amount = 0)
		UNION ALL
		-- both approved, different amounts
		SELECT 'amount_mismatch', p.id, gp.order_id, gp.approved::bigint, p.approved_amount,
			   format('the gateway approved %s for %s, payment %s has %s', gp.approved, gp.order_id,
					  p.id, p.approved_amount)
		  FROM gp JOIN coupon.payment p ON p.id = gp.payment_id
		 WHERE gp.approvals > 0 AND p.approved_amount > 0 AND gp.approved <> p.approved_amount
		UNION ALL
		-- refunds of the day that the two sides count differently
		SELECT 'status_mismatch', coalesce(gp.payment_id, dr.payment_id),
			   coalesce(gp.order_id, 'cp-' || dr.payment_id), gp.cancelled::bigint, coalesce(dr.refunded, 0),
			   format('the gateway cancelled %s of %s that day, the database refunded %s',
					  coalesce(gp.cancelled, 0), coalesce(gp.order_id, 'cp-' || dr.payment_id),
					  coalesce(dr.refunded, 0))
		  FROM gp FULL JOIN dr ON dr.payment_id = gp.payment_id
		 WHERE coalesce(gp.cancelled, 0) <> coalesce(dr.refunded, 0)),
	stored AS (
		INSERT INTO coupon.reconciliation_issue (day, kind, payment_id, order_id, gateway_amount,
												 database_amount, detail)
		SELECT reconcile.day, f.kind, f.payment_id, f.order_id, f.gateway_amount, f.database_amount, f.detail
		  FROM found f
		RETURNING *)
	SELECT * FROM stored ORDER BY order_id, kind;
END
$fn$;

-- every SECURITY DEFINER function and every trigger function runs with a
-- search path of its own: only built-in objects resolve unqualified, and
-- pg_temp comes last (before 0.8 the C functions pushed such a path around
-- each SQL statement they ran, with an API PostgreSQL 17 removed)
ALTER FUNCTION coupon.cancel_payment(bigint,text,bigint,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.confirm(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.create_merchant(text,text,integer,integer,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.create_policy(bigint,text,text,bigint,text,bigint,integer,bigint,bigint,timestamp with time zone,timestamp with time zone,integer,timestamp with time zone,timestamp with time zone,bigint[],integer,bigint,boolean,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.expire_coupons(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.expire_reservations(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.forbid_change() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.forbid_delete() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.generate_codes(bigint,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.issue(bigint,text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.note_fact_change() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.pay(bigint,text,text,bigint,bigint[],text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.payment_status(bigint,integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.process_payments(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.record_refund() SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.redeem_code(text,text) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.release(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.reserve(bigint,text,bigint,text,bigint,interval) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.retry_payment(bigint) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION coupon.set_policy_status(bigint,text) SET search_path = pg_catalog, pg_temp;

-- validate()'s copies of policies and merchants go on PostgreSQL's own
-- invalidation: the fact-change triggers register a relcache invalidation
-- of the changed table and hold SHARE on this relation until their
-- transaction ends (docs/concepts.md, "validate()'s copies").  Before 0.8
-- they counted writers in the extension's shared memory, which needed
-- shared_preload_libraries and refused PREPARE TRANSACTION.
CREATE TABLE coupon.fact_change_guard ();
COMMENT ON TABLE coupon.fact_change_guard IS
'Never holds rows; a lock only: a transaction that changed a policy or merchant holds SHARE on it until it ends, after its invalidation went out, and validate() uses its copies only when it can take ROW EXCLUSIVE at once.';

COMMENT ON TRIGGER policy_fact_change ON coupon.policy IS 'Drops every session''s copies of policies (validate()''s facts) when the change of a policy without a budget (before or after) commits; fires even in replica sessions.';
COMMENT ON TRIGGER merchant_fact_change ON coupon.merchant IS 'Drops every session''s copies of merchants (validate()''s facts) when the change commits; fires even in replica sessions.';
COMMENT ON FUNCTION coupon.note_fact_change() IS
'Trigger: registers a relcache invalidation of the changed table (sent when the transaction commits, at COMMIT PREPARED for a prepared one) and holds SHARE on coupon.fact_change_guard until the transaction ends.';
-- (like every table of the extension: row level security on, dumped)
ALTER TABLE coupon.fact_change_guard ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('coupon.fact_change_guard', '');

-- the reason table of the error contract, as data: the SQL functions raise
-- through raise_error(), whose SQLSTATE and hint come from it, and
-- docs/errors.md is checked against reasons() (load test reasons)
CREATE FUNCTION coupon.reasons()
RETURNS TABLE (reason text, sqlstate text, http_status integer, hint text)
AS 'MODULE_PATHNAME', 'coupon_reasons'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.reasons() IS
'The reason codes of the error contract: each reason, its SQLSTATE (PTnnn), the HTTP status PostgREST answers with, and the hint every error of that reason carries.';
REVOKE ALL ON FUNCTION coupon.reasons() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.reasons() TO coupon_admin, coupon_app, coupon_merchant, coupon_customer;

CREATE FUNCTION coupon.raise_error(reason text, message text, detail jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'coupon_raise_error'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.raise_error(text, text, jsonb) IS
'Internal: raises a business error of the given reason: its SQLSTATE and hint from reasons(), the message, and DETAIL {"reason": ...} followed by the members of detail.';
-- (the SECURITY DEFINER functions call it as its owner; schedule_jobs() as
-- coupon_admin; pre_request() as whichever role PostgREST runs it as)
REVOKE ALL ON FUNCTION coupon.raise_error(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.raise_error(text, text, jsonb) TO coupon_admin;

CREATE OR REPLACE FUNCTION coupon.run_settlement(until timestamptz DEFAULT date_trunc('day', now()))
RETURNS SETOF coupon.settlement
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $fn$
DECLARE
	problem record;
BEGIN
	IF until IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'until must not be null', '{"argument": "until"}');
	END IF;
	-- a batch is final: it may only hold what has already happened
	IF until > now() THEN
		PERFORM coupon.raise_error('invalid_cutoff', format('until %s is later than now', until),
								   '{"argument": "until"}');
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
	-- the sums are numeric; a batch whose totals all stay within 2^62 fits
	-- its bigint columns, carry included
	judged AS (
		SELECT b.*, greatest(abs(b.gross), abs(b.d_m), abs(b.d_p), abs(b.charged), abs(b.commission),
							 abs(b.pg_fee), abs(b.items_payout)) <= 4611686018427387904 AS fits
		  FROM batch b),
	-- one merchant's batch that does not fit is reported and left out,
	-- its items unsettled; it does not stop the others
	skipped AS (
		INSERT INTO coupon.settlement_problem (merchant_id, period_end, reason, detail)
		SELECT j.merchant_id, m.cutoff, 'totals_out_of_range',
			   jsonb_build_object('items', j.sales + j.refunds, 'gross', j.gross::text,
								  'charged', j.charged::text, 'items_payout', j.items_payout::text)
		  FROM judged j JOIN m ON m.id = j.merchant_id
		 WHERE NOT j.fits),
	made AS (
		INSERT INTO coupon.settlement (merchant_id, period_end, sales, refunds, gross,
									   discount_merchant, discount_platform, charged, commission,
									   pg_fee, items_payout, carry_in, payout, carry_out, status)
		SELECT b.merchant_id, m.cutoff, b.sales, b.refunds, b.gross, b.d_m, b.d_p,
			   b.charged, b.commission, b.pg_fee, b.items_payout, b.carry_in,
			   greatest(b.items_payout + b.carry_in, 0), least(b.items_payout + b.carry_in, 0),
			   CASE WHEN b.items_payout + b.carry_in < 0 THEN 'carried_forward' ELSE 'payable' END
		  FROM judged b JOIN m ON m.id = b.merchant_id
		 WHERE b.fits
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

	FOR problem IN SELECT * FROM coupon.settlement_problem p
					WHERE p.created_at = now() AND p.period_end <= until ORDER BY p.merchant_id LOOP
		RAISE WARNING 'merchant % was not settled: its batch until % has totals out of range', problem.merchant_id, problem.period_end
			USING DETAIL = problem.detail::text,
				  HINT = 'Settle it with earlier cutoffs, a shorter period at a time; see coupon.settlement_problem.';
	END LOOP;
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
		PERFORM coupon.raise_error('missing_argument',
								   format('%s must not be null', CASE WHEN from_date IS NULL THEN 'from_date' ELSE 'to_date' END),
								   jsonb_build_object('argument', CASE WHEN from_date IS NULL THEN 'from_date' ELSE 'to_date' END));
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

CREATE OR REPLACE FUNCTION coupon.schedule_jobs(settlement_cron text DEFAULT '10 0 * * *')
RETURNS TABLE (jobname text, schedule text, command text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	PERFORM coupon.require_pg_cron();
	IF settlement_cron IS NULL OR settlement_cron !~ '^\S+(\s+\S+){4}$' THEN
		PERFORM coupon.raise_error('invalid_schedule', 'settlement_cron must be a cron schedule of five fields');
	END IF;
	-- scheduling a known name again updates the job: idempotent
	BEGIN
		PERFORM cron.schedule('coupon-settlement', settlement_cron, 'SELECT count(*) FROM coupon.run_settlement()');
	EXCEPTION WHEN invalid_parameter_value THEN
		-- five fields pg_cron cannot read ('61 * * * *')
		PERFORM coupon.raise_error('invalid_schedule', 'settlement_cron must be a cron schedule of five fields');
	END;
	PERFORM cron.schedule('coupon-expire', '* * * * *',
						  'SELECT coupon.expire_reservations(10000), coupon.expire_coupons(100000)');
	PERFORM cron.schedule('coupon-purge', '30 3 * * *', 'SELECT coupon.purge()');
	RETURN QUERY SELECT j.jobname::text, j.schedule::text, j.command::text
				   FROM cron.job j WHERE j.jobname LIKE 'coupon-%' AND j.username = current_user
				  ORDER BY j.jobname;
END
$fn$;

CREATE OR REPLACE FUNCTION coupon.purge(older_than interval DEFAULT '24 hours')
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	n bigint;
BEGIN
	IF older_than IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'older_than must not be null', '{"argument": "older_than"}');
	END IF;
	IF older_than < interval '24 hours' THEN
		PERFORM coupon.raise_error('invalid_ttl', 'older_than must be at least 24 hours', '{"argument": "older_than"}');
	END IF;
	DELETE FROM coupon.idempotency_key WHERE created_at < now() - older_than;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$fn$;

-- user_coupons() in a session bound to a merchant lists only the coupons
-- that merchant can take (before 0.8 it listed the user's coupons of every
-- merchant: load test foreign_rows)
CREATE FUNCTION coupon.sees_coupon(issuer_id bigint, allowed_merchants bigint[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_sees_coupon'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.sees_coupon(bigint, bigint[]) IS
'Internal: whether the calling session may see a coupon of a policy with this issuer and allowed_merchants in user_coupons(): a customer its own everywhere, a session with a merchant_id claim those its merchant can take, the platform all.';
REVOKE ALL ON FUNCTION coupon.sees_coupon(bigint, bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.sees_coupon(bigint, bigint[]) TO coupon_admin;

CREATE OR REPLACE FUNCTION coupon.user_coupons(user_id text, status text DEFAULT NULL)
RETURNS TABLE (
	coupon_id bigint,
	policy_id bigint,
	merchant_id bigint,
	policy_name text,
	discount_type text,
	discount_value bigint,
	max_discount bigint,
	min_order_amount bigint,
	stackable boolean,
	status text,
	balance bigint,
	issued_at timestamptz,
	valid_from timestamptz,
	expires_at timestamptz,
	used_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
	SELECT c.id, p.id, p.merchant_id, p.name, p.discount_type, p.discount_value,
		   p.max_discount, p.min_order_amount, p.stackable, c.status, c.balance,
		   c.issued_at, p.valid_from, c.expires_at, c.used_at
	  FROM coupon.coupon c
	  JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE coupon.check_acting_user($1)
	   AND c.user_id = $1
	   AND ($2 IS NULL OR c.status = $2)
	   AND coupon.sees_coupon(p.merchant_id, p.allowed_merchants)
	 ORDER BY c.id
$$;

/* ------------------------------------------------------------ the HTTP front
 * PostgREST (docs/postgrest.md): merchants' client credentials, the
 * pre-request function, trace ids, the Idempotency-Key header, and the
 * anonymous and monitoring roles.  The login role PostgREST connects as
 * (the authenticator) is made by scripts/postgrest_roles.sql, which an
 * operator runs with its password. */

-- like the other roles: cluster-wide, made when missing, left by DROP EXTENSION
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['coupon_anonymous', 'coupon_monitor']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;
GRANT USAGE ON SCHEMA coupon TO coupon_anonymous, coupon_monitor;

ALTER TABLE coupon.merchant
	ADD COLUMN previous_secret_hash text,
	ADD COLUMN previous_secret_until timestamptz;
COMMENT ON COLUMN coupon.merchant.client_id IS 'The merchant''s client id for the partner API (merchant_credentials()); NULL until issued or after a revoke.';
COMMENT ON COLUMN coupon.merchant.client_secret_hash IS 'SHA-256 (hex) of the current client secret; the secret itself is shown once and never stored.';
COMMENT ON COLUMN coupon.merchant.previous_secret_hash IS 'SHA-256 (hex) of the secret before the last rotation, accepted until previous_secret_until.';
COMMENT ON COLUMN coupon.merchant.previous_secret_until IS 'End of the grace period of the previous secret.';

-- trace ids: on the payment (as before) and now on each of its events,
-- copied by a trigger (so the module's own statements, the same for 0.7
-- and 0.8 databases, need not name the column)
ALTER TABLE coupon.payment_event ADD COLUMN trace_id text;
COMMENT ON COLUMN coupon.payment_event.trace_id IS 'The trace id of the payment (coupon.trace_id when it was created, e.g. from the X-Trace-Id header), copied when the event is written.';
CREATE FUNCTION coupon.copy_trace_id() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	NEW.trace_id := (SELECT p.trace_id FROM coupon.payment p WHERE p.id = NEW.payment_id);
	RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION coupon.copy_trace_id() IS 'Trigger: an event carries the trace id of its payment.';
REVOKE ALL ON FUNCTION coupon.copy_trace_id() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.copy_trace_id() TO coupon_admin;
CREATE TRIGGER payment_event_trace_id BEFORE INSERT ON coupon.payment_event
	FOR EACH ROW EXECUTE FUNCTION coupon.copy_trace_id();
COMMENT ON TRIGGER payment_event_trace_id ON coupon.payment_event IS 'Copies the payment''s trace id onto each of its events.';
COMMENT ON COLUMN coupon.payment.trace_id IS 'The request''s trace id (coupon.trace_id, set by pre_request() from X-Trace-Id or traceparent), or a random one; sent to the gateway with each call.';

-- idempotency keys are scoped per merchant and per acting client or customer
ALTER TABLE coupon.idempotency_key ADD COLUMN actor text NOT NULL DEFAULT '';
ALTER TABLE coupon.idempotency_key DROP CONSTRAINT idempotency_key_pkey,
	ADD PRIMARY KEY (merchant_id, actor, key);
COMMENT ON COLUMN coupon.idempotency_key.actor IS 'Who used the key within the merchant: ''client:<client_id>'' (header credentials), ''user:<sub>'' (a customer), or '''' (a trusted caller).';

CREATE FUNCTION coupon.merchant_credentials(merchant_id bigint, grace interval DEFAULT '1 hour')
RETURNS TABLE (client_id text, client_secret text, previous_valid_until timestamptz)
AS 'MODULE_PATHNAME', 'coupon_merchant_credentials'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.merchant_credentials(bigint, interval) IS
'Issues the merchant''s client id (once) and a new client secret, shown this once and stored only hashed; the previous secret stays valid for grace (0 to 7 days; 0 ends it now), until previous_valid_until. The platform, or the merchant itself.';

CREATE FUNCTION coupon.revoke_merchant_credentials(merchant_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_revoke_merchant_credentials'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.revoke_merchant_credentials(bigint) IS
'Ends the merchant''s client id and every secret at once; true if it had credentials. The platform, or the merchant itself.';

CREATE FUNCTION coupon.authenticate_client(client_id text, client_secret text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'coupon_authenticate_client'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.authenticate_client(text, text) IS
'Internal: the merchant whose client credentials these are (secrets compared in constant time), or PT401 invalid_credentials; failures per client id are throttled (PT429 too_many_credential_attempts). For pre_request().';

-- requests per minute per client of a merchant (pre_request(), ratelimit.c)
ALTER TABLE coupon.merchant ADD COLUMN rate_limit_per_minute integer
	CHECK (rate_limit_per_minute BETWEEN 1 AND 10000000);
COMMENT ON COLUMN coupon.merchant.rate_limit_per_minute IS 'Requests per minute each client of the merchant may make through PostgREST (a burst of as many, then this rate); NULL: no limit.';

CREATE FUNCTION coupon.take_request_token(merchant_id bigint, client text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'coupon_take_request_token'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.take_request_token(bigint, text) IS
'Internal: milliseconds the merchant''s client must wait before this request (0: go on; the request is counted), under rate_limit_per_minute, in a token bucket in shared memory. For pre_request().';

CREATE FUNCTION coupon.set_rate_limit(merchant_id bigint, per_minute integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF set_rate_limit.merchant_id IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'merchant_id must not be null', '{"argument": "merchant_id"}');
	END IF;
	IF per_minute NOT BETWEEN 1 AND 10000000 THEN
		PERFORM coupon.raise_error('invalid_limit', 'per_minute must be between 1 and 10^7, or NULL for no limit',
								   '{"argument": "per_minute"}');
	END IF;
	PERFORM coupon.check_acting_merchant(set_rate_limit.merchant_id);
	UPDATE coupon.merchant m SET rate_limit_per_minute = per_minute WHERE m.id = set_rate_limit.merchant_id;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('merchant_not_found', format('merchant %s does not exist', set_rate_limit.merchant_id),
								   jsonb_build_object('merchant_id', set_rate_limit.merchant_id));
	END IF;
	RETURN per_minute;
END
$fn$;
COMMENT ON FUNCTION coupon.set_rate_limit(bigint, integer) IS
'Sets how many requests per minute each client of the merchant may make through PostgREST (NULL: no limit). The platform (coupon_admin, coupon_app).';

CREATE FUNCTION coupon.pre_request()
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	headers jsonb := coalesce(nullif(current_setting('request.headers', true), '')::jsonb, '{}');
	claims jsonb := coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb, '{}');
	trace text;
	merchant bigint;
	client text;
	wait_ms bigint;
	r record;
BEGIN
	-- the trace id: X-Trace-Id, else traceparent's trace-id, else a new one
	trace := CASE WHEN headers ->> 'x-trace-id' ~ '^[A-Za-z0-9._-]{1,64}$' THEN headers ->> 'x-trace-id'
				  ELSE substring(headers ->> 'traceparent' FROM '^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$')
			 END;
	IF trace IS NULL THEN
		trace := replace(gen_random_uuid()::text, '-', '');
	END IF;
	PERFORM set_config('coupon.trace_id', trace, true);
	PERFORM set_config('response.headers', jsonb_build_array(jsonb_build_object('X-Trace-Id', trace))::text, true);

	IF headers ? 'x-client-id' OR headers ? 'x-client-secret' THEN
		-- a merchant's server with client credentials instead of a JWT
		IF claims ? 'role' OR claims ? 'merchant_id' OR claims ? 'sub' THEN
			PERFORM coupon.raise_error('invalid_credentials',
									   'send either a JWT or client credentials, not both');
		END IF;
		merchant := coupon.authenticate_client(headers ->> 'x-client-id', headers ->> 'x-client-secret');
		client := 'client:' || (headers ->> 'x-client-id');
		PERFORM set_config('role', 'coupon_merchant', true);
		PERFORM set_config('request.jwt.claims',
						   jsonb_build_object('role', 'coupon_merchant', 'merchant_id', merchant,
											  'client_id', headers ->> 'x-client-id')::text, true);
	ELSIF claims ->> 'merchant_id' ~ '^[0-9]{1,18}$' THEN
		-- a merchant's web sessions share one bucket
		merchant := (claims ->> 'merchant_id')::bigint;
		client := 'session';
	END IF;

	-- the merchant's requests per minute, per client: HTTP 429 with Retry-After
	-- (through PostgREST's own error form, which alone can set a header)
	wait_ms := coalesce(coupon.take_request_token(merchant, client), 0);
	IF wait_ms > 0 THEN
		SELECT * INTO r FROM coupon.reasons() x WHERE x.reason = 'rate_limited';
		RAISE SQLSTATE 'PGRST'
			USING MESSAGE = jsonb_build_object('code', r.sqlstate,
											   'message', 'too many requests from this client',
											   'details', jsonb_build_object('reason', r.reason)::text,
											   'hint', r.hint)::text,
				  DETAIL = jsonb_build_object('status', r.http_status,
											  'headers', jsonb_build_object('Retry-After', ceil(wait_ms / 1000.0)::text,
																		   'X-Trace-Id', trace))::text;
	END IF;
END
$fn$;
COMMENT ON FUNCTION coupon.pre_request() IS
'PostgREST''s db-pre-request: sets coupon.trace_id (from X-Trace-Id, traceparent, or new) and returns it as the X-Trace-Id response header; with X-Client-Id and X-Client-Secret headers (and no JWT), authenticates the merchant''s server and acts as coupon_merchant for that merchant (PT401 invalid_credentials otherwise); then counts the request against the merchant''s rate_limit_per_minute for that client (its web sessions share one count), answering HTTP 429 rate_limited with Retry-After when it is spent.';

REVOKE ALL ON FUNCTION coupon.merchant_credentials(bigint, interval), coupon.revoke_merchant_credentials(bigint),
	coupon.authenticate_client(text, text), coupon.pre_request() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.merchant_credentials(bigint, interval), coupon.revoke_merchant_credentials(bigint)
	TO coupon_admin, coupon_app, coupon_merchant;
GRANT EXECUTE ON FUNCTION coupon.authenticate_client(text, text) TO coupon_admin, coupon_anonymous;
REVOKE ALL ON FUNCTION coupon.take_request_token(bigint, text), coupon.set_rate_limit(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.take_request_token(bigint, text)
	TO coupon_admin, coupon_app, coupon_merchant, coupon_customer, coupon_anonymous;
GRANT EXECUTE ON FUNCTION coupon.set_rate_limit(bigint, integer) TO coupon_admin, coupon_app;
GRANT EXECUTE ON FUNCTION coupon.pre_request(), coupon.raise_error(text, text, jsonb)
	TO coupon_admin, coupon_app, coupon_merchant, coupon_customer, coupon_anonymous;

-- the monitoring role reads the workers, the stuck payments and the
-- statistics, and nothing else
GRANT SELECT ON coupon.worker_status, coupon.stuck_payments, coupon.policy_stats TO coupon_monitor;
GRANT EXECUTE ON FUNCTION coupon.worker_status_rows(), coupon.sees_merchant(bigint) TO coupon_monitor;

/* ------------------------------------------------ the merchant's own reads
 * and administration */

CREATE FUNCTION coupon.revoke_coupon(coupon_id bigint, reason text DEFAULT NULL)
RETURNS coupon.coupon
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	c coupon.coupon;
	issuer bigint;
BEGIN
	IF coupon_id IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'coupon_id must not be null', '{"argument": "coupon_id"}');
	END IF;
	IF length(reason) NOT BETWEEN 1 AND 200 THEN
		PERFORM coupon.raise_error('invalid_reason', 'reason must be 1 to 200 characters', '{"argument": "reason"}');
	END IF;
	SELECT p.merchant_id INTO issuer
	  FROM coupon.coupon k JOIN coupon.policy p ON p.id = k.policy_id
	 WHERE k.id = revoke_coupon.coupon_id;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('coupon_not_found', format('coupon %s does not exist', coupon_id),
								   jsonb_build_object('coupon_id', coupon_id));
	END IF;
	PERFORM coupon.check_acting_merchant(issuer);
	SELECT k.* INTO c FROM coupon.coupon k WHERE k.id = revoke_coupon.coupon_id FOR NO KEY UPDATE;
	IF c.status = 'issued' THEN
		UPDATE coupon.coupon k SET status = 'cancelled', updated_at = now()
		 WHERE k.id = revoke_coupon.coupon_id RETURNING k.* INTO c;
	ELSIF c.status = 'reserved' THEN
		PERFORM coupon.raise_error('coupon_reserved', format('coupon %s is held for an order; release the hold first', coupon_id),
								   jsonb_build_object('coupon_id', coupon_id));
	ELSIF c.status = 'used' THEN
		PERFORM coupon.raise_error('coupon_used', format('coupon %s was already used', coupon_id),
								   jsonb_build_object('coupon_id', coupon_id));
	ELSIF c.status <> 'cancelled' THEN
		PERFORM coupon.raise_error('invalid_status_transition',
								   format('coupon %s is %s and cannot be revoked', coupon_id, c.status),
								   jsonb_build_object('coupon_id', coupon_id));
	END IF;
	c.code_hash := NULL;
	RETURN c;
END
$fn$;
COMMENT ON FUNCTION coupon.revoke_coupon(bigint, text) IS
'Revokes an issued coupon: it becomes cancelled and can no longer be held or spent (validate() answers coupon_cancelled); a cancelled one answers as it is. A held coupon is PT409 coupon_reserved (release its hold first), a used one PT409 coupon_used, an unclaimed or expired one PT409 invalid_status_transition. The issuing merchant, or the platform. reason (1 to 200 characters) is for the caller''s records and is not stored.';

CREATE FUNCTION coupon.set_merchant_status(merchant_id bigint, status text)
RETURNS TABLE (id bigint, name text, current_status text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF set_merchant_status.merchant_id IS NULL OR set_merchant_status.status IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'merchant_id and status must not be null');
	END IF;
	IF set_merchant_status.status NOT IN ('active', 'suspended') THEN
		PERFORM coupon.raise_error('invalid_status', 'a merchant is active or suspended',
								   '{"argument": "status"}');
	END IF;
	PERFORM coupon.check_acting_merchant(set_merchant_status.merchant_id);
	RETURN QUERY
	UPDATE coupon.merchant m SET status = set_merchant_status.status
	 WHERE m.id = set_merchant_status.merchant_id
	RETURNING m.id, m.name, m.status;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('merchant_not_found',
								   format('merchant %s does not exist', set_merchant_status.merchant_id),
								   jsonb_build_object('merchant_id', set_merchant_status.merchant_id));
	END IF;
END
$fn$;
COMMENT ON FUNCTION coupon.set_merchant_status(bigint, text) IS
'Suspends (''suspended'') or resumes (''active'') a merchant: a suspended merchant''s coupons cannot be held or spent and it cannot take payments; what is in flight finishes. The platform (coupon_admin, coupon_app).';

CREATE FUNCTION coupon.find_payment(merchant_id bigint, order_id text)
RETURNS jsonb
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	y bigint;
BEGIN
	IF find_payment.merchant_id IS NULL OR find_payment.order_id IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'merchant_id and order_id must not be null');
	END IF;
	PERFORM coupon.check_acting_merchant(find_payment.merchant_id);
	SELECT p.id INTO y FROM coupon.payment p
	 WHERE p.merchant_id = find_payment.merchant_id AND p.order_id = find_payment.order_id;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('payment_not_found',
								   format('merchant %s has no payment for order %s', find_payment.merchant_id,
										  find_payment.order_id),
								   jsonb_build_object('merchant_id', find_payment.merchant_id));
	END IF;
	RETURN coupon.payment_status(y)
		|| jsonb_build_object('coupons', coalesce((
			SELECT jsonb_agg(jsonb_build_object('coupon_id', r.coupon_id, 'policy_id', k.policy_id,
												'discount', r.discount, 'hold', r.status,
												'coupon_status', k.status) ORDER BY r.coupon_id)
			  FROM coupon.reservation r JOIN coupon.coupon k ON k.id = r.coupon_id
			 WHERE r.payment_id = y), '[]'));
END
$fn$;
COMMENT ON FUNCTION coupon.find_payment(bigint, text) IS
'The merchant''s payment for an order, as payment_status() shows it, with its coupons (id, policy, discount, hold and coupon status); PT404 payment_not_found when there is none. The merchant itself, or the platform.';

CREATE FUNCTION coupon.policy_coupons(policy_id bigint, status text DEFAULT NULL)
RETURNS TABLE (coupon_id bigint, user_id text, coupon_status text, balance bigint, issued_at timestamptz,
			   expires_at timestamptz, used_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	issuer bigint;
BEGIN
	IF policy_coupons.policy_id IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'policy_id must not be null', '{"argument": "policy_id"}');
	END IF;
	SELECT p.merchant_id INTO issuer FROM coupon.policy p WHERE p.id = policy_coupons.policy_id;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('policy_not_found', format('policy %s does not exist', policy_coupons.policy_id),
								   jsonb_build_object('policy_id', policy_coupons.policy_id));
	END IF;
	PERFORM coupon.check_acting_merchant(issuer);
	RETURN QUERY
	SELECT k.id, k.user_id::text, k.status::text, k.balance::bigint, k.issued_at, k.expires_at, k.used_at
	  FROM coupon.coupon k
	 WHERE k.policy_id = policy_coupons.policy_id
	   AND (policy_coupons.status IS NULL OR k.status = policy_coupons.status)
	 ORDER BY k.id;
END
$fn$;
COMMENT ON FUNCTION coupon.policy_coupons(bigint, text) IS
'The coupons of one policy (optionally in one status), oldest first, without their code hashes. The issuing merchant, or the platform.';

CREATE VIEW coupon.merchant_stats AS
WITH issued AS (
	SELECT p.merchant_id, (k.issued_at AT TIME ZONE current_setting('TimeZone'))::date AS day, count(*) AS n
	  FROM coupon.coupon k JOIN coupon.policy p ON p.id = k.policy_id
	 WHERE k.issued_at IS NOT NULL
	 GROUP BY 1, 2),
used AS (
	-- discounts given at each merchant, by who funds them: the issuer its
	-- share when spent at the issuer, the platform the rest
	SELECT r.merchant_id, (r.updated_at AT TIME ZONE current_setting('TimeZone'))::date AS day,
		   count(*) AS n,
		   sum(coupon.round_half_up_bp(r.discount, CASE WHEN p.merchant_id = r.merchant_id
														THEN p.merchant_share_bp ELSE 0 END)) AS by_merchant,
		   sum(r.discount) AS discount
	  FROM coupon.reservation r
	  JOIN coupon.coupon k ON k.id = r.coupon_id
	  JOIN coupon.policy p ON p.id = k.policy_id
	 WHERE r.status = 'confirmed'
	 GROUP BY 1, 2),
paid AS (
	SELECT y.merchant_id, (y.completed_at AT TIME ZONE current_setting('TimeZone'))::date AS day,
		   count(*) AS n, sum(y.amount) AS gross
	  FROM coupon.payment y WHERE y.completed_at IS NOT NULL
	 GROUP BY 1, 2),
refunded AS (
	SELECT y.merchant_id, (f.refunded_at AT TIME ZONE current_setting('TimeZone'))::date AS day,
		   count(*) AS n, sum(f.amount) AS amount
	  FROM coupon.payment_refund f JOIN coupon.payment y ON y.id = f.payment_id
	 GROUP BY 1, 2),
keys AS (
	SELECT merchant_id, day FROM issued UNION SELECT merchant_id, day FROM used
	UNION SELECT merchant_id, day FROM paid UNION SELECT merchant_id, day FROM refunded)
SELECT k.merchant_id, k.day,
	   coalesce(i.n, 0) AS coupons_issued,
	   coalesce(u.n, 0) AS coupons_used,
	   coalesce(u.by_merchant, 0)::bigint AS discount_merchant,
	   coalesce(u.discount - u.by_merchant, 0)::bigint AS discount_platform,
	   coalesce(y.n, 0) AS payments,
	   coalesce(y.gross, 0)::bigint AS payments_gross,
	   coalesce(f.n, 0) AS refunds,
	   coalesce(f.amount, 0)::bigint AS refunds_amount
  FROM keys k
  LEFT JOIN issued i USING (merchant_id, day)
  LEFT JOIN used u USING (merchant_id, day)
  LEFT JOIN paid y USING (merchant_id, day)
  LEFT JOIN refunded f USING (merchant_id, day)
 WHERE coupon.sees_merchant(k.merchant_id);
COMMENT ON VIEW coupon.merchant_stats IS 'Per merchant and day (session time zone): coupons of its policies issued, coupons spent at it and the discounts given there by who funds them, payments completed and refunds. A session with a merchant_id claim sees only its merchant''s rows.';
COMMENT ON COLUMN coupon.merchant_stats.merchant_id IS 'The merchant.';
COMMENT ON COLUMN coupon.merchant_stats.day IS 'The day, in the session''s time zone.';
COMMENT ON COLUMN coupon.merchant_stats.coupons_issued IS 'Coupons of the merchant''s policies issued (or claimed by code) that day.';
COMMENT ON COLUMN coupon.merchant_stats.coupons_used IS 'Coupons spent at the merchant that day (confirmed holds).';
COMMENT ON COLUMN coupon.merchant_stats.discount_merchant IS 'Discount of those coupons the merchant funds (its share of its own policies'' coupons).';
COMMENT ON COLUMN coupon.merchant_stats.discount_platform IS 'Discount of those coupons the platform funds.';
COMMENT ON COLUMN coupon.merchant_stats.payments IS 'Payments completed that day.';
COMMENT ON COLUMN coupon.merchant_stats.payments_gross IS 'Their order amounts, before discounts.';
COMMENT ON COLUMN coupon.merchant_stats.refunds IS 'Refunds recorded that day.';
COMMENT ON COLUMN coupon.merchant_stats.refunds_amount IS 'Their amounts.';

REVOKE ALL ON FUNCTION coupon.revoke_coupon(bigint, text), coupon.set_merchant_status(bigint, text),
	coupon.find_payment(bigint, text), coupon.policy_coupons(bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.revoke_coupon(bigint, text), coupon.find_payment(bigint, text),
	coupon.policy_coupons(bigint, text) TO coupon_admin, coupon_app, coupon_merchant;
GRANT EXECUTE ON FUNCTION coupon.set_merchant_status(bigint, text) TO coupon_admin, coupon_app;
GRANT SELECT ON coupon.merchant_stats TO coupon_admin, coupon_app, coupon_merchant, coupon_monitor;
GRANT EXECUTE ON FUNCTION coupon.round_half_up_bp(bigint, integer) TO coupon_merchant, coupon_monitor;
-- a merchant reads its own statistics (the views filter by sees_merchant())
GRANT SELECT ON coupon.policy_stats TO coupon_merchant;
GRANT EXECUTE ON FUNCTION coupon.sees_merchant(bigint) TO coupon_merchant;

CREATE FUNCTION coupon.update_policy(policy_id bigint, name text DEFAULT NULL,
									 issue_ends_at timestamptz DEFAULT NULL,
									 total_quantity bigint DEFAULT NULL, budget bigint DEFAULT NULL,
									 status text DEFAULT NULL)
RETURNS coupon.policy
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	p coupon.policy;
	added bigint;
	shards bigint;
BEGIN
	IF update_policy.policy_id IS NULL THEN
		PERFORM coupon.raise_error('missing_argument', 'policy_id must not be null', '{"argument": "policy_id"}');
	END IF;
	-- the policy first, as everywhere (lock order: policy, then its stock)
	SELECT * INTO p FROM coupon.policy x WHERE x.id = update_policy.policy_id FOR NO KEY UPDATE;
	IF NOT FOUND THEN
		PERFORM coupon.raise_error('policy_not_found', format('policy %s does not exist', update_policy.policy_id),
								   jsonb_build_object('policy_id', update_policy.policy_id));
	END IF;
	PERFORM coupon.check_acting_merchant(p.merchant_id);

	-- every change is checked before the first is made
	IF length(update_policy.name) NOT BETWEEN 1 AND 200 THEN
		PERFORM coupon.raise_error('invalid_name', 'name must be 1 to 200 characters', '{"argument": "name"}');
	END IF;
	IF update_policy.issue_ends_at <= p.issue_starts_at OR update_policy.issue_ends_at > p.valid_until THEN
		PERFORM coupon.raise_error('invalid_window',
								   'issue_ends_at must be after issue_starts_at and not after valid_until',
								   '{"argument": "issue_ends_at"}');
	END IF;
	IF update_policy.total_quantity IS NOT NULL AND (p.total_quantity IS NULL
			OR update_policy.total_quantity < p.total_quantity OR update_policy.total_quantity > 1000000000) THEN
		PERFORM coupon.raise_error('invalid_quantity',
								   'total_quantity may only grow, up to 10^9, on a policy that has one',
								   '{"argument": "total_quantity"}');
	END IF;
	IF update_policy.budget IS NOT NULL AND (p.budget IS NULL
			OR update_policy.budget < p.budget_used OR update_policy.budget > 1000000000000000) THEN
		PERFORM coupon.raise_error('invalid_amount',
								   'budget may change, on a policy that has one, to no less than what it has given and at most 10^15',
								   '{"argument": "budget"}');
	END IF;
	IF update_policy.status IS NOT NULL THEN
		-- its own rules (and errors) decide the status
		PERFORM coupon.set_policy_status(update_policy.policy_id, update_policy.status);
	END IF;

	-- more stock: the units added are spread over the shards as at creation
	added := update_policy.total_quantity - p.total_quantity;
	IF added > 0 THEN
		SELECT count(*) INTO shards FROM coupon.policy_stock s WHERE s.policy_id = update_policy.policy_id;
		IF shards > 0 THEN
			UPDATE coupon.policy_stock s
			   SET remaining = s.remaining + added / shards + (s.shard < added % shards)::int
			 WHERE s.policy_id = update_policy.policy_id;
		END IF;
	END IF;
	UPDATE coupon.policy x
	   SET name = coalesce(update_policy.name, x.name),
		   issue_ends_at = coalesce(update_policy.issue_ends_at, x.issue_ends_at),
		   total_quantity = coalesce(update_policy.total_quantity, x.total_quantity),
		   budget = coalesce(update_policy.budget, x.budget)
	 WHERE x.id = update_policy.policy_id
	RETURNING * INTO p;
	RETURN p;
END
$fn$;
COMMENT ON FUNCTION coupon.update_policy(bigint, text, timestamptz, bigint, bigint, text) IS
'Changes what can safely change in a policy; a NULL argument leaves its field as it is. name (1 to 200 characters); issue_ends_at (after issue_starts_at, not after valid_until); total_quantity, which may only grow (the new units join the stock at once); budget, on a policy that has one, to no less than budget_used; status, by set_policy_status()''s rules. Every change is checked before any is made. The issuing merchant, or the platform.';
REVOKE ALL ON FUNCTION coupon.update_policy(bigint, text, timestamptz, bigint, bigint, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.update_policy(bigint, text, timestamptz, bigint, bigint, text)
	TO coupon_admin, coupon_app, coupon_merchant;

-- comments cite the repository's own documentation
COMMENT ON TABLE coupon.settlement IS 'One settlement batch per merchant and run: what the merchant is paid out (docs/settlement.md).';
COMMENT ON TABLE coupon.settlement_item IS 'One row per sale, refund or adjustment, with every figure of the settlement formulas (docs/settlement.md); each payment''s sale and each refund is settled exactly once.';
