-- payment.sql: coupon.pay, cancel_payment, payment_status, retry_payment,
-- the saga views.  Nothing drives the saga here (the workers watch another
-- database and process_payments is not called), so every payment stays
-- where the SQL functions put it; the gateway steps are tested against the
-- mock gateway in test/saga/.
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
-- ids of this file start at 10000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 10000, false);
	PERFORM setval('coupon.policy_id_seq', 10000, false);
	PERFORM setval('coupon.coupon_id_seq', 100000, false);
	PERFORM setval('coupon.reservation_id_seq', 10000, false);
	PERFORM setval('coupon.payment_id_seq', 10000, false);
END $$;

SELECT id AS m1 FROM coupon.create_merchant('Pay shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Pay other shop') \gset
SELECT id AS p_fixed FROM coupon.create_policy(:m1, 'fixed 2000', 'fixed', 2000, per_user_limit => NULL, stackable => true) \gset
SELECT id AS p_pct FROM coupon.create_policy(:m1, '10 percent', 'percent', 1000, per_user_limit => NULL, stackable => true) \gset
SELECT id AS p_solo FROM coupon.create_policy(:m1, 'solo 500', 'fixed', 500, per_user_limit => NULL) \gset
SELECT id AS p_bal FROM coupon.create_policy(:m1, 'gift 3000', 'balance', 3000, per_user_limit => NULL) \gset
SELECT id AS p_budget FROM coupon.create_policy(:m1, 'budget 3000', 'fixed', 2000, budget => 3000, per_user_limit => NULL, stackable => true) \gset
SELECT id AS c_fix FROM coupon.issue(:p_fixed, 'pia') \gset
SELECT id AS c_pct FROM coupon.issue(:p_pct, 'pia') \gset
SELECT id AS c_solo FROM coupon.issue(:p_solo, 'pia') \gset
SELECT id AS c_solo2 FROM coupon.issue(:p_solo, 'pia') \gset
SELECT id AS c_bal FROM coupon.issue(:p_bal, 'pia') \gset
SELECT id AS c_b1 FROM coupon.issue(:p_budget, 'pia') \gset
SELECT id AS c_b2 FROM coupon.issue(:p_budget, 'pia') \gset
SELECT id AS c_other FROM coupon.issue(:p_fixed, 'olaf') \gset

-- a payment with two stacked coupons: fixed first, then percent of the rest
SELECT id AS pay1, state, amount, discount, coupon_ids = ARRAY[:c_fix, :c_pct]::bigint[] AS sorted,
	   payment_key, attempts, approved_amount
  FROM coupon.pay(:m1, 'pia', 'order-1', 10000, ARRAY[:c_pct, :c_fix]) \gset
SELECT :pay1 AS payment, :'state' AS state, :amount AS amount, :discount AS discount, :'sorted' AS sorted,
	   :'payment_key' ~ '^pk-[0-9a-f]{32}$' AS generated_key;
SELECT coupon_id, status, discount, payment_id = :pay1 AS owned FROM coupon.reservation
 WHERE payment_id = :pay1 ORDER BY coupon_id;
SELECT id, status FROM coupon.coupon WHERE id IN (:c_fix, :c_pct) ORDER BY id;
SELECT step, from_state, to_state, actor FROM coupon.payment_event WHERE payment_id = :pay1;
-- the sweeper never expires a payment's holds, even past expires_at
UPDATE coupon.reservation SET expires_at = now() - interval '1 hour' WHERE payment_id = :pay1;
SELECT coupon.expire_reservations();
SELECT count(*) AS still_held FROM coupon.reservation WHERE payment_id = :pay1 AND status = 'held';
-- a payment's holds are the saga's alone: confirm() and release() refuse them
-- and change nothing
SELECT try('SELECT coupon.confirm(%s)', id::text) AS confirm_payment_hold,
	   try('SELECT coupon.release(%s)', id::text) AS release_payment_hold
  FROM coupon.reservation WHERE payment_id = :pay1 ORDER BY coupon_id;
SELECT r.status AS hold, c.status AS coupon FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
 WHERE r.payment_id = :pay1 ORDER BY r.coupon_id;

-- a payment whose coupons cover it all needs no gateway: it is approved at once
SELECT id AS pay_free, state, discount FROM coupon.pay(:m1, 'pia', 'order-free', 400, ARRAY[:c_solo]) \gset
SELECT :'state' AS state, :discount AS discount;
-- without coupons
SELECT id AS pay_plain, state, discount, payment_key FROM coupon.pay(:m1, 'pia', 'order-plain', 5000, NULL, 'ok_key_1') \gset
SELECT :'state' AS state, :discount AS discount, :'payment_key' AS payment_key;

-- refusals change nothing
SELECT count(*) AS payments_before FROM coupon.payment \gset
SELECT count(*) AS holds_before FROM coupon.reservation \gset
-- a caller may not pass a key of the form pay() makes (so no one can take
-- another payment's key at the gateway first)
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, NULL, ''pk-10099'')', :'m1') AS reserved_key_form;
-- and a key belongs to one payment only
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, NULL, ''ok_key_1'')', :'m1') AS key_of_another_payment;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-1'', 10000)', :'m1') AS duplicate_order;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s])', :'m1', :'c_fix') AS coupon_in_use;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s])', :'m1', :'c_other') AS not_owner;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s])', :'m2', :'c_solo2') AS merchant_not_allowed;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s, %s])', :'m1', :'c_solo2', :'c_bal') AS not_stackable;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s, %s])', :'m1', :'c_b1', :'c_b2') AS shared_budget;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s, %s])', :'m1', :'c_solo2', :'c_solo2') AS listed_twice;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[%s, NULL])', :'m1', :'c_solo2') AS null_coupon;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[[1],[2]]::bigint[])', :'m1') AS two_dims;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[1,2,3,4,5,6,7,8,9,10,11]::bigint[])', :'m1') AS eleven;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 10000, ARRAY[999999999])', :'m1') AS no_coupon;
SELECT try('SELECT coupon.pay(999999, ''pia'', ''order-2'', 10000)') AS no_merchant;
SELECT try('SELECT coupon.pay(NULL, ''pia'', ''order-2'', 10000)') AS null_merchant;
SELECT try('SELECT coupon.pay(%s, NULL, ''order-2'', 10000)', :'m1') AS null_user;
SELECT try('SELECT coupon.pay(%s, '''', ''order-2'', 10000)', :'m1') AS empty_user;
SELECT try('SELECT coupon.pay(%s, ''pia'', repeat(''x'', 10000), 10000)', :'m1') AS long_order;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', -1)', :'m1') AS negative;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 1000000000000001)', :'m1') AS too_big;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', NULL)', :'m1') AS null_amount;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 100, NULL, ''a/b'')', :'m1') AS key_slash;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 100, NULL, '''')', :'m1') AS key_empty;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 100, NULL, repeat(''k'', 201))', :'m1') AS key_long;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 100, NULL, ''caf' || chr(233) || ''')', :'m1') AS key_not_ascii;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-2'', 100, NULL, NULL, '''')', :'m1') AS idem_empty;
SELECT (SELECT count(*) FROM coupon.payment) = :payments_before AS no_payment_added,
	   (SELECT count(*) FROM coupon.reservation) = :holds_before AS no_hold_added,
	   (SELECT status FROM coupon.coupon WHERE id = :c_solo2) AS solo2,
	   (SELECT status FROM coupon.coupon WHERE id = :c_bal) AS bal,
	   (SELECT budget_used FROM coupon.policy WHERE id = :p_budget) AS budget_used;

-- idempotency: the same key and request give the same payment; another request is refused
SELECT id AS pay_idem FROM coupon.pay(:m1, 'pia', 'order-idem', 3000, NULL, NULL, 'key-1') \gset
SELECT id = :pay_idem AS same_payment FROM coupon.pay(:m1, 'pia', 'order-idem', 3000, NULL, NULL, 'key-1');
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-idem'', 3001, NULL, NULL, ''key-1'')', :'m1') AS other_request;

-- cancel of a pending payment: recorded, and the coupons stay held until a
-- lookup at the gateway proves the confirm never went through (test/saga/)
SELECT id AS pay_c, state FROM coupon.pay(:m1, 'pia', 'order-cancel', 10000, ARRAY[:c_bal]) \gset
SELECT status, balance FROM coupon.coupon WHERE id = :c_bal;
SELECT state, refund_reason FROM coupon.cancel_payment(:pay_c, 'out of stock');
SELECT status, balance FROM coupon.coupon WHERE id = :c_bal;
SELECT status FROM coupon.reservation WHERE payment_id = :pay_c;
SELECT try('SELECT coupon.cancel_payment(%s)', :'pay_c') AS cancel_failed;
-- a payment the coupons pay wholly is never sent: cancelled before completion, it fails at once
SELECT state FROM coupon.cancel_payment(:pay_free);
SELECT status FROM coupon.coupon WHERE id = :c_solo;
-- a payment whose confirm may have gone out: the cancel waits for the outcome
UPDATE coupon.payment SET state = 'authorizing', attempts = 1 WHERE id = :pay_plain;
SELECT state, refund_amount, refunds FROM coupon.cancel_payment(:pay_plain, NULL, 1000);
SELECT try('SELECT coupon.cancel_payment(%s)', :'pay_plain') AS second_cancel_while_waiting;
-- a completed payment: a refund through the saga
UPDATE coupon.payment SET state = 'completed', approved_amount = amount - discount WHERE id = :pay1;
SELECT state, refund_amount, refunds, attempts FROM coupon.cancel_payment(:pay1, 'damaged', 1000);
SELECT try('SELECT coupon.cancel_payment(%s)', :'pay1') AS refund_in_progress;
UPDATE coupon.payment SET state = 'partially_refunded', refunded_amount = 1000, refund_amount = NULL WHERE id = :pay1;
SELECT try('SELECT coupon.cancel_payment(%s, NULL, 999999)', :'pay1') AS beyond_refundable;
SELECT try('SELECT coupon.cancel_payment(%s, NULL, 0)', :'pay1') AS zero;
SELECT try('SELECT coupon.cancel_payment(%s, NULL, -5)', :'pay1') AS negative;
SELECT try('SELECT coupon.cancel_payment(%s, repeat(''r'', 201))', :'pay1') AS long_reason;
SELECT try('SELECT coupon.cancel_payment(%s, '''')', :'pay1') AS empty_reason;
SELECT try('SELECT coupon.cancel_payment(999999)') AS no_payment;
SELECT try('SELECT coupon.cancel_payment(NULL)') AS null_payment;
SELECT state, refunded_amount, refund_amount FROM coupon.payment WHERE id = :pay1;
SELECT state, refund_amount FROM coupon.cancel_payment(:pay1, 'the rest');

-- retry_payment: only needs_attention is requeued
UPDATE coupon.payment SET state = 'needs_attention', resume_state = 'authorizing', attempts = 8,
	   next_attempt_at = now() + interval '1 hour' WHERE id = :pay_idem;
SELECT payment_id = :pay_idem AS stuck, state, resume_state FROM coupon.stuck_payments WHERE payment_id = :pay_idem;
SELECT state, resume_state, attempts, next_attempt_at <= now() AS due FROM coupon.retry_payment(:pay_idem);
SELECT state FROM coupon.retry_payment(:pay_idem);
SELECT try('SELECT coupon.retry_payment(%s)', :'pay_free') AS retry_failed;
SELECT try('SELECT coupon.retry_payment(999999)') AS retry_missing;
SELECT step, from_state, to_state FROM coupon.payment_event WHERE payment_id = :pay_idem ORDER BY id;

-- payment_status: the row and its newest events
SELECT s ->> 'state' AS state, jsonb_array_length(s -> 'events') AS events,
	   s -> 'events' -> 0 ->> 'step' AS newest
  FROM coupon.payment_status(:pay_c) AS s;
SELECT jsonb_array_length(coupon.payment_status(:pay_c, 1) -> 'events') AS one_event;
SELECT try('SELECT coupon.payment_status(999999)') AS status_missing;
SELECT try('SELECT coupon.payment_status(%s, -1)', :'pay_c') AS bad_events;

-- the event log is append-only
SELECT try('UPDATE coupon.payment_event SET step = ''x''') AS update_event;
SELECT try('DELETE FROM coupon.payment_event') AS delete_event;

SELECT try('SELECT coupon.process_payments(0)') AS bad_max_rows;
-- worker_status: one row per configured worker
SELECT count(*) = current_setting('coupon.workers')::int AS one_row_per_worker FROM coupon.worker_status;

-- tenancy: a merchant acts only on its own payments
SET ROLE coupon_merchant;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m2)::text, false) IS NOT NULL AS claims;
SELECT try('SELECT coupon.cancel_payment(%s)', :'pay1') AS other_merchant_cancel;
SELECT try('SELECT coupon.payment_status(%s)', :'pay1') AS other_merchant_status;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-x'', 100)', :'m1') AS other_merchant_pay;
SELECT try('SELECT coupon.process_payments()') AS merchant_process;
RESET ROLE;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;
SET ROLE coupon_customer;
SELECT set_config('request.jwt.claims', '{"sub": "olaf"}', false) IS NOT NULL AS claims;
SELECT try('SELECT coupon.payment_status(%s)', :'pay1') AS other_user_status;
SELECT try('SELECT coupon.pay(%s, ''pia'', ''order-y'', 100)', :'m1') AS pay_for_other_user;
-- only the merchant's side creates its payments, so no customer can take a
-- merchant's order id first
SELECT try('SELECT coupon.pay(%s, ''olaf'', ''order-y'', 100)', :'m1') AS pay_for_self;
SELECT try('SELECT coupon.cancel_payment(%s)', :'pay1') AS customer_cancel;
-- a customer sees its own payment, but not what the gateway said
SELECT set_config('request.jwt.claims', '{"sub": "pia"}', false) IS NOT NULL AS claims;
SELECT s ? 'last_error' AS sees_last_error, s -> 'events' -> 0 ? 'error' AS sees_event_error,
	   s -> 'events' -> 0 ? 'step' AS sees_steps
  FROM coupon.payment_status(:pay1) s;
RESET ROLE;
SELECT s ? 'last_error' AS operator_sees_last_error, s -> 'events' -> 0 ? 'error' AS operator_sees_event_error
  FROM coupon.payment_status(:pay1) s;
SELECT set_config('request.jwt.claims', '', false) IS NOT NULL AS cleared;

-- two coupons of one budgeted policy on one payment: each hold charges the
-- budget, the second one on the version of the policy the first one wrote
SELECT id AS p_budget2 FROM coupon.create_policy(:m1, 'budget 5000', 'fixed', 1000, budget => 5000, per_user_limit => NULL, stackable => true) \gset
SELECT id AS c_bb1 FROM coupon.issue(:p_budget2, 'pia') \gset
SELECT id AS c_bb2 FROM coupon.issue(:p_budget2, 'pia') \gset
SELECT state, discount FROM coupon.pay(:m1, 'pia', 'order-budget', 10000, ARRAY[:c_bb1, :c_bb2]);
SELECT budget_used FROM coupon.policy WHERE id = :p_budget2;
SELECT count(*) AS holds, sum(discount) AS held FROM coupon.reservation
 WHERE coupon_id IN (:c_bb1, :c_bb2) AND status = 'held';

-- coupon.gateway_url takes only http(s) URLs with a host: anything else is
-- refused when set, so no worker ever meets a URL it cannot use
ALTER SYSTEM SET coupon.gateway_url = 'ftp://gateway.example/';
ALTER SYSTEM SET coupon.gateway_url = 'http://';
ALTER SYSTEM SET coupon.gateway_url = 'http://gateway.example/ x';
SELECT count(*) AS gateway_url_in_auto_conf FROM pg_file_settings
 WHERE name = 'coupon.gateway_url' AND sourcefile LIKE '%postgresql.auto.conf';
