-- foreign_rows.sql: a merchant and a customer calling every function on
-- rows that are not theirs get the documented answer and learn nothing of
-- the rows: no user, order, amount or state of another merchant's or
-- user's rows in any message, DETAIL or result (docs/concepts.md,
-- "Tenancy").  Where the contract answers "not found", the answer for a
-- foreign row is the answer for an id that does not exist.
\set VERBOSITY default
\set SHOW_CONTEXT never
SET client_min_messages = warning;
-- answer(stmt, args...): 'ok' and the rows, or SQLSTATE and reason; 'LEAK' when
-- the message, DETAIL or rows show the secret user, order or amount
CREATE FUNCTION answer(stmt text, VARIADIC args text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	st text;
	msg text;
	dt text;
	seen text;
BEGIN
	EXECUTE format('SELECT coalesce(string_agg(r::text, '';''), '''') FROM (' || stmt || ') r',
				   VARIADIC args) INTO seen;
	RETURN CASE WHEN seen ~ '(secret-user|secret-order|77777)' THEN 'LEAK ' || seen
				ELSE 'ok ' || seen END;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, dt = PG_EXCEPTION_DETAIL;
	RETURN CASE WHEN msg || dt ~ '(secret-user|secret-order|77777)' THEN 'LEAK ' || msg || ' ' || dt
				ELSE st || ' ' || CASE WHEN dt LIKE '{%' THEN coalesce(dt::jsonb ->> 'reason', '?') ELSE '-' END
		   END;
END
$fn$;
GRANT EXECUTE ON FUNCTION answer(text, text[]) TO PUBLIC;

-- the victim: merchant mv with a policy, a coupon of secret-user, a hold and
-- a payment for secret-order of 77777; the caller's own merchant mo
SELECT id AS mv FROM coupon.create_merchant('victim shop') \gset
SELECT id AS mo FROM coupon.create_merchant('other shop') \gset
SELECT id AS pv FROM coupon.create_policy(:mv, 'victim policy', 'fixed', 700, per_user_limit => NULL) \gset
SELECT id AS cv FROM coupon.issue(:pv, 'secret-user') \gset
SELECT id AS cv2 FROM coupon.issue(:pv, 'secret-user') \gset
SELECT id AS rv FROM coupon.reserve(:cv, 'secret-user', :mv, 'secret-order-hold', 77777) \gset
SELECT id AS yv FROM coupon.pay(:mv, 'secret-user', 'secret-order', 77777, ARRAY[:cv2]) \gset
-- ids that exist nowhere
SELECT max(id) + 1000 AS nc FROM coupon.coupon \gset
SELECT max(id) + 1000 AS nr FROM coupon.reservation \gset
SELECT max(id) + 1000 AS ny FROM coupon.payment \gset
SELECT max(id) + 1000 AS np FROM coupon.policy \gset

-- as merchant mo
SET ROLE coupon_app;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :mo)::text, false) IS NOT NULL AS as_mo;
SELECT label, answer(stmt, VARIADIC foreign_args) AS on_foreign_row,
	   answer(stmt, VARIADIC missing_args) AS on_missing_row
  FROM (VALUES
	('validate here',      $$SELECT ok, reason, discount FROM coupon.validate(%s, 'secret-user', %s, 5000)$$,
						   ARRAY[:'cv', :'mo'], ARRAY[:'nc', :'mo']),
	('validate there',     $$SELECT ok, reason, discount FROM coupon.validate(%s, 'secret-user', %s, 5000)$$,
						   ARRAY[:'cv', :'mv'], ARRAY[:'nc', :'mv']),
	('reserve here',       $$SELECT * FROM coupon.reserve(%s, 'secret-user', %s, 'o-1', 5000)$$,
						   ARRAY[:'cv', :'mo'], ARRAY[:'nc', :'mo']),
	('pay here',           $$SELECT * FROM coupon.pay(%s, 'secret-user', 'o-2', 5000, ARRAY[%s])$$,
						   ARRAY[:'mo', :'cv'], ARRAY[:'mo', :'nc']),
	('confirm',            $$SELECT * FROM coupon.confirm(%s)$$, ARRAY[:'rv'], ARRAY[:'nr']),
	('release',            $$SELECT * FROM coupon.release(%s)$$, ARRAY[:'rv'], ARRAY[:'nr']),
	('cancel_payment',     $$SELECT * FROM coupon.cancel_payment(%s, 'no')$$, ARRAY[:'yv'], ARRAY[:'ny']),
	('payment_status',     $$SELECT coupon.payment_status(%s)$$, ARRAY[:'yv'], ARRAY[:'ny']),
	('issue',              $$SELECT * FROM coupon.issue(%s, 'u-1')$$, ARRAY[:'pv'], ARRAY[:'np']),
	('set_policy_status',  $$SELECT * FROM coupon.set_policy_status(%s, 'paused')$$, ARRAY[:'pv'], ARRAY[:'np']),
	('generate_codes',     $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'pv'], ARRAY[:'np']),
	('settlement_report',  $$SELECT * FROM coupon.settlement_report(%s, current_date - 1, current_date)$$,
						   ARRAY[:'mv'], ARRAY[:'np']),
	('policy_stats',       $$SELECT * FROM coupon.policy_stats WHERE policy_id = %s$$, ARRAY[:'pv'], ARRAY[:'np']),
	('user_coupons',       $$SELECT count(*) FROM coupon.user_coupons('secret-user')$$, '{}'::text[],
						   '{}'::text[])
  ) AS t(label, stmt, foreign_args, missing_args);
RESET request.jwt.claims;
RESET ROLE;

-- as a customer who is not secret-user
SET ROLE coupon_customer;
SELECT set_config('request.jwt.claims', json_build_object('sub', 'curious-user')::text, false) IS NOT NULL AS as_curious;
SELECT label, answer(stmt, VARIADIC foreign_args) AS on_foreign_row,
	   answer(stmt, VARIADIC missing_args) AS on_missing_row
  FROM (VALUES
	('validate as itself', $$SELECT ok, reason, discount FROM coupon.validate(%s, 'curious-user', %s, 5000)$$,
						   ARRAY[:'cv', :'mv'], ARRAY[:'nc', :'mv']),
	('validate as owner',  $$SELECT ok, reason, discount FROM coupon.validate(%s, 'secret-user', %s, 5000)$$,
						   ARRAY[:'cv', :'mv'], ARRAY[:'nc', :'mv']),
	('user_coupons',       $$SELECT count(*) FROM coupon.user_coupons('secret-user')$$, '{}'::text[],
						   '{}'::text[]),
	('payment_status',     $$SELECT coupon.payment_status(%s)$$, ARRAY[:'yv'], ARRAY[:'ny']),
	('confirm',            $$SELECT * FROM coupon.confirm(%s)$$, ARRAY[:'rv'], ARRAY[:'nr']),
	('policy_stats',       $$SELECT * FROM coupon.policy_stats WHERE policy_id = %s$$, ARRAY[:'pv'], ARRAY[:'np'])
  ) AS t(label, stmt, foreign_args, missing_args);
RESET request.jwt.claims;
RESET ROLE;

-- nothing changed: the hold and the payment are as they were
SELECT r.status AS hold, y.state AS payment, c.status AS coupon
  FROM coupon.reservation r, coupon.payment y, coupon.coupon c
 WHERE r.id = :rv AND y.id = :yv AND c.id = :cv;
