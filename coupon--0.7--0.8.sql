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
		RAISE EXCEPTION 'day must not be null'
			USING ERRCODE = 'PT400', DETAIL = '{"reason": "missing_argument", "argument": "day"}',
				  HINT = 'Pass a value for every required argument.';
	END IF;
	-- the gateway first, before any row is touched: no locks are held while
	-- it answers; its list, summed per order, goes to a temporary table (a
	-- second call in one transaction replaces the first one's)
	DROP TABLE IF EXISTS pg_temp.coupon_reconcile_gateway;
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

-- a change of anything but budget_used (which every hold of a budgeted
-- policy changes) drops the copies and the sold-out marks: before 0.8 a
-- budgeted policy's changes did not fire
DROP TRIGGER policy_fact_change ON coupon.policy;
CREATE TRIGGER policy_fact_change AFTER UPDATE ON coupon.policy
	FOR EACH ROW WHEN (OLD.budget_used IS NOT DISTINCT FROM NEW.budget_used)
	EXECUTE FUNCTION coupon.note_fact_change();
ALTER TABLE coupon.policy ENABLE ALWAYS TRIGGER policy_fact_change;
COMMENT ON TRIGGER policy_fact_change ON coupon.policy IS 'Drops every session''s copies of policies (validate()''s facts, issue()''s sold-out marks) when the change commits; not fired by budget holds (budget_used only); fires even in replica sessions.';
COMMENT ON TRIGGER merchant_fact_change ON coupon.merchant IS 'Drops every session''s copies of merchants (validate()''s facts) when the change commits; fires even in replica sessions.';
COMMENT ON FUNCTION coupon.note_fact_change() IS
'Trigger: registers a relcache invalidation of the changed table (sent when the transaction commits, at COMMIT PREPARED for a prepared one) and holds SHARE on coupon.fact_change_guard until the transaction ends.';
-- (like every table of the extension: row level security on, dumped)
ALTER TABLE coupon.fact_change_guard ENABLE ROW LEVEL SECURITY;
SELECT pg_catalog.pg_extension_config_dump('coupon.fact_change_guard', '');
