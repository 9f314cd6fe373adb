-- pgTAP: invariants after a randomized workload.
--
-- Six policies (limited direct with a budget, fcfs, balance with a budget,
-- code, multi-merchant percent with a minimum order and a tight budget, and
-- one whose coupons expire) take a seeded random mix of 3000 calls:
-- issue, redeem_code, reserve (sometimes for the wrong user, merchant or
-- amount), confirm, release, lapse + expire_reservations, expire_coupons and
-- pausing/reactivating policies.  Business errors are caught and tallied;
-- anything else is a failure.  Then the books must balance.
BEGIN;
SELECT plan(40);

SELECT setseed(0.20240601);

CREATE TEMP TABLE ctx (k text PRIMARY KEY, v bigint NOT NULL) ON COMMIT DROP;
CREATE TEMP TABLE codes (code text PRIMARY KEY) ON COMMIT DROP;
CREATE TEMP TABLE tally (op text NOT NULL, outcome text NOT NULL) ON COMMIT DROP;

DO $setup$
DECLARE
	m1 bigint;
	m2 bigint;
BEGIN
	m1 := (coupon.create_merchant('tap invariants one')).id;
	m2 := (coupon.create_merchant('tap invariants two', 'KRW')).id;
	INSERT INTO ctx VALUES ('m1', m1), ('m2', m2);
	INSERT INTO ctx SELECT 'direct', id FROM coupon.create_policy(m1, 'direct limited', 'fixed', 1000,
		total_quantity => 60, per_user_limit => 2, budget => 25000);
	INSERT INTO ctx SELECT 'fcfs', id FROM coupon.create_policy(m1, 'fcfs', 'percent', 1500,
		issue_method => 'fcfs', total_quantity => 40, per_user_limit => 1, max_discount => 4000);
	INSERT INTO ctx SELECT 'balance', id FROM coupon.create_policy(m2, 'balance', 'balance', 30000,
		per_user_limit => 3, budget => 200000);
	INSERT INTO ctx SELECT 'code', id FROM coupon.create_policy(m2, 'codes', 'fixed', 800,
		issue_method => 'code', total_quantity => 40, per_user_limit => 2);
	INSERT INTO ctx SELECT 'multi', id FROM coupon.create_policy(m1, 'multi merchant', 'percent', 2000,
		total_quantity => 30, per_user_limit => NULL, min_order_amount => 5000,
		allowed_merchants => ARRAY[m1, m2], budget => 15000);
	INSERT INTO ctx SELECT 'expiring', id FROM coupon.create_policy(m2, 'expiring', 'fixed', 300,
		per_user_limit => NULL, valid_days => 1);
	INSERT INTO codes SELECT coupon.generate_codes((SELECT v FROM ctx WHERE k = 'code'), 30);
END
$setup$;

CREATE TEMP VIEW my_policies AS
	SELECT p.* FROM coupon.policy p WHERE p.merchant_id IN (SELECT v FROM ctx WHERE k IN ('m1', 'm2'));
CREATE TEMP VIEW my_coupons AS
	SELECT c.* FROM coupon.coupon c WHERE c.policy_id IN (SELECT id FROM my_policies);
CREATE TEMP VIEW my_reservations AS
	SELECT r.* FROM coupon.reservation r WHERE r.coupon_id IN (SELECT id FROM my_coupons);

-- the workload
DO $work$
DECLARE
	issuing text[] := '{direct,fcfs,balance,multi,expiring}';
	toggled text[] := '{direct,balance,multi}';
	r float8;
	op text;
	u text;
	pid bigint;
	cid bigint;
	rid bigint;
	c record;
	st text;
	det text;
	msg text;
	reason text;
	key text;
	mid bigint;
BEGIN
	FOR i IN 1 .. 3000 LOOP
		r := random();
		-- user ids unique to this run: wrong codes count against a user in
		-- shared memory, which the final ROLLBACK does not undo
		u := format('tu%s-%s', txid_current(), 1 + floor(random() * 25)::int);
		BEGIN
			IF r < 0.22 THEN
				op := 'issue';
				key := issuing[1 + floor(random() * 5)::int];
				pid := (SELECT v FROM ctx WHERE k = key);
				PERFORM coupon.issue(pid, u);
			ELSIF r < 0.27 THEN
				op := 'redeem';
				PERFORM coupon.redeem_code((SELECT code FROM codes ORDER BY random() LIMIT 1), u);
			ELSIF r < 0.60 THEN
				op := 'reserve';
				SELECT * INTO c FROM my_coupons WHERE status <> 'unclaimed' ORDER BY random() LIMIT 1;
				IF NOT FOUND THEN
					INSERT INTO tally VALUES (op, 'none');
					CONTINUE;
				END IF;
				key := CASE WHEN random() < 0.6 THEN 'm1' ELSE 'm2' END;
				mid := (SELECT v FROM ctx WHERE k = key);
				PERFORM coupon.reserve(c.id,
					CASE WHEN random() < 0.85 THEN c.user_id ELSE u END,
					mid,
					'order-' || i,
					CASE WHEN random() < 0.1 THEN 100 ELSE 1000 + floor(random() * 40000)::bigint END);
			ELSIF r < 0.72 THEN
				op := 'confirm';
				-- mostly held ones, sometimes any (released, expired, confirmed)
				SELECT id INTO rid FROM my_reservations
				 WHERE random() < 0.2 OR status = 'held' ORDER BY random() LIMIT 1;
				IF rid IS NULL THEN
					INSERT INTO tally VALUES (op, 'none');
					CONTINUE;
				END IF;
				PERFORM coupon.confirm(rid);
			ELSIF r < 0.84 THEN
				op := 'release';
				SELECT id INTO rid FROM my_reservations
				 WHERE random() < 0.2 OR status = 'held' ORDER BY random() LIMIT 1;
				IF rid IS NULL THEN
					INSERT INTO tally VALUES (op, 'none');
					CONTINUE;
				END IF;
				PERFORM coupon.release(rid);
			ELSIF r < 0.91 THEN
				op := 'expire_reservations';
				UPDATE coupon.reservation SET expires_at = now() - interval '1 second'
				 WHERE id = (SELECT id FROM my_reservations WHERE status = 'held' ORDER BY random() LIMIT 1);
				PERFORM coupon.expire_reservations();
			ELSIF r < 0.97 THEN
				op := 'expire_coupons';
				UPDATE coupon.coupon SET expires_at = now() - interval '1 second'
				 WHERE id = (SELECT id FROM my_coupons
							  WHERE policy_id = (SELECT v FROM ctx WHERE k = 'expiring')
								AND status = 'issued' ORDER BY random() LIMIT 1);
				PERFORM coupon.expire_coupons();
			ELSE
				op := 'set_policy_status';
				key := toggled[1 + floor(random() * 3)::int];
				pid := (SELECT v FROM ctx WHERE k = key);
				PERFORM coupon.set_policy_status(pid,
					CASE (SELECT status FROM coupon.policy WHERE id = pid)
						WHEN 'active' THEN 'paused' ELSE 'active' END);
			END IF;
			INSERT INTO tally VALUES (op, 'ok');
		EXCEPTION WHEN OTHERS THEN
			GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
			BEGIN
				reason := det::jsonb ->> 'reason';
			EXCEPTION WHEN OTHERS THEN
				reason := NULL;
			END;
			INSERT INTO tally VALUES (op, st || ' ' || coalesce(reason, msg));
		END;
	END LOOP;
	-- every policy active again for the checks below
	PERFORM coupon.set_policy_status(v, 'active') FROM ctx WHERE k IN ('direct', 'balance', 'multi');
END
$work$;

SELECT diag('outcomes: ' || string_agg(op || ' ' || outcome || '=' || n, ', ' ORDER BY op, outcome))
  FROM (SELECT op, outcome, count(*) n FROM tally GROUP BY 1, 2) s;
SELECT diag('held at the end: ' || count(*)) FROM my_reservations WHERE status = 'held';

-- 1: nothing but business errors
SELECT is_empty($$SELECT op, outcome, count(*) FROM tally WHERE outcome <> 'ok' AND outcome <> 'none'
				   AND outcome NOT LIKE 'PT%' GROUP BY 1, 2$$,
	'the workload raised only business errors (no internal error, no constraint violation)');

-- 2: each operation answered only what its contract allows
SELECT is_empty($$
	SELECT op, outcome FROM tally
	EXCEPT
	SELECT * FROM (VALUES
		('issue', 'ok'), ('issue', 'PT409 sold_out'), ('issue', 'PT409 per_user_limit'),
		('issue', 'PT422 policy_inactive'),
		('redeem', 'ok'), ('redeem', 'PT409 code_redeemed'), ('redeem', 'PT409 per_user_limit'),
		('redeem', 'PT429 too_many_code_attempts'),
		('reserve', 'ok'), ('reserve', 'none'), ('reserve', 'PT409 coupon_reserved'),
		('reserve', 'PT409 coupon_used'), ('reserve', 'PT422 expired'), ('reserve', 'PT403 not_owner'),
		('reserve', 'PT404 coupon_not_found'), ('reserve', 'PT422 min_order_amount'),
		('reserve', 'PT422 budget_exhausted'), ('reserve', 'PT422 policy_inactive'),
		('confirm', 'ok'), ('confirm', 'none'), ('confirm', 'PT409 reservation_released'),
		('confirm', 'PT409 reservation_expired'),
		('release', 'ok'), ('release', 'none'), ('release', 'PT409 reservation_confirmed'),
		('expire_reservations', 'ok'), ('expire_coupons', 'ok'), ('set_policy_status', 'ok')) v$$,
	'every call answered ok or one of its documented reasons');

-- 3-9: the workload did something
SELECT ok((SELECT count(*) FROM tally WHERE op = o AND outcome = 'ok') > 0, o || ' succeeded at least once')
  FROM unnest('{issue,redeem,reserve,confirm,release,expire_reservations,expire_coupons}'::text[]) o;

-- 10-15: and hit the limits
SELECT ok((SELECT count(*) FROM tally WHERE outcome = o) > 0, 'the workload met ' || o)
  FROM unnest('{"PT409 sold_out","PT409 per_user_limit","PT422 budget_exhausted","PT409 coupon_reserved","PT409 coupon_used","PT409 code_redeemed"}'::text[]) o;

-- 16: policy_stats adds up
SELECT is_empty($$
	SELECT policy_id FROM coupon.policy_stats
	 WHERE policy_id IN (SELECT id FROM my_policies)
	   AND issued <> available + reserved + used + expired + cancelled$$,
	'policy_stats: issued = available + reserved + used + expired + cancelled');

-- 17: policy_stats agrees with the coupons themselves
SELECT is_empty($$
	SELECT s.policy_id FROM coupon.policy_stats s
	 WHERE s.policy_id IN (SELECT id FROM my_policies)
	   AND (s.issued <> (SELECT count(*) FROM coupon.coupon c
						  WHERE c.policy_id = s.policy_id AND c.status <> 'unclaimed')
			OR s.unclaimed <> (SELECT count(*) FROM coupon.coupon c
								WHERE c.policy_id = s.policy_id AND c.status = 'unclaimed'))$$,
	'policy_stats counts match the coupon rows');

-- 18: stock_remaining + issued = total_quantity for limited direct and fcfs policies
SELECT is_empty($$
	SELECT s.policy_id FROM coupon.policy_stats s
	 WHERE s.policy_id IN (SELECT id FROM my_policies)
	   AND s.issue_method IN ('direct', 'fcfs') AND s.total_quantity IS NOT NULL
	   AND s.stock_remaining + s.issued IS DISTINCT FROM s.total_quantity$$,
	'stock_remaining + issued = total_quantity for limited direct/fcfs policies');

-- 19: no stock shard below zero, and unlimited or code policies have no stock
SELECT is_empty($$
	SELECT s.policy_id FROM coupon.policy_stats s
	 WHERE s.policy_id IN (SELECT id FROM my_policies)
	   AND (s.stock_remaining < 0
			OR (s.stock_remaining IS NOT NULL AND (s.total_quantity IS NULL OR s.issue_method = 'code'))
			OR EXISTS (SELECT 1 FROM coupon.policy_stock k WHERE k.policy_id = s.policy_id AND k.remaining < 0))$$,
	'stock never negative; only limited direct/fcfs policies keep stock');

-- 20: the fcfs policy (limit 1) gave each of its holders exactly one coupon
SELECT is((SELECT issued FROM coupon.policy_stats WHERE policy_id = (SELECT v FROM ctx WHERE k = 'fcfs')),
		  (SELECT count(DISTINCT user_id) FROM my_coupons WHERE policy_id = (SELECT v FROM ctx WHERE k = 'fcfs')),
		  'fcfs (per_user_limit 1): issued = number of distinct holders');

-- 21: code policy: unclaimed + issued = codes generated <= total_quantity
SELECT is_empty($$
	SELECT p.id FROM my_policies p JOIN coupon.policy_stats s ON s.policy_id = p.id
	 WHERE p.issue_method = 'code'
	   AND (s.unclaimed + s.issued <> p.codes_generated OR p.codes_generated > p.total_quantity)$$,
	'code policy: unclaimed + issued = codes_generated <= total_quantity');

-- 22: balances stay within 0 .. starting value and equal it minus confirmed discounts
SELECT is_empty($$
	SELECT c.id, c.balance FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE p.discount_type = 'balance'
	   AND (c.balance IS NULL OR c.balance < 0 OR c.balance > p.discount_value
			OR c.balance <> p.discount_value - (SELECT coalesce(sum(r.discount), 0)
												  FROM coupon.reservation r
												 WHERE r.coupon_id = c.id AND r.status = 'confirmed'))$$,
	'balance coupons: 0 <= balance = starting value - confirmed discounts <= starting value');

-- 23: only balance coupons carry a balance
SELECT is_empty($$
	SELECT c.id FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE p.discount_type <> 'balance' AND c.balance IS NOT NULL$$,
	'fixed and percent coupons have no balance');

-- 24: budget_used = discounts of held + confirmed reservations
SELECT is_empty($$
	SELECT p.id, p.budget_used FROM my_policies p
	 WHERE p.budget IS NOT NULL
	   AND p.budget_used <> (SELECT coalesce(sum(r.discount), 0)
							   FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
							  WHERE c.policy_id = p.id AND r.status IN ('held', 'confirmed'))$$,
	'budget_used = sum of discounts of held + confirmed reservations');

-- 25
SELECT is_empty($$SELECT id FROM my_policies WHERE budget_used > coalesce(budget, budget_used) OR budget_used < 0$$,
	'budget_used never passes the budget');

-- 26: unbudgeted policies keep budget_used at 0
SELECT is_empty($$SELECT id FROM my_policies WHERE budget IS NULL AND budget_used <> 0$$,
	'policies without a budget never count budget_used');

-- 27-28: reserved coupons and held reservations match one to one
SELECT is_empty($$
	SELECT c.id FROM my_coupons c
	 WHERE c.status = 'reserved'
	   AND (SELECT count(*) FROM coupon.reservation r WHERE r.coupon_id = c.id AND r.status = 'held') <> 1$$,
	'every reserved coupon has exactly one held reservation');
SELECT is_empty($$
	SELECT r.id FROM my_reservations r JOIN coupon.coupon c ON c.id = r.coupon_id
	 WHERE r.status = 'held' AND c.status <> 'reserved'$$,
	'every held reservation''s coupon is reserved');

-- 29: a fixed or percent coupon is used exactly when it has one confirmed reservation
SELECT is_empty($$
	SELECT c.id FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE p.discount_type <> 'balance'
	   AND ((c.status = 'used') <> EXISTS (SELECT 1 FROM coupon.reservation r
										   WHERE r.coupon_id = c.id AND r.status = 'confirmed')
			OR (SELECT count(*) FROM coupon.reservation r
				 WHERE r.coupon_id = c.id AND r.status = 'confirmed') > 1)$$,
	'fixed/percent coupons: used <=> exactly one confirmed reservation');

-- 30: a balance coupon is used exactly when it is spent to zero (unless held)
SELECT is_empty($$
	SELECT c.id FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE p.discount_type = 'balance' AND c.status IN ('issued', 'used')
	   AND (c.status = 'used') <> (c.balance = 0)$$,
	'balance coupons: used <=> balance 0');

-- 31: discounts follow the policy
SELECT is_empty($$
	SELECT r.id FROM my_reservations r JOIN coupon.coupon c ON c.id = r.coupon_id
	  JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE r.discount > r.order_amount OR r.discount < 0 OR r.order_amount < p.min_order_amount
		OR (p.discount_type = 'fixed' AND r.discount <> least(p.discount_value, r.order_amount))
		OR (p.discount_type = 'percent'
			AND r.discount <> least(r.order_amount * p.discount_value / 10000, coalesce(p.max_discount, r.order_amount)))
		OR (p.discount_type = 'balance' AND (r.discount > p.discount_value OR r.discount = 0))$$,
	'every hold''s discount is what its policy grants (fixed, percent with cap, balance)');

-- 32: holds only at allowed merchants, by the holder
SELECT is_empty($$
	SELECT r.id FROM my_reservations r JOIN coupon.coupon c ON c.id = r.coupon_id
	  JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE r.user_id <> c.user_id
		OR NOT (r.merchant_id = ANY (coalesce(p.allowed_merchants, ARRAY[p.merchant_id])))$$,
	'every hold is by the coupon''s holder at an allowed merchant');

-- 33: per_user_limit never exceeded
SELECT is_empty($$
	SELECT c.policy_id, c.user_id, count(*) FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE c.user_id IS NOT NULL AND p.per_user_limit IS NOT NULL
	 GROUP BY c.policy_id, c.user_id, p.per_user_limit HAVING count(*) > p.per_user_limit$$,
	'per_user_limit never exceeded');

-- 34: user_seq numbers each user's coupons of a limited policy 1..k
SELECT is_empty($$
	SELECT c.policy_id, c.user_id FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id
	 WHERE c.user_id IS NOT NULL AND p.per_user_limit IS NOT NULL
	 GROUP BY c.policy_id, c.user_id
	HAVING count(DISTINCT c.user_seq) <> count(*) OR min(c.user_seq) <> 1 OR max(c.user_seq) <> count(*)$$,
	'user_seq runs 1..k without duplicates for limited policies');

-- 35: expire_coupons marked what was due, and only that
SELECT is_empty($$
	SELECT c.id FROM my_coupons c
	 WHERE (c.status = 'expired' AND NOT c.expires_at <= now())
		OR (c.status = 'issued' AND c.expires_at <= now())$$,
	'expired coupons are past expires_at; no issued coupon is');

-- 36: the sweeper left no lapsed hold behind
SELECT is_empty($$SELECT id FROM my_reservations WHERE status = 'held' AND expires_at <= now()$$,
	'no held reservation past its expires_at');

-- 37: validate() agrees with the stored state
SELECT is_empty($$
	SELECT c.id, c.status, v.reason
	  FROM my_coupons c JOIN coupon.policy p ON p.id = c.policy_id,
		   coupon.validate(c.id, c.user_id, p.merchant_id, 50000) v
	 WHERE c.status IN ('reserved', 'used', 'expired')
	   AND v.reason <> CASE c.status WHEN 'reserved' THEN 'coupon_reserved'
									 WHEN 'used' THEN 'coupon_used' ELSE 'expired' END$$,
	'validate() reports coupon_reserved / coupon_used / expired for such coupons');

-- 38: user_coupons() lists exactly each user's coupons
SELECT is_empty($$
	SELECT u.user_id FROM (SELECT DISTINCT user_id FROM my_coupons WHERE user_id IS NOT NULL) u
	 WHERE (SELECT count(*) FROM coupon.user_coupons(u.user_id) x
			 WHERE x.policy_id IN (SELECT id FROM my_policies))
		<> (SELECT count(*) FROM my_coupons c WHERE c.user_id = u.user_id)$$,
	'user_coupons() returns each user''s coupons');

-- drain: release every hold; the budgets then count confirmed discounts only
DO $$BEGIN PERFORM coupon.release(id) FROM my_reservations WHERE status = 'held'; END$$;

-- 39
SELECT is((SELECT count(*) FROM my_coupons WHERE status = 'reserved'), 0::bigint,
		  'after releasing every hold no coupon is reserved');
-- 40
SELECT is_empty($$
	SELECT p.id FROM my_policies p
	 WHERE p.budget IS NOT NULL
	   AND p.budget_used <> (SELECT coalesce(sum(r.discount), 0)
							   FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
							  WHERE c.policy_id = p.id AND r.status = 'confirmed')$$,
	'after releasing every hold budget_used = confirmed discounts');

SELECT * FROM finish();
ROLLBACK;
