-- merchant.sql: coupon.create_merchant (tenants)
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
-- ids of this file start at 5000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 5000, false);
	PERFORM setval('coupon.policy_id_seq', 5000, false);
	PERFORM setval('coupon.coupon_id_seq', 5000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 5000, false);
END $$;

-- defaults: KRW, no commission or fee, settled one day later, active
SELECT id, name, currency, commission_bp, pg_fee_bp, settlement_delay_days, status,
       client_id, client_secret_hash, created_at IS NOT NULL AS has_created_at
  FROM coupon.create_merchant('Shop A');
-- every argument, by name
SELECT id, name, currency, commission_bp, pg_fee_bp, settlement_delay_days, status
  FROM coupon.create_merchant(name => 'Shop USD', currency => 'USD', commission_bp => 1250,
                              pg_fee_bp => 330, settlement_delay_days => 0);
-- the upper bounds are accepted: 200 characters (multibyte too), 10000 bp, 365 days
SELECT id, length(name) AS name_len, currency, commission_bp, pg_fee_bp, settlement_delay_days
  FROM coupon.create_merchant(repeat('가', 200), 'JPY', 10000, 10000, 365);
SELECT id, length(name) AS name_len FROM coupon.create_merchant(repeat('n', 200));

-- a failing call raises PTnnn with a JSON DETAIL and a HINT
SELECT coupon.create_merchant('Bad', 'XYZ');
SELECT coupon.create_merchant('', 'KRW');
SELECT coupon.create_merchant('Bad', 'KRW', 10001);
SELECT coupon.create_merchant('Bad', 'KRW', 0, 0, 366);
SELECT coupon.create_merchant(NULL);

-- bad input of every kind, and nothing is created by any of it
SELECT count(*) AS merchants_before FROM coupon.merchant \gset
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('name NULL',           $$SELECT coupon.create_merchant(NULL)$$, '{}'::text[]),
	('name empty',          $$SELECT coupon.create_merchant('')$$, '{}'),
	('name 201 chars',      $$SELECT coupon.create_merchant(%L)$$, ARRAY[repeat('n', 201)]),
	('name 201 multibyte',  $$SELECT coupon.create_merchant(%L)$$, ARRAY[repeat('가', 201)]),
	('name 10000 chars',    $$SELECT coupon.create_merchant(%L)$$, ARRAY[repeat('n', 10000)]),
	('currency NULL',       $$SELECT coupon.create_merchant('m', NULL)$$, '{}'),
	('currency empty',      $$SELECT coupon.create_merchant('m', '')$$, '{}'),
	('currency lower case', $$SELECT coupon.create_merchant('m', 'krw')$$, '{}'),
	('currency unknown',    $$SELECT coupon.create_merchant('m', 'XYZ')$$, '{}'),
	('currency 4 letters',  $$SELECT coupon.create_merchant('m', 'KRWW')$$, '{}'),
	('currency padded',     $$SELECT coupon.create_merchant('m', ' KRW')$$, '{}'),
	('currency 10000 chars',$$SELECT coupon.create_merchant('m', %L)$$, ARRAY[repeat('K', 10000)]),
	('commission NULL',     $$SELECT coupon.create_merchant('m', 'KRW', NULL)$$, '{}'),
	('commission -1',       $$SELECT coupon.create_merchant('m', 'KRW', -1)$$, '{}'),
	('commission 10001',    $$SELECT coupon.create_merchant('m', 'KRW', 10001)$$, '{}'),
	('commission int max',  $$SELECT coupon.create_merchant('m', 'KRW', 2147483647)$$, '{}'),
	('commission int min',  $$SELECT coupon.create_merchant('m', 'KRW', -2147483648)$$, '{}'),
	('commission 2^63-1',   $$SELECT coupon.create_merchant('m', 'KRW', '9223372036854775807')$$, '{}'),
	('pg_fee NULL',         $$SELECT coupon.create_merchant('m', 'KRW', 0, NULL)$$, '{}'),
	('pg_fee -1',           $$SELECT coupon.create_merchant('m', 'KRW', 0, -1)$$, '{}'),
	('pg_fee 10001',        $$SELECT coupon.create_merchant('m', 'KRW', 0, 10001)$$, '{}'),
	('delay NULL',          $$SELECT coupon.create_merchant('m', 'KRW', 0, 0, NULL)$$, '{}'),
	('delay -1',            $$SELECT coupon.create_merchant('m', 'KRW', 0, 0, -1)$$, '{}'),
	('delay 366',           $$SELECT coupon.create_merchant('m', 'KRW', 0, 0, 366)$$, '{}')
) AS t(label, stmt, args);
SELECT count(*) - :merchants_before AS merchants_created FROM coupon.merchant;

-- names need not be unique
SELECT name, currency FROM coupon.create_merchant('Shop A', 'EUR');
