-- bench/sql/baseline.sql: the plain-SQL baselines the extension is compared with.
--
-- Loaded by bench/run.sh into the benchmark database after CREATE EXTENSION
-- coupon.  Nothing here is part of the extension; it is what an application
-- would write without it.

CREATE SCHEMA IF NOT EXISTS bench;

/*
 * bench.validate_sql: the rules of coupon.validate() (src/discount.c,
 * discount_evaluate(), and hold_evaluate() in src/hold.c) written as one SQL
 * statement over the same tables (coupon, its policy, the issuing merchant
 * and the merchant where it is spent), in the same order, with the same
 * reason names.  Keep it in step with those files: run.sh asks both the same
 * questions and prints how many answers differ.  LANGUAGE sql, STABLE, RETURNS TABLE (one row), no SET clause and
 * not SECURITY DEFINER: the planner inlines it into the caller's query
 * (SELECT * FROM bench.validate_sql(...)), so it is the fastest plain-SQL
 * form, not a straw man.
 */
CREATE OR REPLACE FUNCTION bench.validate_sql(
	coupon_id bigint,
	user_id text,
	merchant_id bigint,
	order_amount bigint)
RETURNS TABLE (ok boolean, discount bigint, reason text)
LANGUAGE sql STABLE
AS $$
	WITH f AS (
		SELECT c.user_id AS holder, c.status AS c_status, c.balance, c.expires_at,
			   p.status AS p_status, p.discount_type,
			   p.discount_value, p.max_discount, p.min_order_amount, p.valid_from,
			   p.budget, p.budget_used,
			   m.status = 'active' AS issuer_active, sm.id IS NOT NULL AS merchant_exists,
			   sm.status = 'active' AS merchant_active,
			   CASE WHEN p.allowed_merchants IS NULL THEN $3 = p.merchant_id
					ELSE coalesce($3 = ANY (p.allowed_merchants), false) END AS allowed
		  FROM coupon.coupon c JOIN coupon.policy p ON p.id = c.policy_id
		  JOIN coupon.merchant m ON m.id = p.merchant_id
		  LEFT JOIN coupon.merchant sm ON sm.id = $3
		 WHERE c.id = $1
	), d AS (
		SELECT f.*,
			   greatest(least(CASE f.discount_type
								  WHEN 'fixed' THEN f.discount_value
								  WHEN 'percent' THEN
									  least((($4 / 10000) * f.discount_value
											 + (($4 % 10000) * f.discount_value) / 10000),
											coalesce(f.max_discount, $4))
								  WHEN 'balance' THEN f.balance
								  ELSE 0 END, $4), 0) AS amount
		  FROM f
	), r AS (
		SELECT d.amount,
			   CASE
				   WHEN d.holder IS NULL OR NOT d.allowed THEN 'coupon_not_found'
				   WHEN d.holder <> $2 THEN 'not_owner'
				   WHEN d.p_status IN ('draft', 'paused') THEN 'policy_inactive'
				   WHEN NOT d.issuer_active THEN 'merchant_inactive'
				   WHEN d.c_status = 'unclaimed' THEN 'coupon_not_found'
				   WHEN d.c_status = 'reserved' THEN 'coupon_reserved'
				   WHEN d.c_status = 'used' THEN 'coupon_used'
				   WHEN d.c_status = 'expired' THEN 'expired'
				   WHEN d.c_status = 'cancelled' THEN 'coupon_cancelled'
				   WHEN NOT d.merchant_exists THEN 'merchant_not_found'
				   WHEN NOT d.merchant_active THEN 'merchant_inactive'
				   WHEN d.expires_at IS NOT NULL AND transaction_timestamp() >= d.expires_at THEN 'expired'
				   WHEN d.valid_from IS NOT NULL AND transaction_timestamp() < d.valid_from THEN 'not_yet_valid'
				   WHEN $4 < d.min_order_amount THEN 'min_order_amount'
				   WHEN d.discount_type = 'balance' AND d.balance <= 0 THEN 'coupon_used'
				   WHEN d.budget IS NOT NULL AND d.amount > d.budget - d.budget_used THEN 'budget_exhausted'
				   ELSE 'ok'
			   END AS reason
		  FROM d
	)
	SELECT coalesce(r.reason, 'coupon_not_found') = 'ok',
		   CASE WHEN r.reason = 'ok' THEN r.amount ELSE 0 END,
		   coalesce(r.reason, 'coupon_not_found')
	  FROM (SELECT 1) one LEFT JOIN r ON true
$$;

/*
 * The counter baseline for first-come-first-served issuance: one row per
 * policy with an `issued` counter, decided and written by one conditional
 * UPDATE (the hot row the extension's shards avoid), then a coupon row
 * inserted into a table shaped like coupon.coupon (same columns, checks,
 * indexes and a foreign key to its policy), in one transaction.
 */
CREATE TABLE IF NOT EXISTS bench.bench_policy (
	id bigint PRIMARY KEY,
	total bigint NOT NULL CHECK (total > 0),
	issued bigint NOT NULL DEFAULT 0 CHECK (issued >= 0 AND issued <= total)
);

CREATE TABLE IF NOT EXISTS bench.bench_coupon (LIKE coupon.coupon INCLUDING ALL);
ALTER TABLE bench.bench_coupon
	ADD FOREIGN KEY (policy_id) REFERENCES bench.bench_policy (id);

-- one attempt: the new coupon id, or NULL when the policy is sold out
CREATE OR REPLACE FUNCTION bench.issue_counter(policy_id bigint, user_id text)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	new_id bigint;
BEGIN
	UPDATE bench.bench_policy SET issued = issued + 1
	 WHERE id = issue_counter.policy_id AND issued < total;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	INSERT INTO bench.bench_coupon (policy_id, user_id, status, issued_at)
	VALUES (issue_counter.policy_id, issue_counter.user_id, 'issued', now())
	RETURNING id INTO new_id;
	RETURN new_id;
END
$$;

/*
 * The small-stock workload's wrapper: pgbench 15 aborts a client on any
 * error, so the sold_out answer (PT409) becomes a word.  The EXCEPTION block
 * costs a subtransaction per call, which the extension's own workload rows
 * (fcfs big stock) do not pay.
 */
CREATE OR REPLACE FUNCTION bench.issue_or_sold_out(policy_id bigint, user_id text)
RETURNS text
LANGUAGE plpgsql
AS $$
BEGIN
	PERFORM coupon.issue(issue_or_sold_out.policy_id, issue_or_sold_out.user_id);
	RETURN 'issued';
EXCEPTION WHEN SQLSTATE 'PT409' THEN
	RETURN 'sold_out';
END
$$;

/*
 * Pre-issue n coupons of a policy through coupon.issue(), coupon id i going
 * to user 'u' || (i % nusers), so a pgbench script can name the holder of
 * any coupon it picks.  Returns the first id; the ids are first .. first+n-1
 * (checked: raises if another session took ids meanwhile).
 */
CREATE OR REPLACE FUNCTION bench.issue_pool(policy_id bigint, n integer, nusers integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	first_id bigint := coalesce(pg_sequence_last_value('coupon.coupon_id_seq'), 0) + 1;
	bad bigint;
BEGIN
	PERFORM coupon.issue(issue_pool.policy_id, 'u' || ((first_id + g) % nusers))
	   FROM generate_series(0, n - 1) g;
	SELECT n - count(*) FILTER (WHERE c.policy_id = issue_pool.policy_id
								   AND c.user_id = 'u' || (c.id % nusers))
	  INTO bad
	  FROM coupon.coupon c
	 WHERE c.id BETWEEN first_id AND first_id + n - 1;
	IF bad > 0 THEN
		RAISE EXCEPTION 'pool of policy % is not contiguous (% misplaced coupons)',
			issue_pool.policy_id, bad;
	END IF;
	RETURN first_id;
END
$$;
