-- pgTAP: the shape of the coupon schema and who may call what.
--
-- Tables, views and the SQL API of docs/api.md (with the argument
-- names callers use), the privileges of docs/operations.md, "Roles and privileges" (EXECUTE revoked from
-- PUBLIC, granted per role), SECURITY DEFINER functions pinning search_path,
-- no IMMUTABLE functions, every table registered with
-- pg_extension_config_dump, and a comment on every table, view, column and
-- function.
BEGIN;
SELECT plan(248);

-- the API of this version: name, argument types, argument names
CREATE TEMP TABLE api (fn text, args text[], argnames text[], volatility text) ON COMMIT DROP;
INSERT INTO api VALUES
	('create_merchant', '{text,text,integer,integer,integer}',
	 '{name,currency,commission_bp,pg_fee_bp,settlement_delay_days}', 'v'),
	('create_policy', '{bigint,text,text,bigint,text,bigint,integer,bigint,bigint,"timestamp with time zone","timestamp with time zone",integer,"timestamp with time zone","timestamp with time zone",bigint[],integer,bigint,boolean,text}',
	 '{merchant_id,name,discount_type,discount_value,issue_method,total_quantity,per_user_limit,max_discount,min_order_amount,valid_from,valid_until,valid_days,issue_starts_at,issue_ends_at,allowed_merchants,merchant_share_bp,budget,stackable,status}', 'v'),
	('set_policy_status', '{bigint,text}', '{policy_id,status}', 'v'),
	('issue', '{bigint,text,text}', '{policy_id,user_id,idempotency_key}', 'v'),
	('generate_codes', '{bigint,integer}', '{policy_id,count}', 'v'),
	('redeem_code', '{text,text}', '{code,user_id}', 'v'),
	('user_coupons', '{text,text}', '{user_id,status}', 's'),
	('validate', '{bigint,text,bigint,bigint}', '{coupon_id,user_id,merchant_id,order_amount}', 's'),
	('reserve', '{bigint,text,bigint,text,bigint,interval}',
	 '{coupon_id,user_id,merchant_id,order_id,order_amount,ttl}', 'v'),
	('confirm', '{bigint}', '{reservation_id}', 'v'),
	('release', '{bigint}', '{reservation_id}', 'v'),
	('expire_reservations', '{integer}', '{max_rows}', 'v'),
	('expire_coupons', '{integer}', '{max_rows}', 'v'),
	('pay', '{bigint,text,text,bigint,bigint[],text,text}',
	 '{merchant_id,user_id,order_id,amount,coupon_ids,payment_key,idempotency_key}', 'v'),
	('cancel_payment', '{bigint,text,bigint,text}', '{payment_id,reason,amount,idempotency_key}', 'v'),
	('payment_status', '{bigint,integer}', '{payment_id,events}', 's'),
	('process_payments', '{integer}', '{max_rows}', 'v'),
	('retry_payment', '{bigint}', '{payment_id}', 'v'),
	('run_settlement', '{"timestamp with time zone"}', '{until}', 'v'),
	('settlement_report', '{bigint,date,date}', '{merchant_id,from_date,to_date}', 's'),
	('reconcile', '{date}', '{day}', 'v'),
	('schedule_jobs', '{text}', '{settlement_cron}', 'v'),
	('unschedule_jobs', '{}', '{}', 'v'),
	('purge', '{interval}', '{older_than}', 'v');

-- 1-17: schema, tables, views
SELECT has_schema('coupon');
SELECT has_table('coupon', t, 'table coupon.' || t || ' exists')
  FROM unnest('{merchant,policy,policy_stock,coupon,reservation,idempotency_key,payment,payment_event,payment_refund,settlement,settlement_item,reconciliation_issue,settlement_problem}'::text[]) t;
SELECT has_view('coupon', v, 'view coupon.' || v || ' exists')
  FROM unnest('{policy_stats,worker_status,stuck_payments}'::text[]) v;

-- 18-41: every API function of this version, with its argument types
SELECT has_function('coupon', fn, args, format('coupon.%s(%s) exists', fn, array_to_string(args, ', ')))
  FROM api ORDER BY fn;

-- 42-65: argument names as docs/api.md spells them (PostgREST bodies use them)
SELECT is((SELECT coalesce(p.proargnames[1:cardinality(a.argnames)], '{}')
			 FROM pg_proc p
			WHERE p.oid = to_regprocedure(format('coupon.%s(%s)', a.fn, array_to_string(a.args, ',')))),
		  a.argnames, format('coupon.%s has argument names %s', a.fn, a.argnames::text))
  FROM api a ORDER BY fn;

-- 66-89: readers are STABLE, everything else VOLATILE
SELECT volatility_is('coupon', fn, args, CASE volatility WHEN 's' THEN 'stable' ELSE 'volatile' END,
					 format('coupon.%s is %s', fn, CASE volatility WHEN 's' THEN 'STABLE' ELSE 'VOLATILE' END))
  FROM api ORDER BY fn;

-- 90-93: the roles of docs/operations.md exist and cannot log in
SELECT has_role(r, 'role ' || r || ' exists')
  FROM unnest('{coupon_admin,coupon_app,coupon_merchant,coupon_customer}'::text[]) r;
-- 93
SELECT is((SELECT count(*) FROM pg_roles
			WHERE rolname IN ('coupon_admin', 'coupon_app', 'coupon_merchant', 'coupon_customer')
			  AND (rolcanlogin OR rolsuper)),
		  0::bigint, 'the coupon roles are NOLOGIN and not superusers');

-- 94: EXECUTE revoked from PUBLIC on every function of the schema
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p
	  JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
	 WHERE n.nspname = 'coupon' AND a.grantee = 0 AND a.privilege_type = 'EXECUTE'$$,
	'no coupon function is executable by PUBLIC');

-- 95: coupon_admin may run every function of the schema
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'coupon' AND NOT has_function_privilege('coupon_admin', p.oid, 'EXECUTE')$$,
	'coupon_admin may execute every coupon function');

-- 97-192: the grant matrix: (function, role) -> EXECUTE or nothing
--   coupon_app: a trusted backend acting for any merchant (not tenant creation, not the
--     sweepers, not settlement runs, reconciliation, housekeeping or jobs; their reports)
--   coupon_merchant: a merchant's own policies, codes, holds, payments and settlement report
--   coupon_customer: claiming and reading one's own coupons, reading one's payments (the
--     merchant's side creates payments, so no customer can claim a merchant's order id)
CREATE TEMP TABLE grants (fn text, role text, may boolean) ON COMMIT DROP;
INSERT INTO grants
SELECT fn, role,
	   CASE role
		   WHEN 'coupon_admin' THEN true
		   WHEN 'coupon_app' THEN fn IN ('create_policy', 'set_policy_status', 'issue', 'generate_codes',
										 'redeem_code', 'user_coupons', 'validate', 'reserve',
										 'confirm', 'release', 'pay', 'cancel_payment', 'payment_status',
										 'settlement_report')
		   WHEN 'coupon_merchant' THEN fn IN ('create_policy', 'set_policy_status', 'issue',
											  'generate_codes', 'validate', 'reserve', 'confirm',
											  'release', 'pay', 'cancel_payment', 'payment_status',
											  'settlement_report')
		   WHEN 'coupon_customer' THEN fn IN ('issue', 'redeem_code', 'user_coupons', 'validate',
											  'payment_status')
	   END
  FROM api, unnest('{coupon_admin,coupon_app,coupon_merchant,coupon_customer}'::text[]) role;
SELECT function_privs_are('coupon', g.fn, a.args, g.role,
						  CASE WHEN g.may THEN '{EXECUTE}'::text[] ELSE '{}'::text[] END,
						  format('%s %s execute coupon.%s', g.role, CASE WHEN g.may THEN 'may' ELSE 'may not' END, g.fn))
  FROM grants g JOIN api a USING (fn) ORDER BY g.fn, g.role;

-- 192: the web roles never reach platform operations
SELECT is_empty($$
	SELECT r || ' ' || f
	  FROM unnest('{coupon_merchant,coupon_customer}'::text[]) r,
		   unnest(ARRAY['coupon.create_merchant(text,text,integer,integer,integer)',
					 'coupon.expire_reservations(integer)', 'coupon.expire_coupons(integer)',
					 'coupon.process_payments(integer)', 'coupon.retry_payment(bigint)',
					 'coupon.run_settlement(timestamp with time zone)', 'coupon.reconcile(date)',
					 'coupon.purge(interval)', 'coupon.schedule_jobs(text)', 'coupon.unschedule_jobs()']) f
	 WHERE has_function_privilege(r, f, 'EXECUTE')$$,
	'coupon_merchant and coupon_customer cannot create merchants, run the sweepers, drive the saga, settle, reconcile, purge or schedule jobs');

-- 193: every SECURITY DEFINER function and every trigger function but the
-- outbox's (C, run for every change of a coupon, resolving no name through
-- the path) pins search_path by a SET clause (sql/reserve.sql shows that a
-- caller's search path cannot reach inside)
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'coupon' AND (p.prosecdef OR p.prorettype = 'trigger'::regtype)
	   AND p.oid <> 'coupon.outbox_capture()'::regprocedure
	   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%')$$,
	'every SECURITY DEFINER function and every trigger function but outbox_capture pins search_path');

-- 194: the API functions run as definer (callers get no table privileges),
-- except schedule_jobs and unschedule_jobs, deliberately SECURITY INVOKER:
-- pg_cron jobs belong to the role that schedules them (cron.schedule records
-- current_user, and the job runs as that role), so they must run as the
-- calling role, not as the extension's owner; and validate, which reads by
-- primary key in C without SQL and needs no rights (its SET clauses cost a
-- fifth of a call)
SELECT is_empty($$
	SELECT fn FROM api
	 WHERE (SELECT prosecdef FROM pg_proc
			 WHERE oid = to_regprocedure(format('coupon.%s(%s)', fn, array_to_string(args, ','))))
		   = (fn IN ('schedule_jobs', 'unschedule_jobs', 'validate'))$$,
	'every API function is SECURITY DEFINER, but schedule_jobs and unschedule_jobs (jobs belong to the caller) and validate (no SQL inside)');

-- 195: never IMMUTABLE (they read settings)
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'coupon' AND p.provolatile = 'i'$$,
	'no coupon function is IMMUTABLE');

-- 196: web roles have no direct table privileges (they go through the functions)
SELECT is_empty($$
	SELECT r || ' ' || c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
		   unnest('{coupon_merchant,coupon_customer}'::text[]) r
	 WHERE n.nspname = 'coupon' AND c.relkind = 'r'
	   AND has_table_privilege(r, c.oid, 'SELECT, INSERT, UPDATE, DELETE')$$,
	'coupon_merchant and coupon_customer have no direct table privileges');

-- 198-199: pg_dump keeps the data: every table and identity sequence is an
-- extension config table, except relay_state, a position among this
-- cluster's transaction ids that a restored database starts afresh, and
-- outbox_lookup, which a restore makes again from the outbox
SELECT is_empty($$
	SELECT c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND c.relkind = 'r' AND c.relname NOT IN ('relay_state', 'outbox_lookup')
	   AND c.oid <> ALL (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'coupon')$$,
	'every coupon table is registered with pg_extension_config_dump');
SELECT is_empty($$
	SELECT c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND c.relkind = 'S'
	   AND c.oid <> ALL (SELECT unnest(extconfig) FROM pg_extension WHERE extname = 'coupon')$$,
	'every coupon sequence is registered with pg_extension_config_dump');

-- 200-204: comments everywhere
SELECT is_empty($$
	SELECT c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND c.relkind IN ('r', 'v', 'm', 'p')
	   AND obj_description(c.oid, 'pg_class') IS NULL$$,
	'every coupon table and view has a comment');
SELECT is_empty($$
	SELECT c.relname || '.' || a.attname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE n.nspname = 'coupon' AND c.relkind IN ('r', 'p')
	   AND col_description(c.oid, a.attnum) IS NULL$$,
	'every column of every coupon table has a comment');
SELECT is_empty($$
	SELECT c.relname || '.' || a.attname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	 WHERE n.nspname = 'coupon' AND c.relkind IN ('v', 'm')
	   AND col_description(c.oid, a.attnum) IS NULL$$,
	'every column of every coupon view has a comment');
SELECT is_empty($$
	SELECT p.oid::regprocedure::text
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname = 'coupon' AND obj_description(p.oid, 'pg_proc') IS NULL$$,
	'every coupon function has a comment');
SELECT isnt(obj_description('coupon'::regnamespace, 'pg_namespace'), NULL, 'schema coupon has a comment');
-- comments on triggers, row-level security policies and roles (0.10)
SELECT is_empty($$
	SELECT t.tgrelid::regclass || '.' || t.tgname
	  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND NOT t.tgisinternal AND obj_description(t.oid, 'pg_trigger') IS NULL$$,
	'every coupon trigger has a comment');
SELECT is_empty($$
	SELECT p.polrelid::regclass || '.' || p.polname
	  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND obj_description(p.oid, 'pg_policy') IS NULL$$,
	'every coupon row-level security policy has a comment');
SELECT is_empty($$
	SELECT rolname FROM pg_roles
	 WHERE rolname IN ('coupon_admin', 'coupon_app', 'coupon_merchant', 'coupon_customer',
					   'coupon_anonymous', 'coupon_monitor')
	   AND shobj_description(oid, 'pg_authid') IS NULL$$,
	'every coupon role has a comment');

-- 205-218: the data model's key constraints
SELECT has_pk('coupon', t, 'coupon.' || t || ' has a primary key')
  FROM unnest('{merchant,policy,policy_stock,coupon,reservation,idempotency_key,payment,payment_event,payment_refund,settlement,settlement_item,reconciliation_issue,settlement_problem}'::text[]) t;
SELECT ok(EXISTS (SELECT 1 FROM pg_index i
				   WHERE i.indrelid = 'coupon.reservation'::regclass AND i.indisunique
					 AND pg_get_expr(i.indpred, i.indrelid) LIKE '%held%'),
		  'at most one held reservation per coupon is a unique index');

-- tenancy (docs/operations.md, "Roles and privileges")
SELECT is_empty($$
	SELECT c.relname
	  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	 WHERE n.nspname = 'coupon' AND c.relkind = 'r' AND NOT c.relrowsecurity$$,
	'row level security is enabled on every coupon table');

-- 220-221: merchant credentials and the PostgREST sign-in (0.8)
SELECT has_function('coupon', f, 'coupon.' || f || ' exists')
  FROM unnest('{merchant_credentials,pre_request}'::text[]) f;
-- 222: the merchant's statistics (0.8)
SELECT has_view('coupon', 'merchant_stats', 'view coupon.merchant_stats exists');
-- 223-227: metrics (0.9): what the exporter's role (a coupon_monitor member) reads, and no table
SELECT has_view('coupon', 'payment_backlog', 'view coupon.payment_backlog exists');
SELECT has_function('coupon', 'throttle_status', '{}'::name[], 'coupon.throttle_status() exists');
SELECT function_privs_are('coupon', 'throttle_status', '{}'::name[], 'coupon_monitor', '{EXECUTE}',
						  'coupon_monitor may execute coupon.throttle_status()');
SELECT table_privs_are('coupon', 'payment_backlog', 'coupon_monitor', '{SELECT}',
					   'coupon_monitor may read coupon.payment_backlog');
SELECT table_privs_are('coupon', 'payment', 'coupon_monitor', '{}',
					   'coupon_monitor may not read coupon.payment itself');
-- 228-236: the outbox and its relay (0.9)
SELECT has_table('coupon', 'outbox', 'table coupon.outbox exists');
SELECT has_view('coupon', 'relay_status', 'view coupon.relay_status exists');
SELECT has_function('coupon', f, 'coupon.' || f || ' exists')
  FROM unnest('{events,rebuild_redis_caches,purge_outbox,relay_skip}'::text[]) f;
SELECT table_privs_are('coupon', 'relay_status', 'coupon_monitor', '{SELECT}',
					   'coupon_monitor may read coupon.relay_status');
SELECT function_privs_are('coupon', 'events', '{text,bigint}'::name[], 'coupon_merchant', '{EXECUTE}',
						  'coupon_merchant may execute coupon.events (its own merchant''s events)');
SELECT function_privs_are('coupon', 'events', '{text,bigint}'::name[], 'coupon_customer', '{}',
						  'coupon_customer may not execute coupon.events');
-- 240-243: a checkout writes one index of the outbox, its primary key; the
-- audit trail's lookup by aggregate is a table of its own (0.12; an index
-- on the outbox before)
SELECT indexes_are('coupon', 'outbox', '{outbox_pkey}', 'the outbox has its primary key and no other index');
SELECT has_table('coupon', 'outbox_lookup', 'table coupon.outbox_lookup exists');
SELECT col_is_pk('coupon', 'outbox_lookup', ARRAY['aggregate_id', 'event_id', 'xid']::name[],
				 'outbox_lookup is keyed by aggregate id, then the outbox''s own key');
SELECT table_privs_are('coupon', 'outbox_lookup', 'coupon_monitor', '{}',
					   'coupon_monitor may not read coupon.outbox_lookup');
-- 244-248: a checkout writes no index at all: its events wait in the
-- queue, a table without one, with the outbox's columns (0.13)
SELECT has_table('coupon', 'outbox_queue', 'table coupon.outbox_queue exists');
SELECT indexes_are('coupon', 'outbox_queue', '{}', 'the queue has no index');
SELECT is((SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
							ORDER BY a.attnum)
			 FROM pg_attribute a WHERE a.attrelid = 'coupon.outbox_queue'::regclass AND a.attnum > 0),
		  (SELECT array_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull
							ORDER BY a.attnum)
			 FROM pg_attribute a WHERE a.attrelid = 'coupon.outbox'::regclass AND a.attnum > 0),
		  'the queue has the outbox''s columns, in its order, with its types and NOT NULLs');
SELECT is((SELECT relrowsecurity FROM pg_class WHERE oid = 'coupon.outbox_queue'::regclass), true,
		  'the queue has row level security, as the outbox');
SELECT table_privs_are('coupon', 'outbox_queue', 'coupon_monitor', '{}',
					   'coupon_monitor may not read coupon.outbox_queue');

SELECT * FROM finish();
ROLLBACK;
