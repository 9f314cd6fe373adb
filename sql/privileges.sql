-- privileges.sql: roles, grants, SECURITY DEFINER hygiene, tenancy of web roles, settings
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
-- ids of this file start at 7000 whatever ran before, so output is stable
DO $$ BEGIN
	PERFORM setval('coupon.merchant_id_seq', 7000, false);
	PERFORM setval('coupon.policy_id_seq', 7000, false);
	PERFORM setval('coupon.coupon_id_seq', 7000 * 10, false);
	PERFORM setval('coupon.reservation_id_seq', 7000, false);
END $$;
-- refused(stmt, args...): 'refused' when the caller is turned away (PT403 or
-- permission denied), 'ok' when the statement ran, else the error
CREATE OR REPLACE FUNCTION refused(stmt text, VARIADIC args text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	r text := try(stmt, VARIADIC args);
BEGIN
	RETURN CASE WHEN r LIKE 'PT403 %' OR r LIKE '42501 %' THEN 'refused' ELSE r END;
END
$fn$;
-- shows(stmt, args...): does the query return any row to this caller? (an
-- error that turns the caller away counts as no)
CREATE OR REPLACE FUNCTION shows(stmt text, VARIADIC args text[] DEFAULT '{}')
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
	n bigint;
BEGIN
	EXECUTE format('SELECT count(*) FROM (%s) s', format(stmt, VARIADIC args)) INTO n;
	RETURN n > 0;
EXCEPTION WHEN insufficient_privilege OR SQLSTATE 'PT403' THEN
	RETURN false;
END
$fn$;

-- EXECUTE is revoked from PUBLIC on every function of the extension
SELECT p.oid::regprocedure AS executable_by_public
  FROM pg_proc p WHERE p.pronamespace = 'coupon'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE');
-- every SECURITY DEFINER function and every trigger function in SQL or
-- PL/pgSQL pins its search_path (docs/concepts.md, "One call context")
SELECT p.oid::regprocedure AS definer_or_trigger_without_search_path
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'coupon'::regnamespace
   AND (p.prosecdef OR (p.prorettype = 'trigger'::regtype AND l.lanname <> 'c'))
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);
-- and the C functions that run as their caller, trigger functions
-- included, run no SQL that a search path could change (they read below
-- SQL, schema-qualified); the one without SET search_path is the outbox's
-- trigger, which runs for every change of a coupon (docs/events.md)
SELECT p.oid::regprocedure AS c_invoker_function,
	   coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false) AS pins_search_path
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'coupon'::regnamespace AND l.lanname = 'c' AND NOT p.prosecdef
 ORDER BY p.oid::regprocedure::text;
-- nothing is IMMUTABLE (functions read settings); readers are STABLE
SELECT p.oid::regprocedure AS immutable_function
  FROM pg_proc p WHERE p.pronamespace = 'coupon'::regnamespace AND p.provolatile = 'i';
SELECT p.proname, p.provolatile FROM pg_proc p
 WHERE p.pronamespace = 'coupon'::regnamespace
   AND p.proname IN ('validate', 'user_coupons', 'issue', 'reserve', 'confirm', 'release',
                     'create_policy', 'set_policy_status', 'generate_codes', 'redeem_code',
                     'create_merchant', 'expire_reservations', 'expire_coupons')
 ORDER BY p.proname;
-- every table that holds data is dumped by pg_dump, except relay_state: a
-- position among this cluster's transaction ids, which a restored database
-- starts afresh, and outbox_lookup, which a restore makes again from the
-- outbox (docs/events.md)
SELECT c.relname AS table_not_dumped
  FROM pg_class c, pg_extension e
 WHERE e.extname = 'coupon' AND c.relnamespace = 'coupon'::regnamespace AND c.relkind = 'r'
   AND NOT c.oid = ANY (e.extconfig) ORDER BY c.relname;
-- row level security is on for every table (docs/concepts.md, "Tenancy")
SELECT c.relname AS table_without_rls
  FROM pg_class c WHERE c.relnamespace = 'coupon'::regnamespace AND c.relkind = 'r'
   AND NOT c.relrowsecurity ORDER BY c.relname;
-- the web roles and the app reach tables only through functions and views
SELECT r.rolname, c.relname AS table_granted
  FROM pg_class c, pg_roles r
 WHERE c.relnamespace = 'coupon'::regnamespace AND c.relkind = 'r'
   AND r.rolname IN ('coupon_app', 'coupon_merchant', 'coupon_customer')
   AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
 ORDER BY 1, 2;
SELECT r.rolname, has_table_privilege(r.rolname, 'coupon.policy_stats', 'SELECT') AS policy_stats
  FROM pg_roles r WHERE r.rolname LIKE 'coupon\_%' ORDER BY r.rolname;

-- who may call what
SELECT f.fn,
       has_function_privilege('coupon_admin', f.fn, 'EXECUTE') AS admin,
       has_function_privilege('coupon_app', f.fn, 'EXECUTE') AS app,
       has_function_privilege('coupon_merchant', f.fn, 'EXECUTE') AS merchant,
       has_function_privilege('coupon_customer', f.fn, 'EXECUTE') AS customer
  FROM (VALUES
	('coupon.create_merchant(text, text, integer, integer, integer)'),
	('coupon.create_policy(bigint, text, text, bigint, text, bigint, integer, bigint, bigint, timestamptz, timestamptz, integer, timestamptz, timestamptz, bigint[], integer, bigint, boolean, text)'),
	('coupon.set_policy_status(bigint, text)'),
	('coupon.issue(bigint, text, text)'),
	('coupon.generate_codes(bigint, integer)'),
	('coupon.redeem_code(text, text)'),
	('coupon.user_coupons(text, text)'),
	('coupon.validate(bigint, text, bigint, bigint)'),
	('coupon.reserve(bigint, text, bigint, text, bigint, interval)'),
	('coupon.confirm(bigint)'),
	('coupon.release(bigint)'),
	('coupon.expire_reservations(integer)'),
	('coupon.expire_coupons(integer)')
  ) AS f(fn);

-- the fixtures, made by the superuser
SELECT id AS m1 FROM coupon.create_merchant('Privileges shop') \gset
SELECT id AS m2 FROM coupon.create_merchant('Privileges other shop') \gset
SELECT id AS p1 FROM coupon.create_policy(:m1, 'direct of m1', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS p1_fcfs FROM coupon.create_policy(:m1, 'fcfs of m1', 'fixed', 1000, issue_method => 'fcfs', total_quantity => 100) \gset
SELECT id AS p1_code FROM coupon.create_policy(:m1, 'codes of m1', 'fixed', 1000, issue_method => 'code', per_user_limit => NULL) \gset
SELECT id AS p2 FROM coupon.create_policy(:m2, 'direct of m2', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT id AS p2_code FROM coupon.create_policy(:m2, 'codes of m2', 'fixed', 1000, issue_method => 'code') \gset
SELECT id AS p2_victim FROM coupon.create_policy(:m2, 'pause target of m2', 'fixed', 1000) \gset
SELECT id AS c1 FROM coupon.issue(:p1, 'cus-1') \gset
SELECT id AS c2 FROM coupon.issue(:p1, 'cus-2') \gset
SELECT id AS c_m2 FROM coupon.issue(:p2, 'cus-1') \gset
SELECT id AS r_m2 FROM coupon.reserve(:c_m2, 'cus-1', :m2, 'o-m2', 5000) \gset
SELECT array_agg(c) AS codes1 FROM coupon.generate_codes(:p1_code, 2) c \gset

-- a role without grants can call nothing
DROP ROLE IF EXISTS regress_coupon_nobody;
CREATE ROLE regress_coupon_nobody;
SET ROLE regress_coupon_nobody;
SELECT label, try(stmt, VARIADIC args) AS result FROM (VALUES
	('create_merchant', $$SELECT coupon.create_merchant('x')$$, '{}'::text[]),
	('issue',           $$SELECT coupon.issue(%s, 'x')$$, ARRAY[:'p1']),
	('validate',        $$SELECT coupon.validate(%s, 'cus-1', %s, 1)$$, ARRAY[:'c1', :'m1']),
	('user_coupons',    $$SELECT coupon.user_coupons('cus-1')$$, '{}'),
	('policy_stats',    $$SELECT * FROM coupon.policy_stats$$, '{}'),
	('coupon table',    $$SELECT * FROM coupon.coupon$$, '{}')
) AS t(label, stmt, args);
RESET ROLE;
DROP ROLE regress_coupon_nobody;

-- a merchant (JWT claim merchant_id) acts on its own merchant only
SET ROLE coupon_merchant;
SELECT set_config('request.jwt.claims', json_build_object('role', 'coupon_merchant', 'merchant_id', :m1)::text, false) IS NOT NULL AS as_m1;
SELECT name FROM coupon.create_policy(:m1, 'made by m1', 'fixed', 500);
SELECT label, refused(stmt, VARIADIC args) AS result FROM (VALUES
	('create_policy for m2',     $$SELECT coupon.create_policy(%s, 'x', 'fixed', 1)$$, ARRAY[:'m2']),
	('set_policy_status of m2',  $$SELECT coupon.set_policy_status(%s, 'paused')$$, ARRAY[:'p2']),
	('issue of m2',              $$SELECT coupon.issue(%s, 'cus-1')$$, ARRAY[:'p2']),
	('generate_codes of m2',     $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'p2_code']),
	('validate at m2',           $$SELECT coupon.validate(%s, 'cus-1', %s, 5000)$$, ARRAY[:'c_m2', :'m2']),
	('reserve at m2',            $$SELECT coupon.reserve(%s, 'cus-1', %s, 'o', 5000)$$, ARRAY[:'c_m2', :'m2']),
	('confirm at m2',            $$SELECT coupon.confirm(%s)$$, ARRAY[:'r_m2']),
	('release at m2',            $$SELECT coupon.release(%s)$$, ARRAY[:'r_m2']),
	('create_merchant',          $$SELECT coupon.create_merchant('x')$$, '{}'),
	('redeem_code',              $$SELECT coupon.redeem_code(%L, 'cus-9')$$, ARRAY[(:'codes1'::text[])[1]]),
	('user_coupons',             $$SELECT coupon.user_coupons('cus-1')$$, '{}'),
	('expire_coupons',           $$SELECT coupon.expire_coupons()$$, '{}'),
	('expire_reservations',      $$SELECT coupon.expire_reservations()$$, '{}'),
	('policy_stats',             $$SELECT * FROM coupon.policy_stats$$, '{}'),
	('coupon table',             $$SELECT * FROM coupon.coupon$$, '{}'),
	('own issue',                $$SELECT coupon.issue(%s, 'cus-3')$$, ARRAY[:'p1']),
	('own validate',             $$SELECT coupon.validate(%s, 'cus-1', %s, 5000)$$, ARRAY[:'c1', :'m1'])
) AS t(label, stmt, args);
-- a merchant_id claim that is not a whole number is not a merchant
SELECT claims, refused($$SELECT coupon.create_policy(%s, 'x', 'fixed', 1)$$, :'m2') AS acting_on_m2
  FROM (VALUES ('{"merchant_id": "abc"}'), ('{"merchant_id": true}'), ('{"merchant_id": [1]}'),
               (format('{"merchant_id": %s.4}', :m2)), (format('{"merchant_id": %s.5}', :m2 - 1)))
       AS t(claims)
 WHERE set_config('request.jwt.claims', t.claims, false) IS NOT NULL;
SELECT set_config('request.jwt.claims', json_build_object('merchant_id', :m1::text)::text, false) IS NOT NULL AS as_m1_text;
SELECT refused($$SELECT coupon.issue(%s, 'cus-1')$$, :'p2') AS string_claim_on_m2,
       refused($$SELECT coupon.issue(%s, 'cus-4')$$, :'p1') AS string_claim_on_m1;
-- a merchant role without a merchant_id claim is nobody's merchant
RESET request.jwt.claims;
SELECT refused($$SELECT coupon.create_policy(%s, 'x', 'fixed', 1)$$, :'m2') AS no_claim_create,
       refused($$SELECT coupon.set_policy_status(%s, 'paused')$$, :'p2_victim') AS no_claim_pause,
       refused($$SELECT coupon.issue(%s, 'cus-5')$$, :'p2') AS no_claim_issue;
SELECT set_config('request.jwt.claims', json_build_object('role', 'coupon_merchant', 'sub', 'someone')::text, false) IS NOT NULL AS claims_without_merchant;
SELECT refused($$SELECT coupon.create_policy(%s, 'x', 'fixed', 1)$$, :'m2') AS create_for_m2;
RESET request.jwt.claims;
RESET ROLE;

-- a customer (JWT sub) acts for itself only
SET ROLE coupon_customer;
SELECT set_config('request.jwt.claims', json_build_object('role', 'coupon_customer', 'sub', 'cus-1')::text, false) IS NOT NULL AS as_cus_1;
SELECT shows($$SELECT * FROM coupon.user_coupons('cus-1')$$) AS own_coupons;
SELECT shows($$SELECT * FROM coupon.user_coupons('cus-2')$$) AS others_coupons;
SELECT shows($$SELECT * FROM coupon.validate(%s, 'cus-1', %s, 5000) WHERE ok$$, :'c1', :'m1') AS own_validate;
SELECT shows($$SELECT * FROM coupon.validate(%s, 'cus-2', %s, 5000) WHERE ok$$, :'c2', :'m1') AS others_validate;
SELECT label, refused(stmt, VARIADIC args) AS result FROM (VALUES
	('fcfs coupon for itself',     $$SELECT coupon.issue(%s, 'cus-1')$$, ARRAY[:'p1_fcfs']),
	('fcfs coupon for another',    $$SELECT coupon.issue(%s, 'cus-2')$$, ARRAY[:'p1_fcfs']),
	('direct coupon for itself',   $$SELECT coupon.issue(%s, 'cus-1')$$, ARRAY[:'p1']),
	('redeem for another',         $$SELECT coupon.redeem_code(%L, 'cus-2')$$, ARRAY[(:'codes1'::text[])[1]]),
	('redeem for itself',          $$SELECT coupon.redeem_code(%L, 'cus-1')$$, ARRAY[(:'codes1'::text[])[2]]),
	('reserve',                    $$SELECT coupon.reserve(%s, 'cus-1', %s, 'o', 5000)$$, ARRAY[:'c1', :'m1']),
	('confirm',                    $$SELECT coupon.confirm(%s)$$, ARRAY[:'r_m2']),
	('create_policy',              $$SELECT coupon.create_policy(%s, 'x', 'fixed', 1)$$, ARRAY[:'m1']),
	('generate_codes',             $$SELECT coupon.generate_codes(%s, 1)$$, ARRAY[:'p1_code']),
	('set_policy_status',          $$SELECT coupon.set_policy_status(%s, 'paused')$$, ARRAY[:'p1']),
	('policy_stats',               $$SELECT * FROM coupon.policy_stats$$, '{}')
) AS t(label, stmt, args);
RESET request.jwt.claims;
RESET ROLE;
SELECT user_id, count(*) FROM coupon.coupon WHERE policy_id IN (:p1, :p1_fcfs, :p1_code) AND user_id IS NOT NULL
 GROUP BY user_id ORDER BY user_id;

-- the app (a trusted backend, no claims) acts for any merchant
SET ROLE coupon_app;
SELECT user_id FROM coupon.issue(:p2, 'cus-6');
SELECT count(*) > 0 AS sees_stats FROM coupon.policy_stats;
SELECT refused($$SELECT coupon.create_merchant('x')$$) AS create_merchant,
       refused($$SELECT coupon.expire_coupons()$$) AS expire_coupons,
       refused($$SELECT * FROM coupon.coupon$$) AS coupon_table;
-- settings: the code secret and the throttle are for superusers only
SHOW coupon.code_secret;
SELECT try($$SELECT current_setting('coupon.code_secret')$$) AS read_secret,
       try($$SET coupon.code_secret = 'mine'$$) AS set_secret,
       try($$SET coupon.code_max_failures = 1000$$) AS set_max_failures,
       try($$SET coupon.code_failure_window = 1$$) AS set_window,
       try($$SET coupon.reservation_ttl = 60$$) AS set_ttl;
RESET ROLE;
SELECT current_setting('coupon.code_secret') <> '' AS secret_is_set;
SELECT name FROM pg_settings WHERE name LIKE 'coupon.%' ORDER BY name;
SET coupon.no_such_setting = 1;
SELECT label, try(stmt) AS result FROM (VALUES
	('reservation_ttl 0',        $$SET coupon.reservation_ttl = 0$$),
	('reservation_ttl 604801',   $$SET coupon.reservation_ttl = 604801$$),
	('code_max_failures 0',      $$SET coupon.code_max_failures = 0$$),
	('code_max_failures 1001',   $$SET coupon.code_max_failures = 1001$$),
	('code_failure_window 0',    $$SET coupon.code_failure_window = 0$$),
	('reservation_ttl text',     $$SET coupon.reservation_ttl = 'soon'$$)
) AS t(label, stmt);

-- none of the refused calls changed anything
SELECT count(*) AS policies_made_by_m1 FROM coupon.policy WHERE name = 'made by m1';
SELECT count(*) AS stray_policies FROM coupon.policy WHERE name = 'x';
SELECT p.name, p.status FROM coupon.policy p WHERE p.merchant_id = :m2 ORDER BY p.id;
SELECT policy_id = :p2_code AS of_p2_code, count(*) AS codes FROM coupon.coupon WHERE policy_id = :p2_code GROUP BY 1;
SELECT status FROM coupon.reservation WHERE id = :r_m2;
SELECT status FROM coupon.coupon WHERE id = :c_m2;
