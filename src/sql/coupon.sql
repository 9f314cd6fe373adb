/*
 * coupon.sql: the coupon extension as it is now (version 0.10), written out
 * in full.
 *
 * `make` copies this file to coupon--0.10.sql, the script CREATE EXTENSION
 * coupon runs.  Read top to bottom, it is the whole schema: the roles, the
 * types, each table once with all its columns, constraints, indexes,
 * triggers, row-level security and comments, then the functions grouped by
 * concern, the views, the privileges and the tables pg_dump saves.
 *
 * The released scripts beside it (coupon--0.1.sql and the upgrades
 * coupon--X--Y.sql) are kept as they were released: ALTER EXTENSION coupon
 * UPDATE runs them to bring an older installation to this version.  The
 * load test test/load/upgrade.sh installs this file in one database, 0.1
 * and every upgrade in another, and requires their catalogs to agree.  So
 * a change of the schema is made twice: here, and in the upgrade script of
 * the next version (README.md, "Changing the schema").
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION coupon" to load this file. \quit

/* ================================================================ roles */

/*
 * Roles are cluster-wide, so the script creates them only when they are
 * missing and DROP EXTENSION leaves them in place.  docs/operations.md
 * ("Roles") says who is meant to hold each; the privileges are granted at
 * the end of this file.  The login role PostgREST connects as (the
 * authenticator) is made by scripts/postgrest_roles.sql, which an operator
 * runs with its password.
 */
DO $roles$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['coupon_admin', 'coupon_app', 'coupon_merchant', 'coupon_customer',
							 'coupon_anonymous', 'coupon_monitor']
	LOOP
		IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
			EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
		END IF;
	END LOOP;
END
$roles$;
COMMENT ON ROLE coupon_admin IS 'coupon: platform operators; every function, and SELECT on every table and view (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_app IS 'coupon: a trusted backend acting for any merchant: policies, issuance, codes, validation, holds, payments (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_merchant IS 'coupon: a merchant''s session or server (PostgREST), bound to its merchant: the merchant''s own policies, coupons, holds and payments (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_customer IS 'coupon: a customer''s session (PostgREST): issue, redeem_code, user_coupons, validate, payment_status, its own (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_anonymous IS 'coupon: PostgREST requests without a JWT; pre_request() only, which signs a merchant''s server in with client credentials (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_monitor IS 'coupon: monitoring; SELECT on the status views and throttle_status(), no table (docs/operations.md, "Roles").';

COMMENT ON SCHEMA coupon IS 'coupon and payment platform (extension coupon)';

/* ================================================================ types */

/*
 * Domains for the columns of coupon and reservation, which every issue and
 * checkout writes.  PostgreSQL parses a table's CHECK constraints from
 * their stored text again in every statement that writes the table
 * (ExecRelCheck, per executor start), while a domain's constraints are
 * parsed once per backend into the type cache and checked only on the
 * columns a statement assigns.  With the status lists among them, that
 * parsing was about a fifth of a checkout's CPU (reserve + confirm,
 * bench/run.sh).  Checks that span several columns stay on the tables.
 */
CREATE DOMAIN coupon.external_id AS text
	CONSTRAINT external_id_check CHECK (length(VALUE) BETWEEN 1 AND 200);
COMMENT ON DOMAIN coupon.external_id IS 'An id the application gives (a user, an order): 1 to 200 characters.';

CREATE DOMAIN coupon.amount AS bigint
	CONSTRAINT amount_check CHECK (VALUE BETWEEN 0 AND 1000000000000000);
COMMENT ON DOMAIN coupon.amount IS 'An amount in minor units of the currency: 0 to 10^15.';

CREATE DOMAIN coupon.coupon_status AS text
	CONSTRAINT coupon_status_check
	CHECK (VALUE IN ('unclaimed', 'issued', 'reserved', 'used', 'expired', 'cancelled'));
COMMENT ON DOMAIN coupon.coupon_status IS 'A coupon''s state: unclaimed, issued, reserved, used, expired or cancelled.';

CREATE DOMAIN coupon.reservation_status AS text
	CONSTRAINT reservation_status_check
	CHECK (VALUE IN ('held', 'confirmed', 'released', 'expired'));
COMMENT ON DOMAIN coupon.reservation_status IS 'A reservation''s state: held, confirmed, released or expired.';

/*
 * What validate() answers.  A named row type rather than OUT parameters:
 * the executor builds the row type of OUT parameters from pg_proc on every
 * call, and looks a named one up in the type cache.
 */
CREATE TYPE coupon.validation AS (
	ok boolean,
	discount bigint,
	reason text
);
COMMENT ON TYPE coupon.validation IS 'What validate() answers: whether a coupon applies to an order, and the discount it would give.';
COMMENT ON COLUMN coupon.validation.ok IS 'True when the coupon can be used for the order (reason is ok).';
COMMENT ON COLUMN coupon.validation.discount IS 'The discount it would give, in minor units; 0 unless ok.';
COMMENT ON COLUMN coupon.validation.reason IS 'ok, or the first business rule that fails (a reason code of the error contract).';

/* ==================================================== trigger functions */

/*
 * Merchants, policies and coupons are never deleted (they are suspended,
 * retired, revoked or expire), so the hot child tables (coupon -> policy,
 * reservation -> merchant and coupon) carry no foreign keys: a
 * foreign-key check share-locks the one parent row that every concurrent
 * issuer or checkout of a shop points at, which costs a multixact per
 * write.  This trigger keeps the parents in place instead; its argument
 * is the hint.
 */
CREATE FUNCTION coupon.forbid_delete() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
		USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[0];
END
$$;
COMMENT ON FUNCTION coupon.forbid_delete() IS 'Trigger: merchants, policies and coupons are never deleted, so rows that point at them stay valid without foreign keys; the trigger''s argument is the hint.';

/* the append-only tables: the payment event log, settlement batches and items */
CREATE FUNCTION coupon.forbid_change() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RAISE EXCEPTION '% is append-only', TG_TABLE_NAME
		USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[0];
END
$$;
COMMENT ON FUNCTION coupon.forbid_change() IS 'Trigger: the table is append-only (the payment event log, settlement batches and items); the trigger''s argument is the hint.';

/*
 * validate() keeps copies of the policy and merchant facts it reads in
 * each backend (src/factcache.c), so a call probes only the coupon.  The
 * copies go on PostgreSQL's own invalidation: this trigger registers a
 * relcache invalidation of the changed table and holds SHARE on
 * coupon.fact_change_guard until its transaction ends (docs/concepts.md,
 * "validate()'s copies").
 */
CREATE FUNCTION coupon.note_fact_change() RETURNS trigger
AS 'MODULE_PATHNAME', 'coupon_note_fact_change'
LANGUAGE C
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.note_fact_change() IS
'Trigger: registers a relcache invalidation of the changed table (sent when the transaction commits, at COMMIT PREPARED for a prepared one) and holds SHARE on coupon.fact_change_guard until the transaction ends.';

/* the refund ledger, which settlement reads */
CREATE FUNCTION coupon.record_refund() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	INSERT INTO coupon.payment_refund (payment_id, amount, full_refund)
	VALUES (NEW.id, NEW.refunded_amount - OLD.refunded_amount, NEW.state = 'refunded');
	RETURN NULL;
END
$$;
COMMENT ON FUNCTION coupon.record_refund() IS 'Trigger: every refund that goes through (refunded_amount grows, or the payment becomes refunded) gets a row in payment_refund.';

/*
 * Trace ids: on the payment, and on each of its events, copied by this
 * trigger (so the module's own statements need not name the column).
 */
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

/*
 * The outbox (docs/events.md).  No SET search_path here, unlike every
 * other trigger function: this one is C, resolves no name through the path
 * (it reads and writes below SQL; its one statement names its operator's
 * schema), and it runs for every change of a coupon, so the clause's cost
 * (a setting saved and restored per row) would fall on every checkout.
 * Nor WHEN clauses on its triggers: the single-row writes of a checkout
 * (rowwrite.c) would parse them again for each row; the function decides
 * in C which changes are events and returns at once for the others.
 */
CREATE FUNCTION coupon.outbox_capture() RETURNS trigger
AS 'MODULE_PATHNAME', 'coupon_outbox_capture'
LANGUAGE C;
COMMENT ON FUNCTION coupon.outbox_capture() IS 'Trigger: writes the outbox row of a change of a coupon, hold, policy, payment, refund or settlement batch that is an event (its first argument names the table; docs/events.md says which changes are events). Does nothing under COPY.';

/*
 * Rows put into the outbox by SQL: a restore's COPY, or an INSERT by hand
 * (the events of a change are written below SQL, and fire no statement
 * trigger).  Those the relay's position already counts as published get
 * their lookup rows here, as the relay would have given them.
 */
CREATE FUNCTION coupon.outbox_restored() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
	SELECT n.aggregate_id, n.event_id, n.xid
	  FROM restored n, coupon.relay_state r
	 WHERE pg_visible_in_snapshot(n.xid, r.published_through)
	ON CONFLICT DO NOTHING;
	RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION coupon.outbox_restored() IS 'Trigger: gives rows put into the outbox by SQL (a restore''s COPY, an INSERT by hand) that the relay''s position counts as published their outbox_lookup rows (docs/events.md, "The audit trail").';

/* =============================================================== tables */

/*
 * Every table has row-level security on.  The API functions are SECURITY
 * DEFINER and run as the extension owner, who bypasses it; coupon_admin
 * reads every row through the policy admin_all, and no other role has
 * privileges on a table.
 *
 * The order of each table's columns, and of its unique indexes, is the one
 * a database updated from 0.1 has (columns added by an update come last);
 * the upgrade test compares both.
 */

/* ------------------------------------------------------------- merchants */

CREATE TABLE coupon.merchant (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	currency text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
	commission_bp integer NOT NULL DEFAULT 0 CHECK (commission_bp BETWEEN 0 AND 10000),
	pg_fee_bp integer NOT NULL DEFAULT 0 CHECK (pg_fee_bp BETWEEN 0 AND 10000),
	settlement_delay_days integer NOT NULL DEFAULT 1 CHECK (settlement_delay_days BETWEEN 0 AND 365),
	status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
	client_id text UNIQUE,
	client_secret_hash text,
	created_at timestamptz NOT NULL DEFAULT now(),
	previous_secret_hash text,
	previous_secret_until timestamptz,
	rate_limit_per_minute integer CHECK (rate_limit_per_minute BETWEEN 1 AND 10000000)
);

COMMENT ON TABLE coupon.merchant IS 'A tenant (shop) that issues coupons and receives payments.';
COMMENT ON COLUMN coupon.merchant.id IS 'Merchant id.';
COMMENT ON COLUMN coupon.merchant.name IS 'Display name, 1 to 200 characters.';
COMMENT ON COLUMN coupon.merchant.currency IS 'ISO 4217 currency code; every amount of this merchant is in its minor unit.';
COMMENT ON COLUMN coupon.merchant.commission_bp IS 'Platform commission in basis points of the merchant''s sale value.';
COMMENT ON COLUMN coupon.merchant.pg_fee_bp IS 'Payment gateway fee in basis points of the amount charged.';
COMMENT ON COLUMN coupon.merchant.settlement_delay_days IS 'Days between a sale and the settlement batch that pays it out.';
COMMENT ON COLUMN coupon.merchant.status IS 'active, or suspended (no new policies, issuance or use).';
COMMENT ON COLUMN coupon.merchant.client_id IS 'The merchant''s client id for the partner API (merchant_credentials()); NULL until issued or after a revoke.';
COMMENT ON COLUMN coupon.merchant.client_secret_hash IS 'SHA-256 (hex) of the current client secret; the secret itself is shown once and never stored.';
COMMENT ON COLUMN coupon.merchant.created_at IS 'When the merchant was created.';
COMMENT ON COLUMN coupon.merchant.previous_secret_hash IS 'SHA-256 (hex) of the secret before the last rotation, accepted until previous_secret_until.';
COMMENT ON COLUMN coupon.merchant.previous_secret_until IS 'End of the grace period of the previous secret.';
COMMENT ON COLUMN coupon.merchant.rate_limit_per_minute IS 'Requests per minute each client of the merchant may make through PostgREST (a burst of as many, then this rate); NULL: no limit.';

CREATE TRIGGER merchant_no_delete BEFORE DELETE OR TRUNCATE ON coupon.merchant
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete('Suspend a merchant instead.');
COMMENT ON TRIGGER merchant_no_delete ON coupon.merchant IS 'Refuses DELETE and TRUNCATE: a merchant is suspended with set_merchant_status(), never removed, so rows that point at it stay valid without foreign keys.';

/* (ENABLE ALWAYS: the trigger fires even under session_replication_role =
 * replica, logical replication's apply; CREATE TRIGGER cannot say so) */
CREATE TRIGGER merchant_fact_change AFTER UPDATE ON coupon.merchant
	FOR EACH ROW EXECUTE FUNCTION coupon.note_fact_change();
ALTER TABLE coupon.merchant ENABLE ALWAYS TRIGGER merchant_fact_change;
COMMENT ON TRIGGER merchant_fact_change ON coupon.merchant IS 'Drops every session''s copies of merchants (validate()''s facts) when the change commits; fires even in replica sessions.';

ALTER TABLE coupon.merchant ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.merchant TO coupon_admin USING (true);

/* -------------------------------------------------------------- policies */

CREATE TABLE coupon.policy (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	merchant_id bigint NOT NULL REFERENCES coupon.merchant (id),
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	discount_type text NOT NULL CHECK (discount_type IN ('fixed', 'percent', 'balance')),
	discount_value bigint NOT NULL CHECK (discount_value > 0),
	max_discount bigint CHECK (max_discount > 0),
	min_order_amount bigint NOT NULL DEFAULT 0 CHECK (min_order_amount >= 0),
	issue_method text NOT NULL CHECK (issue_method IN ('direct', 'code', 'fcfs')),
	total_quantity bigint CHECK (total_quantity > 0),
	per_user_limit integer CHECK (per_user_limit > 0),
	valid_from timestamptz,
	valid_until timestamptz,
	valid_days integer CHECK (valid_days > 0),
	issue_starts_at timestamptz,
	issue_ends_at timestamptz,
	allowed_merchants bigint[],
	merchant_share_bp integer NOT NULL DEFAULT 10000 CHECK (merchant_share_bp BETWEEN 0 AND 10000),
	budget bigint CHECK (budget > 0),
	budget_used bigint NOT NULL DEFAULT 0 CHECK (budget_used >= 0 AND budget_used <= coalesce(budget, budget_used)),
	codes_generated bigint NOT NULL DEFAULT 0 CHECK (codes_generated >= 0),
	stackable boolean NOT NULL DEFAULT false,
	status text NOT NULL DEFAULT 'active' CHECK (status IN ('draft', 'active', 'paused', 'retired')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK (issue_method <> 'fcfs' OR total_quantity IS NOT NULL),
	CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from < valid_until),
	CHECK (issue_starts_at IS NULL OR issue_ends_at IS NULL OR issue_starts_at < issue_ends_at),
	CHECK (discount_type = 'percent' OR max_discount IS NULL),
	CHECK (discount_type <> 'percent' OR discount_value <= 10000)
);
CREATE INDEX policy_merchant_idx ON coupon.policy (merchant_id);

COMMENT ON TABLE coupon.policy IS 'A coupon template: what a coupon is worth, who may get it, how, when and how many.';
COMMENT ON COLUMN coupon.policy.id IS 'Policy id.';
COMMENT ON COLUMN coupon.policy.merchant_id IS 'The issuing merchant.';
COMMENT ON COLUMN coupon.policy.name IS 'Display name, 1 to 200 characters.';
COMMENT ON COLUMN coupon.policy.discount_type IS 'fixed (an amount off), percent (basis points off) or balance (stored value spent over several orders).';
COMMENT ON COLUMN coupon.policy.discount_value IS 'Amount off (fixed), basis points 1..10000 (percent) or starting balance (balance), in minor units.';
COMMENT ON COLUMN coupon.policy.max_discount IS 'Cap of a percent discount; NULL = no cap.';
COMMENT ON COLUMN coupon.policy.min_order_amount IS 'Smallest order amount the coupon applies to.';
COMMENT ON COLUMN coupon.policy.issue_method IS 'direct (issued by the merchant), code (redeemed from a generated code) or fcfs (first come, first served).';
COMMENT ON COLUMN coupon.policy.total_quantity IS 'Most coupons (or codes) that will ever exist; NULL = unlimited; required for fcfs.';
COMMENT ON COLUMN coupon.policy.per_user_limit IS 'Most coupons of this policy one user may hold over time; NULL = unlimited.';
COMMENT ON COLUMN coupon.policy.valid_from IS 'Coupons are usable from this instant (NULL = from issue).';
COMMENT ON COLUMN coupon.policy.valid_until IS 'Coupons are usable until this instant (NULL = no absolute end).';
COMMENT ON COLUMN coupon.policy.valid_days IS 'Coupons expire this many days after issue (the earlier of this and valid_until wins).';
COMMENT ON COLUMN coupon.policy.issue_starts_at IS 'Issuance opens at this instant (NULL = now).';
COMMENT ON COLUMN coupon.policy.issue_ends_at IS 'Issuance closes at this instant (NULL = never).';
COMMENT ON COLUMN coupon.policy.allowed_merchants IS 'Merchants where the coupon may be spent; NULL = the issuer only.';
COMMENT ON COLUMN coupon.policy.merchant_share_bp IS 'Share of the discount funded by the merchant, in basis points; the platform funds the rest.';
COMMENT ON COLUMN coupon.policy.budget IS 'Most discount the policy may grant in total; NULL = no budget.';
COMMENT ON COLUMN coupon.policy.budget_used IS 'Discount held or granted so far against the budget (maintained under the policy row lock).';
COMMENT ON COLUMN coupon.policy.codes_generated IS 'Codes generated so far (code policies).';
COMMENT ON COLUMN coupon.policy.stackable IS 'Whether the coupon may be combined with other coupons on one order.';
COMMENT ON COLUMN coupon.policy.status IS 'draft, active, paused (no issuance, no use) or retired (no issuance; issued coupons stay usable).';
COMMENT ON COLUMN coupon.policy.created_at IS 'When the policy was created.';
COMMENT ON COLUMN coupon.policy.updated_at IS 'When the policy last changed.';

CREATE TRIGGER policy_no_delete BEFORE DELETE OR TRUNCATE ON coupon.policy
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete('Retire a policy instead.');
COMMENT ON TRIGGER policy_no_delete ON coupon.policy IS 'Refuses DELETE and TRUNCATE: a policy is paused or retired, never removed, so the coupons that point at it stay valid without foreign keys.';

-- budgeted policies are never copied (budget_used moves with every hold)
CREATE TRIGGER policy_fact_change AFTER UPDATE ON coupon.policy
	FOR EACH ROW WHEN (OLD.budget IS NULL OR NEW.budget IS NULL)
	EXECUTE FUNCTION coupon.note_fact_change();
ALTER TABLE coupon.policy ENABLE ALWAYS TRIGGER policy_fact_change;
COMMENT ON TRIGGER policy_fact_change ON coupon.policy IS 'Drops every session''s copies of policies (validate()''s facts) when the change of a policy without a budget (before or after) commits; fires even in replica sessions.';

CREATE TRIGGER policy_outbox AFTER INSERT OR UPDATE ON coupon.policy
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('policy');
COMMENT ON TRIGGER policy_outbox ON coupon.policy IS 'Records policy.created, and policy.changed or policy.paused when a term or the status changes (not the running budget and code counters), in the outbox.';

ALTER TABLE coupon.policy ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.policy TO coupon_admin USING (true);

CREATE TABLE coupon.policy_stock (
	policy_id bigint NOT NULL REFERENCES coupon.policy (id),
	shard integer NOT NULL,
	remaining bigint NOT NULL CHECK (remaining >= 0),
	PRIMARY KEY (policy_id, shard)
) WITH (fillfactor = 50);

COMMENT ON TABLE coupon.policy_stock IS 'Remaining stock of a limited policy, split over shards so concurrent issuers do not queue on one row.';
COMMENT ON COLUMN coupon.policy_stock.policy_id IS 'The policy.';
COMMENT ON COLUMN coupon.policy_stock.shard IS 'Shard number, 0 .. coupon.stock_shards - 1.';
COMMENT ON COLUMN coupon.policy_stock.remaining IS 'Units left in this shard.';

ALTER TABLE coupon.policy_stock ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.policy_stock TO coupon_admin USING (true);

/* --------------------------------------------------------------- coupons */

/*
 * No index mentions status, not even in a predicate, and the table leaves
 * room on its pages: reserve, confirm and release change only status,
 * balance and timestamps, so those updates are HOT and write no index.
 * One CHECK constraint, as few as can be: PostgreSQL parses each one from
 * its stored text in every statement that writes the table.
 */
CREATE TABLE coupon.coupon (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	policy_id bigint NOT NULL,
	user_id coupon.external_id,
	user_seq integer,
	code_hash bytea,
	status coupon.coupon_status NOT NULL DEFAULT 'issued',
	balance coupon.amount,
	issued_at timestamptz,
	expires_at timestamptz,
	used_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT coupon_state_check CHECK (
		(status = 'unclaimed') = (user_id IS NULL)
		AND (status = 'unclaimed' OR issued_at IS NOT NULL)
		AND user_seq > 0)
) WITH (fillfactor = 90);
CREATE UNIQUE INDEX coupon_code_idx ON coupon.coupon (code_hash) WHERE code_hash IS NOT NULL;
CREATE INDEX coupon_expiry_idx ON coupon.coupon (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX coupon_user_idx ON coupon.coupon (user_id);
CREATE UNIQUE INDEX coupon_policy_user_idx ON coupon.coupon (policy_id, user_id, user_seq);

COMMENT ON TABLE coupon.coupon IS 'An issued coupon (or, for code policies, a generated code not yet redeemed).';
COMMENT ON COLUMN coupon.coupon.id IS 'Coupon id.';
COMMENT ON COLUMN coupon.coupon.policy_id IS 'The policy the coupon was issued from.';
COMMENT ON COLUMN coupon.coupon.user_id IS 'The holder (caller''s user id); NULL while a code is unclaimed.';
COMMENT ON COLUMN coupon.coupon.user_seq IS 'Ordinal of this coupon among the user''s coupons of a limited policy (1..per_user_limit); unique, so the limit holds whatever the isolation level.';
COMMENT ON COLUMN coupon.coupon.code_hash IS 'HMAC-SHA256 of the code with coupon.code_secret; the plain code is never stored.';
COMMENT ON COLUMN coupon.coupon.status IS 'unclaimed, issued, reserved, used, expired or cancelled.';
COMMENT ON COLUMN coupon.coupon.balance IS 'Remaining stored value of a balance coupon; NULL for other types.';
COMMENT ON COLUMN coupon.coupon.issued_at IS 'When the user got the coupon.';
COMMENT ON COLUMN coupon.coupon.expires_at IS 'When the coupon stops being usable (NULL = never).';
COMMENT ON COLUMN coupon.coupon.used_at IS 'When the coupon was last spent.';
COMMENT ON COLUMN coupon.coupon.updated_at IS 'When the coupon last changed state.';
COMMENT ON CONSTRAINT coupon_state_check ON coupon.coupon IS 'Only an unclaimed coupon (a code not yet redeemed) has no holder, every other one has an issue time, and a holder''s sequence number starts at 1.';

CREATE TRIGGER coupon_no_delete BEFORE DELETE OR TRUNCATE ON coupon.coupon
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete(
		'Coupons stay as the record of what was issued and spent; an unusable one keeps its final status.');
COMMENT ON TRIGGER coupon_no_delete ON coupon.coupon IS 'Refuses DELETE and TRUNCATE: a coupon is revoked or expires, never removed, as holds and payments refer to it.';

CREATE TRIGGER coupon_outbox AFTER INSERT OR UPDATE ON coupon.coupon
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('coupon');
COMMENT ON TRIGGER coupon_outbox ON coupon.coupon IS 'Records coupon.issued, .redeemed, .used, .restored, .expired and .revoked in the outbox (a hold''s steps are the reservation''s events; a code not yet redeemed is none).';

ALTER TABLE coupon.coupon ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.coupon TO coupon_admin USING (true);

CREATE TABLE coupon.reservation (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	coupon_id bigint NOT NULL,
	merchant_id bigint NOT NULL,
	user_id coupon.external_id NOT NULL,
	order_id coupon.external_id NOT NULL,
	payment_id bigint,
	order_amount coupon.amount NOT NULL,
	discount bigint NOT NULL CHECK (discount >= 0 AND discount <= order_amount),
	status coupon.reservation_status NOT NULL DEFAULT 'held',
	expires_at timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reservation_payment_idx ON coupon.reservation (payment_id) WHERE payment_id IS NOT NULL;
CREATE INDEX reservation_order_idx ON coupon.reservation (merchant_id, order_id);
/* one live hold per coupon; also the lookup of a coupon's hold */
CREATE UNIQUE INDEX reservation_one_hold_idx ON coupon.reservation (coupon_id) WHERE status = 'held';
CREATE INDEX reservation_expiry_idx ON coupon.reservation (expires_at) WHERE status = 'held';

COMMENT ON TABLE coupon.reservation IS 'A hold on a coupon for one order, like a pending transfer: confirmed when the order is paid, released otherwise.';
COMMENT ON COLUMN coupon.reservation.id IS 'Reservation id.';
COMMENT ON COLUMN coupon.reservation.coupon_id IS 'The coupon held (no foreign key: coupons are never deleted, see coupon_no_delete).';
COMMENT ON COLUMN coupon.reservation.merchant_id IS 'The merchant where the coupon is spent.';
COMMENT ON COLUMN coupon.reservation.user_id IS 'The coupon holder.';
COMMENT ON COLUMN coupon.reservation.order_id IS 'The caller''s order id.';
COMMENT ON COLUMN coupon.reservation.payment_id IS 'The payment that owns the hold (NULL for a hold made with reserve()); such holds never expire on their own.';
COMMENT ON COLUMN coupon.reservation.order_amount IS 'Order amount the discount was computed for.';
COMMENT ON COLUMN coupon.reservation.discount IS 'Discount granted by this hold.';
COMMENT ON COLUMN coupon.reservation.status IS 'held, confirmed, released or expired.';
COMMENT ON COLUMN coupon.reservation.expires_at IS 'A held reservation past this instant is released by expire_reservations().';
COMMENT ON COLUMN coupon.reservation.created_at IS 'When the hold was made.';
COMMENT ON COLUMN coupon.reservation.updated_at IS 'When the hold last changed state.';

CREATE TRIGGER reservation_outbox AFTER INSERT OR UPDATE ON coupon.reservation
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('reservation');
COMMENT ON TRIGGER reservation_outbox ON coupon.reservation IS 'Records coupon.reserved, .confirmed, .released and .hold_expired in the outbox.';

ALTER TABLE coupon.reservation ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.reservation TO coupon_admin USING (true);

CREATE TABLE coupon.idempotency_key (
	merchant_id bigint NOT NULL REFERENCES coupon.merchant (id),
	key text NOT NULL CHECK (length(key) BETWEEN 1 AND 300),
	request_hash bytea NOT NULL,
	response jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	actor text NOT NULL DEFAULT '',
	PRIMARY KEY (merchant_id, actor, key)
);
CREATE INDEX idempotency_key_created_idx ON coupon.idempotency_key (created_at);

COMMENT ON TABLE coupon.idempotency_key IS 'Idempotency keys per merchant, kept 24 hours: the same key and request replay the first response.';
COMMENT ON COLUMN coupon.idempotency_key.merchant_id IS 'The merchant the key belongs to.';
COMMENT ON COLUMN coupon.idempotency_key.key IS 'The caller''s key, 1 to 300 characters.';
COMMENT ON COLUMN coupon.idempotency_key.request_hash IS 'SHA-256 of the function name and its arguments.';
COMMENT ON COLUMN coupon.idempotency_key.response IS 'The first response, replayed for the same request.';
COMMENT ON COLUMN coupon.idempotency_key.created_at IS 'When the key was first used; keys older than 24 hours are ignored and purged.';
COMMENT ON COLUMN coupon.idempotency_key.actor IS 'Who used the key within the merchant: ''client:<client_id>'' (header credentials), ''user:<sub>'' (a customer), or '''' (a trusted caller).';

ALTER TABLE coupon.idempotency_key ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.idempotency_key TO coupon_admin USING (true);

/* -------------------------------------------------------------- payments */

CREATE TABLE coupon.payment (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	merchant_id bigint NOT NULL,
	user_id text NOT NULL CHECK (length(user_id) BETWEEN 1 AND 200),
	order_id text NOT NULL CHECK (length(order_id) BETWEEN 1 AND 200),
	amount bigint NOT NULL CHECK (amount BETWEEN 0 AND 1000000000000000),
	discount bigint NOT NULL DEFAULT 0 CHECK (discount BETWEEN 0 AND amount),
	coupon_ids bigint[] NOT NULL DEFAULT '{}',
	payment_key text NOT NULL CHECK (length(payment_key) BETWEEN 1 AND 200),
	state text NOT NULL DEFAULT 'pending' CHECK (state IN (
		'pending', 'authorizing', 'approved', 'completed', 'voiding', 'releasing',
		'failed', 'refunding', 'refunded', 'partially_refunded', 'needs_attention')),
	resume_state text CHECK (resume_state IN (
		'pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')),
	attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	next_attempt_at timestamptz NOT NULL DEFAULT now(),
	lease_until timestamptz,
	approved_amount bigint NOT NULL DEFAULT 0 CHECK (approved_amount >= 0),
	refunded_amount bigint NOT NULL DEFAULT 0
		CHECK (refunded_amount BETWEEN 0 AND approved_amount),
	refund_amount bigint CHECK (refund_amount > 0),
	refund_reason text CHECK (length(refund_reason) BETWEEN 1 AND 200),
	refunds integer NOT NULL DEFAULT 0 CHECK (refunds >= 0),
	last_error text,
	trace_id text NOT NULL DEFAULT pg_catalog.md5(pg_catalog.random()::text || pg_catalog.clock_timestamp()::text),
	created_at timestamptz NOT NULL DEFAULT now(),
	authorized_at timestamptz,
	approved_at timestamptz,
	completed_at timestamptz,
	failed_at timestamptz,
	refunded_at timestamptz,
	updated_at timestamptz NOT NULL DEFAULT now(),
	CHECK (approved_amount <= amount - discount),
	UNIQUE (merchant_id, order_id)
) WITH (fillfactor = 80);
CREATE INDEX payment_due_idx ON coupon.payment (next_attempt_at)
	WHERE state IN ('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding');
CREATE INDEX payment_user_idx ON coupon.payment (user_id);
/*
 * While the gateway cannot be called (no coupon.gateway_url, or the circuit
 * is open) the saga claims only the local steps; this index keeps that claim
 * from reading the whole backlog of payments waiting for the gateway.
 */
CREATE INDEX payment_local_due_idx ON coupon.payment (next_attempt_at)
	WHERE state IN ('approved', 'releasing');
CREATE UNIQUE INDEX payment_key_idx ON coupon.payment (payment_key);
COMMENT ON INDEX coupon.payment_key_idx IS 'One payment per gateway paymentKey: a key cannot be given to two payments.';
/*
 * stuck_payments reads its needs_attention arm through this index and its
 * other arm through payment_due_idx (a bitmap OR of the two), instead of
 * the whole table.  Only payments in needs_attention are in it, so the
 * saga's writes rarely touch it; state is in payment_due_idx's predicate
 * anyway, so payment updates lose no HOT update to it.
 */
CREATE INDEX payment_attention_idx ON coupon.payment (updated_at) WHERE state = 'needs_attention';
COMMENT ON INDEX coupon.payment_attention_idx IS
'Payments in needs_attention, by when they stopped: with payment_due_idx, keeps stuck_payments and payment_backlog from reading the whole table.';

COMMENT ON TABLE coupon.payment IS 'The payment saga: one row per payment, its state and what to do next (docs/saga.md).';
COMMENT ON COLUMN coupon.payment.id IS 'Payment id; with the step, the Idempotency-Key of every gateway call (<id>-confirm, <id>-void, <id>-refund-<n>).';
COMMENT ON COLUMN coupon.payment.merchant_id IS 'The merchant paid.';
COMMENT ON COLUMN coupon.payment.user_id IS 'The paying customer.';
COMMENT ON COLUMN coupon.payment.order_id IS 'The caller''s order id, unique per merchant. The gateway sees orderId "cp-<payment id>", unique across merchants.';
COMMENT ON COLUMN coupon.payment.amount IS 'Order amount before discounts, in minor units.';
COMMENT ON COLUMN coupon.payment.discount IS 'Total discount of the payment''s coupons (stacking rules applied).';
COMMENT ON COLUMN coupon.payment.coupon_ids IS 'The coupons spent, in ascending id order; each is held by a reservation owned by this payment.';
COMMENT ON COLUMN coupon.payment.payment_key IS 'The gateway''s paymentKey (from the checkout widget, or "pk-<payment id>" when pay() got none).';
COMMENT ON COLUMN coupon.payment.state IS 'pending, authorizing, approved, completed, voiding, releasing, failed, refunding, refunded, partially_refunded or needs_attention.';
COMMENT ON COLUMN coupon.payment.resume_state IS 'For needs_attention: the state retry_payment() resumes from.';
COMMENT ON COLUMN coupon.payment.attempts IS 'Gateway calls made for the current step.';
COMMENT ON COLUMN coupon.payment.next_attempt_at IS 'When the next step is due; while a call is in flight, the end of its lease.';
COMMENT ON COLUMN coupon.payment.lease_until IS 'While a worker has a call in flight: when its claim lapses and another worker may take the step over.';
COMMENT ON COLUMN coupon.payment.approved_amount IS 'Amount the gateway approved (amount - discount once approved, else 0).';
COMMENT ON COLUMN coupon.payment.refunded_amount IS 'Amount refunded so far.';
COMMENT ON COLUMN coupon.payment.refund_amount IS 'The refund in progress or requested (refunding, or a cancel waiting for the authorization''s outcome).';
COMMENT ON COLUMN coupon.payment.refund_reason IS 'Reason given to cancel_payment(), sent to the gateway as cancelReason.';
COMMENT ON COLUMN coupon.payment.refunds IS 'Refunds requested so far; numbers the refund steps'' idempotency keys.';
COMMENT ON COLUMN coupon.payment.last_error IS 'The last failure in words (gateway code and message, or transport error).';
COMMENT ON COLUMN coupon.payment.trace_id IS 'The request''s trace id (coupon.trace_id, set by pre_request() from X-Trace-Id or traceparent), or a random one; sent to the gateway with each call.';
COMMENT ON COLUMN coupon.payment.created_at IS 'When pay() committed it.';
COMMENT ON COLUMN coupon.payment.authorized_at IS 'When the first confirm was claimed for sending (committed just before it goes out); NULL: no confirm ever went out.';
COMMENT ON COLUMN coupon.payment.approved_at IS 'When the gateway''s approval was recorded.';
COMMENT ON COLUMN coupon.payment.completed_at IS 'When the coupons were spent and the payment completed.';
COMMENT ON COLUMN coupon.payment.failed_at IS 'When the payment failed (coupons released, nothing charged).';
COMMENT ON COLUMN coupon.payment.refunded_at IS 'When the last refund was recorded.';
COMMENT ON COLUMN coupon.payment.updated_at IS 'When the row last changed.';

CREATE TRIGGER payment_refund_ledger
	AFTER UPDATE OF refunded_amount, state ON coupon.payment
	FOR EACH ROW
	WHEN (NEW.refunded_amount > OLD.refunded_amount OR (NEW.state = 'refunded' AND OLD.state <> 'refunded'))
	EXECUTE FUNCTION coupon.record_refund();
COMMENT ON TRIGGER payment_refund_ledger ON coupon.payment IS 'Writes a payment_refund row for every refund that goes through (refunded_amount grows, or the payment becomes refunded).';

CREATE TRIGGER payment_outbox AFTER INSERT OR UPDATE ON coupon.payment
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('payment');
COMMENT ON TRIGGER payment_outbox ON coupon.payment IS 'Records payment.pending and each state the payment enters (payment.<state>) in the outbox.';

ALTER TABLE coupon.payment ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.payment TO coupon_admin USING (true);

CREATE TABLE coupon.payment_event (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	payment_id bigint NOT NULL,
	at timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
	step text NOT NULL,
	from_state text,
	to_state text,
	attempt integer,
	idempotency_key text,
	http_status integer,
	gateway_code text,
	latency_ms double precision,
	error text,
	actor text NOT NULL DEFAULT 'backend',
	trace_id text
);
CREATE INDEX payment_event_payment_idx ON coupon.payment_event (payment_id, id);

COMMENT ON TABLE coupon.payment_event IS 'Append-only log of every saga transition and gateway exchange.';
COMMENT ON COLUMN coupon.payment_event.id IS 'Event id, in the order events were written.';
COMMENT ON COLUMN coupon.payment_event.payment_id IS 'The payment.';
COMMENT ON COLUMN coupon.payment_event.at IS 'When the event was written.';
COMMENT ON COLUMN coupon.payment_event.step IS 'created (pay), cancel or cancel_requested (cancel_payment; the latter waits for the authorization), retry (retry_payment), or a saga step: confirm, lookup, void, refund, spend_coupons, release_coupons. A full refund gives the coupons back within its refund step.';
COMMENT ON COLUMN coupon.payment_event.from_state IS 'State before the event.';
COMMENT ON COLUMN coupon.payment_event.to_state IS 'State after the event.';
COMMENT ON COLUMN coupon.payment_event.attempt IS 'Attempt number of the step.';
COMMENT ON COLUMN coupon.payment_event.idempotency_key IS 'Idempotency-Key of the gateway call.';
COMMENT ON COLUMN coupon.payment_event.http_status IS 'HTTP status of the gateway''s answer (0: none: timeout, refused, reset).';
COMMENT ON COLUMN coupon.payment_event.gateway_code IS 'The gateway''s Payment.status or error code.';
COMMENT ON COLUMN coupon.payment_event.latency_ms IS 'Duration of the gateway call.';
COMMENT ON COLUMN coupon.payment_event.error IS 'The failure in words, if any.';
COMMENT ON COLUMN coupon.payment_event.actor IS 'Who wrote it: "worker N" or "backend" (pay, cancel_payment, retry_payment, process_payments).';
COMMENT ON COLUMN coupon.payment_event.trace_id IS 'The trace id of the payment (coupon.trace_id when it was created, e.g. from the X-Trace-Id header), copied when the event is written.';

CREATE TRIGGER payment_event_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.payment_event
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change('Events are never edited or removed.');
COMMENT ON TRIGGER payment_event_append_only ON coupon.payment_event IS 'Refuses UPDATE, DELETE and TRUNCATE: a payment''s events are its audit trail, only ever appended.';

CREATE TRIGGER payment_event_trace_id BEFORE INSERT ON coupon.payment_event
	FOR EACH ROW EXECUTE FUNCTION coupon.copy_trace_id();
COMMENT ON TRIGGER payment_event_trace_id ON coupon.payment_event IS 'Copies the payment''s trace id onto each of its events.';

ALTER TABLE coupon.payment_event ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.payment_event TO coupon_admin USING (true);

/* ------------------------------------------------------------ settlement */

CREATE TABLE coupon.payment_refund (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	payment_id bigint NOT NULL,
	amount bigint NOT NULL CHECK (amount >= 0),
	full_refund boolean NOT NULL,
	refunded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_refund_payment_idx ON coupon.payment_refund (payment_id, id);
CREATE INDEX payment_refund_at_idx ON coupon.payment_refund (refunded_at);

COMMENT ON TABLE coupon.payment_refund IS 'Ledger of refunds that went through, one row per refund, written by a trigger on payment; settlement reads it.';
COMMENT ON COLUMN coupon.payment_refund.id IS 'Refund id, in the order refunds went through.';
COMMENT ON COLUMN coupon.payment_refund.payment_id IS 'The payment refunded.';
COMMENT ON COLUMN coupon.payment_refund.amount IS 'Amount given back to the customer through the gateway (0 for a payment the coupons paid wholly).';
COMMENT ON COLUMN coupon.payment_refund.full_refund IS 'True for the refund that completed the payment''s refund (its coupons were given back).';
COMMENT ON COLUMN coupon.payment_refund.refunded_at IS 'When the refund was recorded.';

CREATE TRIGGER payment_refund_outbox AFTER INSERT ON coupon.payment_refund
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('payment_refund');
COMMENT ON TRIGGER payment_refund_outbox ON coupon.payment_refund IS 'Records payment.refunded in the outbox.';

ALTER TABLE coupon.payment_refund ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.payment_refund TO coupon_admin USING (true);

CREATE TABLE coupon.settlement (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	merchant_id bigint NOT NULL,
	period_end timestamptz NOT NULL,
	sales integer NOT NULL,
	refunds integer NOT NULL,
	gross bigint NOT NULL,
	discount_merchant bigint NOT NULL,
	discount_platform bigint NOT NULL,
	charged bigint NOT NULL,
	commission bigint NOT NULL,
	pg_fee bigint NOT NULL,
	items_payout bigint NOT NULL,
	carry_in bigint NOT NULL CHECK (carry_in <= 0),
	payout bigint NOT NULL CHECK (payout >= 0),
	carry_out bigint NOT NULL CHECK (carry_out <= 0),
	status text NOT NULL CHECK (status IN ('payable', 'carried_forward')),
	created_at timestamptz NOT NULL DEFAULT now(),
	CHECK (payout + carry_out = items_payout + carry_in),
	CHECK (items_payout + commission + pg_fee - discount_platform = charged)
);
CREATE INDEX settlement_merchant_idx ON coupon.settlement (merchant_id, id);

COMMENT ON TABLE coupon.settlement IS 'One settlement batch per merchant and run: what the merchant is paid out (docs/settlement.md).';
COMMENT ON COLUMN coupon.settlement.id IS 'Batch id.';
COMMENT ON COLUMN coupon.settlement.merchant_id IS 'The merchant paid.';
COMMENT ON COLUMN coupon.settlement.period_end IS 'The batch holds items that happened before this instant (the run''s until minus the merchant''s settlement_delay_days).';
COMMENT ON COLUMN coupon.settlement.sales IS 'Sale items in the batch.';
COMMENT ON COLUMN coupon.settlement.refunds IS 'Refund and adjustment items in the batch.';
COMMENT ON COLUMN coupon.settlement.gross IS 'Sum of the items'' gross (order amounts; refunds negative).';
COMMENT ON COLUMN coupon.settlement.discount_merchant IS 'Discounts funded by the merchant.';
COMMENT ON COLUMN coupon.settlement.discount_platform IS 'Discounts funded by the platform.';
COMMENT ON COLUMN coupon.settlement.charged IS 'What customers paid through the gateway, net of refunds.';
COMMENT ON COLUMN coupon.settlement.commission IS 'Platform commission, summed over items.';
COMMENT ON COLUMN coupon.settlement.pg_fee IS 'Gateway fees, summed over items.';
COMMENT ON COLUMN coupon.settlement.items_payout IS 'Sum of the items'' payouts (negative when refunds outweigh sales).';
COMMENT ON COLUMN coupon.settlement.carry_in IS 'Negative balance carried from the merchant''s previous batch (0 or less).';
COMMENT ON COLUMN coupon.settlement.payout IS 'Amount to pay the merchant: items_payout + carry_in when positive, else 0.';
COMMENT ON COLUMN coupon.settlement.carry_out IS 'Negative balance carried into the next batch (0 or less).';
COMMENT ON COLUMN coupon.settlement.status IS 'payable (payout > 0 or nothing owed) or carried_forward (the balance is negative).';
COMMENT ON COLUMN coupon.settlement.created_at IS 'When the batch was built.';

CREATE TRIGGER settlement_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.settlement
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change(
		'Settled figures are never edited or removed; a later batch corrects them with adjustments.');
COMMENT ON TRIGGER settlement_append_only ON coupon.settlement IS 'Refuses UPDATE, DELETE and TRUNCATE: settled figures are never edited or removed; a later batch corrects them with adjustments.';

CREATE TRIGGER settlement_outbox AFTER INSERT ON coupon.settlement
	FOR EACH ROW EXECUTE FUNCTION coupon.outbox_capture('settlement');
COMMENT ON TRIGGER settlement_outbox ON coupon.settlement IS 'Records settlement.created in the outbox.';

ALTER TABLE coupon.settlement ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.settlement TO coupon_admin USING (true);

/*
 * Batches and items are append-only, which keeps every item's batch in
 * place without a foreign key (its row-by-row check was most of the cost
 * of writing a million items), and settlement_report reaches a merchant's
 * items through its batches rather than through an index on merchant_id
 * that every item would land in at a random place.
 */
CREATE TABLE coupon.settlement_item (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	settlement_id bigint NOT NULL,
	merchant_id bigint NOT NULL,
	payment_id bigint NOT NULL,
	refund_id bigint,
	kind text NOT NULL CHECK (kind IN ('sale', 'refund', 'adjustment')),
	policy_id bigint,
	occurred_at timestamptz NOT NULL,
	gross bigint NOT NULL,
	discount_merchant bigint NOT NULL,
	discount_platform bigint NOT NULL,
	charged bigint NOT NULL,
	base bigint NOT NULL,
	commission bigint NOT NULL,
	pg_fee bigint NOT NULL,
	payout bigint NOT NULL,
	CHECK (charged = gross - discount_merchant - discount_platform),
	CHECK (base = gross - discount_merchant),
	CHECK (payout = base - commission - pg_fee),
	CHECK ((kind = 'sale') = (refund_id IS NULL))
);
CREATE UNIQUE INDEX settlement_item_once_idx ON coupon.settlement_item (payment_id, refund_id) NULLS NOT DISTINCT;
CREATE INDEX settlement_item_settlement_idx ON coupon.settlement_item (settlement_id);

COMMENT ON TABLE coupon.settlement_item IS 'One row per sale, refund or adjustment, with every figure of the settlement formulas (docs/settlement.md); each payment''s sale and each refund is settled exactly once.';
COMMENT ON COLUMN coupon.settlement_item.id IS 'Item id.';
COMMENT ON COLUMN coupon.settlement_item.settlement_id IS 'The batch that settled it (no foreign key: batches are never removed, see the append-only triggers).';
COMMENT ON COLUMN coupon.settlement_item.merchant_id IS 'The merchant paid.';
COMMENT ON COLUMN coupon.settlement_item.payment_id IS 'The payment.';
COMMENT ON COLUMN coupon.settlement_item.refund_id IS 'The refund (payment_refund.id); NULL for the sale.';
COMMENT ON COLUMN coupon.settlement_item.kind IS 'sale; refund (settled in the same batch as its sale); adjustment (a refund of a payment settled in an earlier batch).';
COMMENT ON COLUMN coupon.settlement_item.policy_id IS 'The policy of the payment''s first coupon (NULL: no coupon); settlement_report groups by it.';
COMMENT ON COLUMN coupon.settlement_item.occurred_at IS 'When the sale completed or the refund went through.';
COMMENT ON COLUMN coupon.settlement_item.gross IS 'Order amount (a refund: minus the amount given back, or the whole sale reversed for the refund that completes it).';
COMMENT ON COLUMN coupon.settlement_item.discount_merchant IS 'd_m: discount funded by the merchant (each coupon''s discount times its policy''s merchant_share_bp, rounded half up).';
COMMENT ON COLUMN coupon.settlement_item.discount_platform IS 'd_p: discount funded by the platform.';
COMMENT ON COLUMN coupon.settlement_item.charged IS 'gross - d_m - d_p: what the customer paid through the gateway.';
COMMENT ON COLUMN coupon.settlement_item.base IS 'gross - d_m: the merchant''s sale value.';
COMMENT ON COLUMN coupon.settlement_item.commission IS 'round_half_up(base * commission_bp / 10000).';
COMMENT ON COLUMN coupon.settlement_item.pg_fee IS 'round_half_up(charged * pg_fee_bp / 10000).';
COMMENT ON COLUMN coupon.settlement_item.payout IS 'base - commission - pg_fee; payout + commission + pg_fee - d_p = charged.';

CREATE TRIGGER settlement_item_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON coupon.settlement_item
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_change(
		'Settled figures are never edited or removed; a later batch corrects them with adjustments.');
COMMENT ON TRIGGER settlement_item_append_only ON coupon.settlement_item IS 'Refuses UPDATE, DELETE and TRUNCATE: a batch''s items are what was settled; a later batch corrects them with adjustments.';

ALTER TABLE coupon.settlement_item ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.settlement_item TO coupon_admin USING (true);

CREATE TABLE coupon.reconciliation_issue (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	day date NOT NULL,
	kind text NOT NULL CHECK (kind IN ('missing_at_gateway', 'missing_in_database', 'amount_mismatch', 'status_mismatch')),
	payment_id bigint,
	order_id text NOT NULL,
	gateway_amount bigint,
	database_amount bigint,
	detail text NOT NULL,
	found_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX reconciliation_issue_day_idx ON coupon.reconciliation_issue (day);

COMMENT ON TABLE coupon.reconciliation_issue IS 'Differences reconcile() found between the payments and the gateway''s transaction list; a new run for a day replaces that day''s findings.';
COMMENT ON COLUMN coupon.reconciliation_issue.id IS 'Finding id.';
COMMENT ON COLUMN coupon.reconciliation_issue.day IS 'The day reconciled.';
COMMENT ON COLUMN coupon.reconciliation_issue.kind IS 'missing_at_gateway, missing_in_database, amount_mismatch or status_mismatch.';
COMMENT ON COLUMN coupon.reconciliation_issue.payment_id IS 'The payment, when the order is one of ours.';
COMMENT ON COLUMN coupon.reconciliation_issue.order_id IS 'The gateway''s orderId (cp-<payment id>).';
COMMENT ON COLUMN coupon.reconciliation_issue.gateway_amount IS 'What the gateway says (approved, or net of cancels for status_mismatch).';
COMMENT ON COLUMN coupon.reconciliation_issue.database_amount IS 'What the database says.';
COMMENT ON COLUMN coupon.reconciliation_issue.detail IS 'The difference in one sentence.';
COMMENT ON COLUMN coupon.reconciliation_issue.found_at IS 'When reconcile() found it.';

ALTER TABLE coupon.reconciliation_issue ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.reconciliation_issue TO coupon_admin USING (true);

-- merchants a settlement run could not settle, and why; the others were
-- settled all the same
CREATE TABLE coupon.settlement_problem (
	id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	merchant_id bigint NOT NULL,
	period_end timestamptz NOT NULL,
	reason text NOT NULL CHECK (reason IN ('totals_out_of_range')),
	detail jsonb NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settlement_problem_merchant_idx ON coupon.settlement_problem (merchant_id, id);

COMMENT ON TABLE coupon.settlement_problem IS 'Merchants a run_settlement() call left unsettled, and why (each also raised a WARNING); the other merchants of the run were settled. Their items stay unsettled for a later run.';
COMMENT ON COLUMN coupon.settlement_problem.id IS 'Problem id.';
COMMENT ON COLUMN coupon.settlement_problem.merchant_id IS 'The merchant left unsettled.';
COMMENT ON COLUMN coupon.settlement_problem.period_end IS 'The cutoff of the batch that could not be made.';
COMMENT ON COLUMN coupon.settlement_problem.reason IS 'totals_out_of_range: a total of the batch would pass 2^62 minor units; settle the merchant with earlier cutoffs, a shorter period at a time.';
COMMENT ON COLUMN coupon.settlement_problem.detail IS 'The figures that did not fit (numeric, as text) and the number of items.';
COMMENT ON COLUMN coupon.settlement_problem.created_at IS 'When the run met it (its transaction''s start).';

ALTER TABLE coupon.settlement_problem ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.settlement_problem TO coupon_admin USING (true);

/* ------------------------------------------------- validate()'s copies */

/*
 * A lock only (see note_fact_change() above).  Like every table of the
 * extension it has row-level security on and is dumped; it has no policy,
 * as it never holds a row.
 */
CREATE TABLE coupon.fact_change_guard ();

COMMENT ON TABLE coupon.fact_change_guard IS
'Never holds rows; a lock only: a transaction that changed a policy or merchant holds SHARE on it until it ends, after its invalidation went out, and validate() uses its copies only when it can take ROW EXCLUSIVE at once.';

ALTER TABLE coupon.fact_change_guard ENABLE ROW LEVEL SECURITY;

/* ---------------------------------------------------------------- events */

/*
 * One row per business event, written by the triggers on coupon,
 * reservation, policy, payment, payment_refund and settlement in the
 * transaction of the change (docs/events.md).  xid is the writing
 * transaction's id: the relay publishes a transaction's events once it is
 * visible in a snapshot, which gives commit order without a counter that
 * every writer would queue on.
 *
 * A commit takes its events' ids from a block of 1000 kept in shared
 * memory; one nextval() of the sequence reserves the next block
 * (docs/events.md, "Event ids").  Ids stay unique and rise in commit order
 * per aggregate; they are not dense.
 */
CREATE TABLE coupon.outbox (
	event_id bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 1000),
	xid xid8 NOT NULL,
	occurred_at timestamptz NOT NULL,
	event_type text NOT NULL,
	aggregate text NOT NULL,
	aggregate_id bigint NOT NULL,
	merchant_id bigint,
	user_id text,
	actor text NOT NULL,
	trace_id text,
	payload json NOT NULL,
	PRIMARY KEY (xid, event_id)
);
/*
 * One index, written by every event: the primary key, by which the relay
 * reads its windows (transaction ids) and purges.  The audit trail's
 * lookup by aggregate is not an index here but coupon.outbox_lookup, which
 * the relay fills as it publishes (0.11 had a btree on aggregate_id here,
 * written by every commit; docs/events.md, "The audit trail").
 */
COMMENT ON TABLE coupon.outbox IS 'Business events, one row each, written in the transaction of the change they record; the relay worker publishes them (Redis stream or NOTIFY coupon_events) and purges them after coupon.outbox_retention. Also the audit trail of coupons and policies (events(), through outbox_lookup; docs/events.md).';
COMMENT ON COLUMN coupon.outbox.event_id IS 'Event id, stable and unique: consumers drop duplicates by it (delivery is at least once). Events of one aggregate have rising ids in commit order.';
COMMENT ON COLUMN coupon.outbox.xid IS 'Top-level id of the transaction that wrote the event; the relay publishes a transaction''s events once it has committed.';
COMMENT ON COLUMN coupon.outbox.occurred_at IS 'When the change was made (clock time); the row itself is written just before the commit.';
COMMENT ON COLUMN coupon.outbox.event_type IS 'What happened, as aggregate.verb: coupon.issued, coupon.redeemed, coupon.reserved, coupon.confirmed, coupon.released, coupon.hold_expired, coupon.used, coupon.restored, coupon.expired, coupon.revoked, policy.created, policy.changed, policy.paused, payment.<state>, payment.refunded, settlement.created.';
COMMENT ON COLUMN coupon.outbox.aggregate IS 'The kind of thing the event is about: coupon, policy, payment or settlement. Events of one aggregate are published in commit order.';
COMMENT ON COLUMN coupon.outbox.aggregate_id IS 'The id of that thing (a hold''s events carry its coupon''s id).';
COMMENT ON COLUMN coupon.outbox.merchant_id IS 'The merchant concerned: the policy''s owner, or where a coupon is held or a payment made.';
COMMENT ON COLUMN coupon.outbox.user_id IS 'The customer concerned, if any.';
COMMENT ON COLUMN coupon.outbox.actor IS 'The role the change was made as (the session''s role, not the functions'' owner).';
COMMENT ON COLUMN coupon.outbox.trace_id IS 'Trace id of the request (coupon.trace_id), or the payment''s own.';
COMMENT ON COLUMN coupon.outbox.payload IS 'The event''s facts as a small JSON object; its keys depend on the aggregate (docs/events.md).';

ALTER TABLE coupon.outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox TO coupon_admin USING (true);

/*
 * Where a checkout's events wait for the relay, milliseconds when it keeps
 * up: a table without an index, so that an event costs the checkout one
 * heap row and nothing more.  The relay finds the rows through a ring in
 * shared memory and moves them into the outbox as it begins the window
 * that publishes them (relay_worker.c, queue.c).  Rows go to the outbox
 * itself when no relay takes them (coupon.relay off, another database)
 * or the ring is full.  The outbox's columns, in its order, with their
 * NOT NULLs and comments.
 */
CREATE TABLE coupon.outbox_queue (LIKE coupon.outbox INCLUDING COMMENTS);
/* the relay deletes what it moves: a FOR ALL TABLES publication needs the rows' identity */
ALTER TABLE coupon.outbox_queue REPLICA IDENTITY FULL;
COMMENT ON TABLE coupon.outbox_queue IS 'Events of committed checkouts waiting for the relay worker to move them into the outbox, which it does as it begins the window that publishes them (docs/events.md, "The queue"). No index: a checkout writes only a heap row here. Same columns as the outbox; events() and relay_status read it too.';

ALTER TABLE coupon.outbox_queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox_queue TO coupon_admin USING (true);

/*
 * The audit trail's lookup by aggregate id, off the checkout's path: the
 * relay adds each batch's rows in the transaction that records the batch
 * published (relay_worker.c), so once a window is done every event visible
 * in relay_state.published_through has its row here; events() reads the
 * rest, the unpublished tail, by the outbox's primary key.  purge_outbox()
 * deletes the rows with their events.  Not dumped: a restore's COPY of the
 * outbox makes them again (outbox_restored()).  The key holds the outbox's
 * own, (xid, event_id), whole.
 */
CREATE TABLE coupon.outbox_lookup (
	aggregate_id bigint NOT NULL,
	event_id bigint NOT NULL,
	xid xid8 NOT NULL,
	PRIMARY KEY (aggregate_id, event_id, xid)
);
COMMENT ON TABLE coupon.outbox_lookup IS 'The published events of each aggregate id, for events(): filled by the relay worker as it publishes (and by relay_skip() and a restore), purged with the events; never written by a checkout. Not dumped: a restore makes it again from the outbox.';
COMMENT ON COLUMN coupon.outbox_lookup.aggregate_id IS 'The event''s outbox.aggregate_id.';
COMMENT ON COLUMN coupon.outbox_lookup.event_id IS 'The event''s outbox.event_id.';
COMMENT ON COLUMN coupon.outbox_lookup.xid IS 'The event''s outbox.xid: with event_id, the outbox''s primary key.';

ALTER TABLE coupon.outbox_lookup ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.outbox_lookup TO coupon_admin USING (true);

CREATE TRIGGER outbox_restored AFTER INSERT ON coupon.outbox
	REFERENCING NEW TABLE AS restored
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.outbox_restored();
COMMENT ON TRIGGER outbox_restored ON coupon.outbox IS 'Gives the rows of a restore''s COPY (or an INSERT by hand) their outbox_lookup rows; the events the extension writes fire no statement trigger.';

/*
 * Where the relay stands, one row (inserted below, with the functions).
 * Events of transactions visible in published_through are published; the
 * relay works towards target, a snapshot taken when it began the current
 * window, in event_id order, last_event_id being the last one it published
 * of that window.
 */
CREATE TABLE coupon.relay_state (
	id boolean PRIMARY KEY DEFAULT true CHECK (id),
	published_through pg_snapshot NOT NULL,
	target pg_snapshot,
	last_event_id bigint NOT NULL DEFAULT 0,
	skip_through bigint NOT NULL DEFAULT 0,
	published bigint NOT NULL DEFAULT 0,
	last_published_at timestamptz,
	rebuild_requested_at timestamptz,
	rebuilt_at timestamptz
);

COMMENT ON TABLE coupon.relay_state IS 'The relay worker''s position in the outbox (one row); not dumped: a restored database starts from its own first snapshot.';
COMMENT ON COLUMN coupon.relay_state.id IS 'Always true: there is one row.';
COMMENT ON COLUMN coupon.relay_state.published_through IS 'Events of every transaction visible in this snapshot have been published.';
COMMENT ON COLUMN coupon.relay_state.target IS 'The snapshot the relay is publishing up to (NULL between windows).';
COMMENT ON COLUMN coupon.relay_state.last_event_id IS 'Within the current window, the last event published (events go out in event_id order).';
COMMENT ON COLUMN coupon.relay_state.skip_through IS 'Events up to this id are never published (set by relay_skip(), e.g. after restoring a dump into another cluster).';
COMMENT ON COLUMN coupon.relay_state.published IS 'Events published since the extension was created.';
COMMENT ON COLUMN coupon.relay_state.last_published_at IS 'When events were last published.';
COMMENT ON COLUMN coupon.relay_state.rebuild_requested_at IS 'When rebuild_redis_caches() last asked for the Redis caches to be refilled.';
COMMENT ON COLUMN coupon.relay_state.rebuilt_at IS 'When the relay last finished refilling them.';

ALTER TABLE coupon.relay_state ENABLE ROW LEVEL SECURITY;
CREATE POLICY admin_all ON coupon.relay_state TO coupon_admin USING (true);

/* ----------------------------------------------------- row-level security */

-- one comment for every table's policy admin_all
DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT polrelid FROM pg_catalog.pg_policy
			  WHERE polname = 'admin_all'
				AND polrelid IN (SELECT oid FROM pg_catalog.pg_class
								  WHERE relnamespace = 'coupon'::pg_catalog.regnamespace)
	LOOP
		EXECUTE pg_catalog.format('COMMENT ON POLICY admin_all ON %s IS %L', t,
			'coupon_admin reads and writes every row; no other role has privileges on the table: '
			'merchants and customers reach rows only through the functions, which run as the owner.');
	END LOOP;
END
$$;

/* ============================================================ functions */

/*
 * The API functions are SECURITY DEFINER and run with a search path of
 * their own, as does every trigger function but outbox_capture(): only
 * built-in objects resolve unqualified, and pg_temp comes last; every
 * statement names the extension's objects with their schema.  The C
 * functions carry no other setting, so no setting is saved and restored
 * around each call (validate() not even the search path: see below).  The
 * SQL-language readers user_coupons(), outbox_backlog() and events() also
 * plan with enable_seqscan off: their plans are cached per session from the
 * first calls on, often while the tables are still nearly empty, and the
 * setting keeps those plans on the indexes as the tables grow.  Every function's
 * EXECUTE is revoked from PUBLIC and granted to the roles at the end of
 * this file.
 */

/* ------------------------------------------------- tenancy and errors */

CREATE FUNCTION coupon.check_acting_user(user_id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_check_acting_user'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.check_acting_user(text) IS
'Internal: returns true, or raises PT403 wrong_tenant when a customer session (role coupon_customer) asks for another user''s data; used by the SQL-language readers.';

CREATE FUNCTION coupon.check_acting_merchant(merchant_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_check_acting_merchant'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.check_acting_merchant(bigint) IS
'Internal: returns true, or raises PT403 wrong_tenant when a merchant or customer session asks for another merchant''s data; used by the SQL-language readers.';

CREATE FUNCTION coupon.sees_merchant(merchant_id bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_sees_merchant'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.sees_merchant(bigint) IS
'Internal: whether the calling session may see the merchant''s rows in a shared view (false for another merchant when the session carries a merchant_id claim, and for customers); used by policy_stats.';

-- user_coupons() in a session bound to a merchant lists only the coupons
-- that merchant can take
CREATE FUNCTION coupon.sees_coupon(issuer_id bigint, allowed_merchants bigint[])
RETURNS boolean
AS 'MODULE_PATHNAME', 'coupon_sees_coupon'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.sees_coupon(bigint, bigint[]) IS
'Internal: whether the calling session may see a coupon of a policy with this issuer and allowed_merchants in user_coupons(): a customer its own everywhere, a session with a merchant_id claim those its merchant can take, the platform all.';

-- the reason table of the error contract, as data: the SQL functions raise
-- through raise_error(), whose SQLSTATE and hint come from it, and
-- docs/errors.md is checked against reasons() (load test reasons)
CREATE FUNCTION coupon.reasons()
RETURNS TABLE (reason text, sqlstate text, http_status integer, hint text)
AS 'MODULE_PATHNAME', 'coupon_reasons'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.reasons() IS
'The reason codes of the error contract: each reason, its SQLSTATE (PTnnn), the HTTP status PostgREST answers with, and the hint every error of that reason carries.';

CREATE FUNCTION coupon.raise_error(reason text, message text, detail jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'coupon_raise_error'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.raise_error(text, text, jsonb) IS
'Internal: raises a business error of the given reason: its SQLSTATE and hint from reasons(), the message, and DETAIL {"reason": ...} followed by the members of detail.';

/* ------------------------------------------------------------ merchants */

CREATE FUNCTION coupon.create_merchant(
	name text,
	currency text DEFAULT 'KRW',
	commission_bp integer DEFAULT 0,
	pg_fee_bp integer DEFAULT 0,
	settlement_delay_days integer DEFAULT 1)
RETURNS coupon.merchant
AS 'MODULE_PATHNAME', 'coupon_create_merchant'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.create_merchant(text, text, integer, integer, integer) IS
'Creates a merchant (tenant). currency is an ISO 4217 code; commission_bp and pg_fee_bp are basis points 0..10000; settlement_delay_days 0..365. Errors: PT400 invalid_name, invalid_currency, invalid_percent, invalid_delay.';

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

/* ------------------------------------------------------------- policies */

CREATE FUNCTION coupon.create_policy(
	merchant_id bigint,
	name text,
	discount_type text,
	discount_value bigint,
	issue_method text DEFAULT 'direct',
	total_quantity bigint DEFAULT NULL,
	per_user_limit integer DEFAULT 1,
	max_discount bigint DEFAULT NULL,
	min_order_amount bigint DEFAULT 0,
	valid_from timestamptz DEFAULT NULL,
	valid_until timestamptz DEFAULT NULL,
	valid_days integer DEFAULT NULL,
	issue_starts_at timestamptz DEFAULT NULL,
	issue_ends_at timestamptz DEFAULT NULL,
	allowed_merchants bigint[] DEFAULT NULL,
	merchant_share_bp integer DEFAULT 10000,
	budget bigint DEFAULT NULL,
	stackable boolean DEFAULT false,
	status text DEFAULT 'active')
RETURNS coupon.policy
AS 'MODULE_PATHNAME', 'coupon_create_policy'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.create_policy(bigint, text, text, bigint, text, bigint, integer, bigint, bigint, timestamptz, timestamptz, integer, timestamptz, timestamptz, bigint[], integer, bigint, boolean, text) IS
'Creates a coupon policy after validating every field and their combinations. Errors: PT404 merchant_not_found; PT403 wrong_tenant; PT422 merchant_inactive; PT400 invalid_name, invalid_discount, invalid_amount, invalid_issue_method, invalid_quantity, invalid_limit, invalid_window, invalid_share, invalid_merchants, invalid_status.';

CREATE FUNCTION coupon.set_policy_status(policy_id bigint, status text)
RETURNS coupon.policy
AS 'MODULE_PATHNAME', 'coupon_set_policy_status'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.set_policy_status(bigint, text) IS
'Moves a policy between draft, active, paused and retired (retired is final; nothing returns to draft). Setting the current status again changes nothing. Errors: PT404 policy_not_found; PT400 invalid_status; PT409 invalid_status_transition.';

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

/* ------------------------------------------------- issuance and codes */

CREATE FUNCTION coupon.issue(policy_id bigint, user_id text, idempotency_key text DEFAULT NULL)
RETURNS coupon.coupon
AS 'MODULE_PATHNAME', 'coupon_issue'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.issue(bigint, text, text) IS
'Issues one coupon of a direct or fcfs policy to a user; never issues beyond total_quantity or per_user_limit. With idempotency_key, a repeated call returns the first coupon. Errors: PT404 policy_not_found; PT422 policy_inactive, wrong_issue_method, issue_not_started, issue_ended, expired, idempotency_mismatch; PT409 sold_out, per_user_limit, idempotency_in_progress; PT400 invalid_user_id, key_too_long.';

CREATE FUNCTION coupon.generate_codes(policy_id bigint, count integer)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'coupon_generate_codes'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.generate_codes(bigint, integer) IS
'Generates count (1..100000) codes for a code policy and returns them in plain text, once: only their HMAC-SHA256 is stored. Codes are 15 random characters from an unambiguous 32-character alphabet plus a check character, shown as XXXX-XXXX-XXXX-XXXX. Errors: PT404 policy_not_found; PT422 wrong_issue_method, policy_inactive, quantity_exceeded; PT400 invalid_count; 55000 when coupon.code_secret is not set.';

CREATE FUNCTION coupon.redeem_code(code text, user_id text)
RETURNS coupon.coupon
AS 'MODULE_PATHNAME', 'coupon_redeem_code'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.redeem_code(text, text) IS
'Claims the coupon behind a code for a user (case, spaces and dashes are ignored). Redeeming one''s own code again returns the same coupon. Repeated wrong codes from one user are refused for a while. Errors: PT400 invalid_code, invalid_user_id; PT404 code_not_found; PT409 code_redeemed, per_user_limit; PT422 policy_inactive, issue_not_started, issue_ended, expired; PT429 too_many_code_attempts.';

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

CREATE FUNCTION coupon.user_coupons(user_id text, status text DEFAULT NULL)
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
COMMENT ON FUNCTION coupon.user_coupons(text, text) IS
'Lists a user''s coupons (optionally only those in one status) with the details of their policies, oldest first.';

/* -------------------------------------------------------------- checkout */

/*
 * validate() reads through src/fetch.c (no SPI, no name look-ups by
 * search_path) and checks the tenant itself, so it needs neither the
 * owner's rights nor settings of its own: without SET clauses a call costs
 * about a fifth less (bench/run.sh).
 */
CREATE FUNCTION coupon.validate(
	coupon_id bigint,
	user_id text,
	merchant_id bigint,
	order_amount bigint)
RETURNS coupon.validation
AS 'MODULE_PATHNAME', 'coupon_validate'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.validate(bigint, text, bigint, bigint) IS
'Tells whether a coupon applies to an order and the discount it would give, without changing anything. A business rule that fails is reported in reason (coupon_not_found, not_owner, policy_inactive, coupon_used, coupon_reserved, coupon_cancelled, expired, not_yet_valid, merchant_not_found, merchant_not_allowed, merchant_inactive, min_order_amount, budget_exhausted), never raised; malformed input raises PT400. Policies and merchants may be read from copies at least as new as the caller''s snapshot (READ COMMITTED only).';

CREATE FUNCTION coupon.reserve(
	coupon_id bigint,
	user_id text,
	merchant_id bigint,
	order_id text,
	order_amount bigint,
	ttl interval DEFAULT NULL)
RETURNS coupon.reservation
AS 'MODULE_PATHNAME', 'coupon_reserve'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.reserve(bigint, text, bigint, text, bigint, interval) IS
'Validates a coupon for an order and holds it until confirm(), release() or expiry (ttl, default coupon.reservation_ttl seconds). Repeating the call for the same order returns the same hold. Errors: the reasons of validate() as PT403/PT404/PT409/PT422, and PT400 for malformed input.';

CREATE FUNCTION coupon.confirm(reservation_id bigint)
RETURNS coupon.reservation
AS 'MODULE_PATHNAME', 'coupon_confirm'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.confirm(bigint) IS
'Spends a held coupon: the coupon becomes used (a balance coupon keeps what is left and becomes issued again). Confirming a confirmed reservation returns it unchanged. Errors: PT404 reservation_not_found; PT409 reservation_released, reservation_expired.';

CREATE FUNCTION coupon.release(reservation_id bigint)
RETURNS coupon.reservation
AS 'MODULE_PATHNAME', 'coupon_release'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.release(bigint) IS
'Gives a held coupon back to its holder and returns its discount to the policy budget. Releasing a released or expired reservation returns it unchanged. Errors: PT404 reservation_not_found; PT409 reservation_confirmed.';

CREATE FUNCTION coupon.expire_reservations(max_rows integer DEFAULT 1000)
RETURNS integer
AS 'MODULE_PATHNAME', 'coupon_expire_reservations'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.expire_reservations(integer) IS
'Releases up to max_rows held reservations past their expires_at that no payment owns, oldest first, and returns how many it released.';

CREATE FUNCTION coupon.expire_coupons(max_rows integer DEFAULT 10000)
RETURNS integer
AS 'MODULE_PATHNAME', 'coupon_expire_coupons'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.expire_coupons(integer) IS
'Marks up to max_rows issued coupons whose expires_at passed within the last coupon.expire_lookback days as expired, and returns how many it marked. Reserved coupons are left to their reservation; a hold released after expiry returns its coupon as expired.';

/* -------------------------------------------------- payments (the saga) */

CREATE FUNCTION coupon.pay(
	merchant_id bigint,
	user_id text,
	order_id text,
	amount bigint,
	coupon_ids bigint[] DEFAULT NULL,
	payment_key text DEFAULT NULL,
	idempotency_key text DEFAULT NULL)
RETURNS coupon.payment
AS 'MODULE_PATHNAME', 'coupon_pay'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.pay(bigint, text, text, bigint, bigint[], text, text) IS
'Starts a payment: validates the coupons, applies the stacking rules, holds every coupon for the payment and records it as pending, all in this transaction; the saga worker is woken at commit and charges amount - discount at the gateway. Errors: PT400 invalid_amount, invalid_order_id, invalid_payment_key, too_many_coupons; the reasons of reserve() for each coupon; PT409 duplicate_order, idempotency_in_progress; PT422 idempotency_mismatch, not_stackable.';

CREATE FUNCTION coupon.cancel_payment(
	payment_id bigint,
	reason text DEFAULT NULL,
	amount bigint DEFAULT NULL,
	idempotency_key text DEFAULT NULL)
RETURNS coupon.payment
AS 'MODULE_PATHNAME', 'coupon_cancel_payment'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.cancel_payment(bigint, text, bigint, text) IS
'Refunds a payment through the saga: the whole rest (amount NULL) or part of it. A full refund gives the coupons back (a balance coupon its amount; an expired coupon stays expired). A payment still being authorized is not raced: the cancel is recorded and runs once the outcome is known (nothing to refund if it fails); a full cancel of a pending payment is looked up at the gateway first and, if the gateway never saw it, fails it without charging. Errors: PT404 payment_not_found; PT400 invalid_amount, invalid_reason; PT409 payment_not_cancelable, idempotency_in_progress; PT422 idempotency_mismatch.';

CREATE FUNCTION coupon.payment_status(payment_id bigint, events integer DEFAULT 20)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'coupon_payment_status'
LANGUAGE C STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.payment_status(bigint, integer) IS
'The payment as JSON with its last events (newest first, at most events of them) under "events". Errors: PT404 payment_not_found; PT400 invalid_max_rows.';

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

CREATE FUNCTION coupon.process_payments(max_rows integer DEFAULT 100)
RETURNS integer
AS 'MODULE_PATHNAME', 'coupon_process_payments'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.process_payments(integer) IS
'Runs the due saga steps of up to max_rows payments in this backend with the worker''s code, gateway calls included (only the local steps when coupon.gateway_url is empty), and returns how many payments it took a step for. For clusters without the worker (no shared_preload_libraries, coupon.workers = 0) and for tests. Unlike the worker it runs inside the caller''s transaction: the payments it works on stay locked until that transaction ends, which is safe because every gateway call is idempotent.';

CREATE FUNCTION coupon.retry_payment(payment_id bigint)
RETURNS coupon.payment
AS 'MODULE_PATHNAME', 'coupon_retry_payment'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION coupon.retry_payment(bigint) IS
'Puts a needs_attention payment back in the queue at the step where it stopped, with its attempts reset; a payment that is not stuck is returned unchanged. Errors: PT404 payment_not_found; PT409 payment_not_retryable.';

CREATE FUNCTION coupon.worker_status_rows(
	OUT worker integer, OUT pid integer, OUT state text, OUT last_loop_at timestamptz,
	OUT in_flight integer, OUT done bigint, OUT errors bigint,
	OUT circuit text, OUT circuit_until timestamptz, OUT consecutive_failures integer)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'coupon_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.worker_status_rows() IS 'Reads the saga workers'' shared-memory slots; use the view worker_status.';

/* --------------------------------------- settlement and reconciliation */

/*
 * A SQL-standard body (RETURN), parsed once here with this script's
 * search_path, and no SET clause: the planner inlines it into the caller's
 * query as a plain expression.  (With a SET clause every call was a nested
 * SQL-function execution: about a third of run_settlement's time over a
 * million payments, bench/settlement.sh.)  The rounding is done in
 * integers when amount * bp cannot overflow (every amount below 9.2e14
 * with a bp of 0 to 10000), in numeric otherwise: a settlement computes it
 * about three times per item, and the numeric path cost about 0.2 us more
 * per call (bench/settlement.sh).
 */
CREATE FUNCTION coupon.round_half_up_bp(amount bigint, bp integer)
RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN bp NOT BETWEEN 0 AND 10000 OR amount NOT BETWEEN -922337203685477 AND 922337203685477
			THEN sign(amount)::bigint * round(abs(amount)::numeric * bp / 10000)::bigint
			WHEN amount < 0 THEN -((-amount * bp + 5000) / 10000)
			ELSE (amount * bp + 5000) / 10000 END;
COMMENT ON FUNCTION coupon.round_half_up_bp(bigint, integer) IS
'amount * bp / 10000 rounded half up (half away from zero for negative amounts), without overflow.';

-- jit off: compiling the query's expressions cost 1.5 to 2 s per run,
-- half of a run that finds little new among a million settled payments,
-- and bought nothing in a run that settles them all (bench/settlement.sh)
CREATE FUNCTION coupon.run_settlement(until timestamptz DEFAULT date_trunc('day', now()))
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
COMMENT ON FUNCTION coupon.run_settlement(timestamptz) IS
'Builds one settlement batch per merchant from the sales and refunds that happened before until minus the merchant''s settlement_delay_days and that no batch holds yet, and returns the batches. Each item is settled exactly once: concurrent runs queue, and a repeated run adds nothing. Refunds are negative items (adjustments when their sale was settled earlier); a negative total is carried forward. Merchants with nothing new get no batch. A merchant funds (discount_merchant) only discounts of its own policies; elsewhere the platform funds them. A merchant whose batch totals would pass 2^62 minor units is left unsettled, recorded in settlement_problem and named in a WARNING; the others are settled all the same. Errors: PT400 missing_argument; PT400 invalid_cutoff (until later than now).';

CREATE FUNCTION coupon.settlement_report(merchant_id bigint, from_date date, to_date date)
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
COMMENT ON FUNCTION coupon.settlement_report(bigint, date, date) IS
'Settled figures of a merchant per day (in the session time zone) and per policy (the policy of each payment''s first coupon; NULL: no coupon), from_date to to_date inclusive: sales, refunds, discounts by funder, charged, commission, fees and payout. As CSV: COPY (SELECT * FROM coupon.settlement_report(1, ''2026-11-01'', ''2026-11-30'')) TO STDOUT WITH (FORMAT csv, HEADER). Errors: PT400 missing_argument; PT403 wrong_tenant.';

CREATE FUNCTION coupon.gateway_transactions(start_at timestamptz, end_at timestamptz)
RETURNS TABLE (transaction_key text, order_id text, type text, amount bigint)
AS 'MODULE_PATHNAME', 'coupon_gateway_transaction_rows'
LANGUAGE C VOLATILE STRICT ROWS 100000;
COMMENT ON FUNCTION coupon.gateway_transactions(timestamptz, timestamptz) IS
'Internal: the gateway''s transactions between two instants (GET /v1/transactions, read page by page, coupon.reconcile_page_size at a time), one row each: its transactionKey, orderId, type (APPROVE or CANCEL) and amount. Raises 08006 when the gateway does not answer and 58000 when it answers with an error or with something that is not a list of transactions.';

CREATE FUNCTION coupon.reconcile(day date)
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
COMMENT ON FUNCTION coupon.reconcile(date) IS
'Compares the day''s approvals and refunds (session time zone) with the gateway''s transaction list for the same day, stores the differences in reconciliation_issue (replacing earlier findings for that day) and returns them: missing_at_gateway, missing_in_database, amount_mismatch, status_mismatch (cancels and refunds of the day differ). The list is fetched before any row is touched; a gateway that does not answer raises 08006 and nothing is written.';

CREATE FUNCTION coupon.purge(older_than interval DEFAULT '24 hours')
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
COMMENT ON FUNCTION coupon.purge(interval) IS
'Deletes idempotency keys older than older_than (at least 24 hours) and returns how many. Errors: PT400 invalid_ttl, missing_argument.';

CREATE FUNCTION coupon.require_pg_cron()
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
		RAISE EXCEPTION 'pg_cron is not installed in this database'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Install postgresql-15-cron, add pg_cron to shared_preload_libraries, set cron.database_name to this database, restart, and run CREATE EXTENSION pg_cron.';
	END IF;
END
$fn$;
COMMENT ON FUNCTION coupon.require_pg_cron() IS
'Internal: raises 55000 with a hint unless pg_cron is installed in this database; used by schedule_jobs() and unschedule_jobs().';

CREATE FUNCTION coupon.schedule_jobs(settlement_cron text DEFAULT '10 0 * * *')
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
COMMENT ON FUNCTION coupon.schedule_jobs(text) IS
'Registers (or updates) the pg_cron jobs coupon-settlement (settlement_cron, default every day at 00:10), coupon-expire (every minute) and coupon-purge (daily at 03:30) as the calling role, and returns them. Idempotent. Errors: 55000 when pg_cron is not installed here (with a hint), PT400 invalid_schedule.';

CREATE FUNCTION coupon.unschedule_jobs()
RETURNS integer
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	n integer := 0;
	j text;
BEGIN
	PERFORM coupon.require_pg_cron();
	FOR j IN SELECT c.jobname FROM cron.job c
			  WHERE c.jobname IN ('coupon-settlement', 'coupon-expire', 'coupon-purge')
				AND c.username = current_user
	LOOP
		PERFORM cron.unschedule(j);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$fn$;
COMMENT ON FUNCTION coupon.unschedule_jobs() IS
'Removes the calling role''s coupon pg_cron jobs and returns how many it removed (0 when none are left: idempotent). Errors: 55000 when pg_cron is not installed here.';

/* ------------------------------------------------------- the HTTP front
 * PostgREST (docs/postgrest.md): merchants' client credentials, the
 * pre-request function, trace ids, the Idempotency-Key header and rate
 * limits. */

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

/* ---------------------------------------------------------------- events */

/*
 * pg_current_snapshot() taken by a transaction leaves that transaction out
 * of its running list: as a published_through it would count the
 * transaction's own events as published.  This puts it back in.
 */
CREATE FUNCTION coupon.snapshot_before_self()
RETURNS pg_snapshot
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $fn$
	SELECT CASE WHEN me >= pg_snapshot_xmax(snap) THEN snap
		   ELSE (least(pg_snapshot_xmin(snap), me)::text || ':' || pg_snapshot_xmax(snap)::text || ':'
				 || (SELECT string_agg(x::text, ',' ORDER BY x)
					   FROM (SELECT pg_snapshot_xip(snap) UNION SELECT me) xs(x)))::pg_snapshot END
	  FROM (SELECT pg_current_snapshot(), pg_current_xact_id()) s(snap, me)
$fn$;
COMMENT ON FUNCTION coupon.snapshot_before_self() IS 'Internal: the current snapshot with the calling transaction counted as still running (pg_current_snapshot() counts it as done), so that a position taken from it does not pass over the transaction''s own events.';

-- the relay's one row: it starts from the snapshot of this transaction
INSERT INTO coupon.relay_state (published_through) VALUES (coupon.snapshot_before_self());

CREATE FUNCTION coupon.relay_status_row(
	OUT pid integer, OUT state text, OUT mode text, OUT connected boolean,
	OUT reconnects bigint, OUT last_error text, OUT last_round_at timestamptz)
AS 'MODULE_PATHNAME', 'coupon_relay_status_row'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.relay_status_row() IS 'Internal: the relay worker''s live state from shared memory; relay_status adds the backlog.';

CREATE FUNCTION coupon.outbox_queue_counts(OUT queued bigint, OUT queue_full bigint)
AS 'MODULE_PATHNAME', 'coupon_outbox_queue_counts'
LANGUAGE C STABLE;
COMMENT ON FUNCTION coupon.outbox_queue_counts() IS 'Internal: the queue''s counters from shared memory, for relay_status.';

CREATE FUNCTION coupon.outbox_backlog(OUT backlog bigint, OUT oldest_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $fn$
	/*
	 * unpublished: running at published_through, or begun after it; and
	 * every committed event still queued
	 */
	SELECT count(*), min(o.occurred_at)
	  FROM (SELECT xid, occurred_at, event_id FROM coupon.outbox
			 WHERE xid = ANY (ARRAY(SELECT pg_snapshot_xip(published_through) FROM coupon.relay_state))
			UNION ALL
			SELECT xid, occurred_at, event_id FROM coupon.outbox
			 WHERE xid >= (SELECT pg_snapshot_xmax(published_through) FROM coupon.relay_state)
			UNION ALL
			SELECT xid, occurred_at, event_id FROM coupon.outbox_queue) o
	 WHERE o.event_id > (SELECT skip_through FROM coupon.relay_state)
	   AND pg_visible_in_snapshot(o.xid, pg_current_snapshot())
$fn$;
COMMENT ON FUNCTION coupon.outbox_backlog() IS 'Internal: committed events not yet published, and when the oldest of them happened (reads, by the outbox''s key, only the events of transactions running at the relay''s position or begun after it, and the queue).';

CREATE FUNCTION coupon.wake_relay()
RETURNS void
AS 'MODULE_PATHNAME', 'coupon_wake_relay'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.wake_relay() IS 'Internal: wakes the relay worker when this transaction commits.';

CREATE FUNCTION coupon.rebuild_redis_caches()
RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	at timestamptz := pg_catalog.clock_timestamp();
BEGIN
	UPDATE coupon.relay_state SET rebuild_requested_at = at;
	PERFORM coupon.wake_relay();
	RETURN at;
END
$fn$;
COMMENT ON FUNCTION coupon.rebuild_redis_caches() IS 'Asks the relay worker to empty the Redis read caches and refill them from the tables; returns the request''s time: the refill is done when relay_status.rebuilt_at reaches it. The caches are never authoritative (docs/events.md). The platform (coupon_admin).';

CREATE FUNCTION coupon.relay_skip(through_event_id bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	through bigint := coalesce(through_event_id,
							   greatest((SELECT max(event_id) FROM coupon.outbox),
										(SELECT max(event_id) FROM coupon.outbox_queue)), 0);
BEGIN
	IF through_event_id IS NULL THEN
		/* everything committed so far counts as published */
		UPDATE coupon.relay_state
		   SET skip_through = greatest(skip_through, through),
			   published_through = coupon.snapshot_before_self(), target = NULL, last_event_id = 0;
		/*
		 * and is in the outbox, as the relay would have moved it: a statement
		 * whose snapshot sees the new position's transactions
		 */
		WITH moved AS (DELETE FROM coupon.outbox_queue RETURNING *)
		INSERT INTO coupon.outbox (event_id, xid, occurred_at, event_type, aggregate, aggregate_id,
								   merchant_id, user_id, actor, trace_id, payload)
		SELECT event_id, xid, occurred_at, event_type, aggregate, aggregate_id,
			   merchant_id, user_id, actor, trace_id, payload
		  FROM moved;
		/*
		 * and has its lookup row, as the relay would give it: a statement of
		 * its own, whose snapshot sees the new position's transactions.  Every
		 * event the new position counts as published, not only those of the
		 * window just closed: after a restore that fired no trigger (a
		 * data-only one with triggers disabled) this is the repair.
		 */
		INSERT INTO coupon.outbox_lookup (aggregate_id, event_id, xid)
		SELECT o.aggregate_id, o.event_id, o.xid FROM coupon.outbox o, coupon.relay_state r
		 WHERE pg_visible_in_snapshot(o.xid, r.published_through)
		ON CONFLICT DO NOTHING;
	ELSE
		UPDATE coupon.relay_state SET skip_through = greatest(skip_through, through);
	END IF;
	RETURN through;
END
$fn$;
COMMENT ON FUNCTION coupon.relay_skip(bigint) IS 'Marks events as published, so the relay never sends them: with no argument every event committed so far (for a dump restored into another cluster, whose transaction ids mean nothing here; run it before the application writes, as an event whose transaction is still running with a lower id would be skipped too), or every event up to through_event_id. Without an argument it also moves the queued events into the outbox and gives every event its position counts as published its outbox_lookup row (the repair after a restore that fired no trigger). Returns the id. The platform (coupon_admin).';

CREATE FUNCTION coupon.purge_outbox(older_than interval DEFAULT NULL, max_rows integer DEFAULT 10000)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
	keep interval := coalesce(older_than, pg_catalog.current_setting('coupon.outbox_retention', true)::interval, interval '7 days');
	n bigint;
BEGIN
	IF max_rows IS NULL OR max_rows < 1 THEN
		PERFORM coupon.raise_error('invalid_max_rows', 'max_rows must be at least 1');
	END IF;
	/* no relay_skip() or update fills lookup rows meanwhile for what goes */
	PERFORM FROM coupon.relay_state FOR SHARE;
	/* the oldest events first, by the xid index; published ones only, with their lookup rows */
	WITH gone AS (
		DELETE FROM coupon.outbox
		 WHERE ctid = ANY (ARRAY(
				SELECT o.ctid FROM coupon.outbox o
				 WHERE o.xid < (SELECT pg_snapshot_xmin(published_through) FROM coupon.relay_state)
				   AND o.occurred_at < pg_catalog.now() - keep
				 ORDER BY o.xid LIMIT max_rows))
		RETURNING aggregate_id, event_id, xid),
	unlisted AS (
		DELETE FROM coupon.outbox_lookup l
		 WHERE (l.aggregate_id, l.event_id, l.xid) IN (SELECT g.aggregate_id, g.event_id, g.xid FROM gone g))
	SELECT count(*) INTO n FROM gone;
	RETURN n;
END
$fn$;
COMMENT ON FUNCTION coupon.purge_outbox(interval, integer) IS 'Deletes published events older than older_than (default coupon.outbox_retention), oldest first, at most max_rows of them, with their outbox_lookup rows; returns how many. The relay worker calls it once a minute. The platform (coupon_admin). Errors: PT400 invalid_max_rows.';

CREATE FUNCTION coupon.events(aggregate text, aggregate_id bigint)
RETURNS SETOF coupon.outbox
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
/* the queue, read whole, then costs as much as a compilation is worth */
SET jit = off
AS $fn$
	/*
	 * Published events through their lookup rows; the rest (transactions
	 * running at the relay's position, or begun after it) by the primary
	 * key, and those still in the queue.
	 */
	SELECT o.* FROM (
		SELECT o.* FROM coupon.outbox_lookup l
		  JOIN coupon.outbox o ON o.xid = l.xid AND o.event_id = l.event_id
		 WHERE l.aggregate_id = events.aggregate_id
		   AND pg_visible_in_snapshot(o.xid, (SELECT published_through FROM coupon.relay_state))
		UNION ALL
		SELECT o.* FROM coupon.outbox o
		 WHERE o.xid = ANY (ARRAY(SELECT pg_snapshot_xip(published_through) FROM coupon.relay_state))
		   AND o.aggregate_id = events.aggregate_id
		UNION ALL
		SELECT o.* FROM coupon.outbox o
		 WHERE o.xid >= (SELECT pg_snapshot_xmax(published_through) FROM coupon.relay_state)
		   AND o.aggregate_id = events.aggregate_id
		UNION ALL
		SELECT q.* FROM coupon.outbox_queue q
		 WHERE q.aggregate_id = events.aggregate_id) o
	 WHERE o.aggregate = events.aggregate
	   AND coupon.sees_merchant(coalesce(o.merchant_id, -1))
	 ORDER BY o.event_id
$fn$;
COMMENT ON FUNCTION coupon.events(text, bigint) IS 'The audit trail of one coupon, policy, payment or settlement batch: its events still in the outbox (coupon.outbox_retention), oldest first: the published ones through outbox_lookup, the others by the outbox''s primary key (all of them, then, where no relay publishes: coupon.relay off, or not coupon.database) and from the queue. A merchant-bound session sees only its own merchant''s events (none without a merchant).';

/* ------------------------------------------------------------ monitoring
 * What the DBA's prometheus-postgres-exporter reads (its queries file is
 * scripts/exporter_queries.yaml, docs/operations.md "Metrics") as the
 * login role it connects with, a member of coupon_monitor only: this
 * function and the views worker_status, stuck_payments, payment_backlog,
 * relay_status and policy_stats; payment_due_idx and payment_attention_idx
 * keep each of its queries to the rows it reports. */

CREATE FUNCTION coupon.throttle_status(OUT kind text, OUT blocked bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'coupon_throttle_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION coupon.throttle_status() IS
'Attempts the wrong-code throttle refused since the server started, per kind: code (redeem_code(), PT429 too_many_code_attempts) and client (client credentials, PT429 too_many_credential_attempts). Read from shared memory without waiting; no rows when coupon is not in shared_preload_libraries (nothing is throttled then). For monitoring (coupon_monitor).';

/* ================================================================ views */

/*
 * policy_stats: a session bound to one merchant sees only that merchant's
 * policies.  The coupon counts come from a per-policy subquery that the
 * planner leaves out when none of its columns is asked for (the metrics
 * ask only for stock).  No index on coupon mentions status (HOT updates,
 * see the table), so the counts read each asked-for policy's coupons
 * through coupon_policy_user_idx.
 */
CREATE VIEW coupon.policy_stats AS
SELECT p.id AS policy_id,
	   p.merchant_id,
	   p.name,
	   p.issue_method,
	   p.status,
	   p.total_quantity,
	   (SELECT sum(s.remaining) FROM coupon.policy_stock s WHERE s.policy_id = p.id)::bigint AS stock_remaining,
	   c.unclaimed,
	   c.issued,
	   c.available,
	   c.reserved,
	   c.used,
	   c.expired,
	   c.cancelled,
	   p.budget,
	   p.budget_used
  FROM coupon.policy p
  LEFT JOIN LATERAL (
	SELECT count(*) FILTER (WHERE k.status = 'unclaimed') AS unclaimed,
		   count(*) FILTER (WHERE k.status <> 'unclaimed') AS issued,
		   count(*) FILTER (WHERE k.status = 'issued') AS available,
		   count(*) FILTER (WHERE k.status = 'reserved') AS reserved,
		   count(*) FILTER (WHERE k.status = 'used') AS used,
		   count(*) FILTER (WHERE k.status = 'expired') AS expired,
		   count(*) FILTER (WHERE k.status = 'cancelled') AS cancelled
	  FROM coupon.coupon k
	 WHERE k.policy_id = p.id) c ON true
 WHERE coupon.sees_merchant(p.merchant_id);
COMMENT ON VIEW coupon.policy_stats IS 'Per policy: stock left, coupons by status and budget used. A session with a merchant_id claim sees only that merchant''s policies.';
COMMENT ON COLUMN coupon.policy_stats.policy_id IS 'The policy.';
COMMENT ON COLUMN coupon.policy_stats.merchant_id IS 'The issuing merchant.';
COMMENT ON COLUMN coupon.policy_stats.name IS 'Policy name.';
COMMENT ON COLUMN coupon.policy_stats.issue_method IS 'direct, code or fcfs.';
COMMENT ON COLUMN coupon.policy_stats.status IS 'Policy status.';
COMMENT ON COLUMN coupon.policy_stats.total_quantity IS 'Most coupons that will ever exist (NULL = unlimited).';
COMMENT ON COLUMN coupon.policy_stats.stock_remaining IS 'Units not yet issued (limited direct and fcfs policies; NULL otherwise).';
COMMENT ON COLUMN coupon.policy_stats.unclaimed IS 'Generated codes not redeemed yet.';
COMMENT ON COLUMN coupon.policy_stats.issued IS 'Coupons ever issued to users (every status but unclaimed).';
COMMENT ON COLUMN coupon.policy_stats.available IS 'Coupons issued and usable now.';
COMMENT ON COLUMN coupon.policy_stats.reserved IS 'Coupons held by a reservation.';
COMMENT ON COLUMN coupon.policy_stats.used IS 'Coupons spent.';
COMMENT ON COLUMN coupon.policy_stats.expired IS 'Coupons that expired unused.';
COMMENT ON COLUMN coupon.policy_stats.cancelled IS 'Coupons revoked.';
COMMENT ON COLUMN coupon.policy_stats.budget IS 'Discount budget (NULL = none).';
COMMENT ON COLUMN coupon.policy_stats.budget_used IS 'Discount held or granted against the budget.';

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

CREATE VIEW coupon.worker_status AS SELECT * FROM coupon.worker_status_rows();
COMMENT ON VIEW coupon.worker_status IS 'One row per saga worker slot: what it is doing, its counters and the gateway circuit breaker (shared by all workers).';
COMMENT ON COLUMN coupon.worker_status.worker IS 'Worker number, 1..coupon.workers.';
COMMENT ON COLUMN coupon.worker_status.pid IS 'Process id (NULL while not running).';
COMMENT ON COLUMN coupon.worker_status.state IS 'starting, idle, working, standby (waiting for promotion), no_extension (coupon not installed in coupon.database), no_gateway (coupon.gateway_url empty) or stopped.';
COMMENT ON COLUMN coupon.worker_status.last_loop_at IS 'When the worker last went round its loop.';
COMMENT ON COLUMN coupon.worker_status.in_flight IS 'Gateway calls in flight now.';
COMMENT ON COLUMN coupon.worker_status.done IS 'Saga steps finished since the worker started.';
COMMENT ON COLUMN coupon.worker_status.errors IS 'Gateway calls since the worker started whose answer settled nothing (no answer, 5xx, 401, 408, 409, 422, 429, an unreadable answer, or an approval of another amount).';
COMMENT ON COLUMN coupon.worker_status.circuit IS 'The gateway circuit breaker: closed (calls flow), open (no calls until circuit_until) or half_open (one probe call).';
COMMENT ON COLUMN coupon.worker_status.circuit_until IS 'While open: when a probe call will be let through.';
COMMENT ON COLUMN coupon.worker_status.consecutive_failures IS 'Gateway failures in a row (the breaker opens at coupon.circuit_failures).';

CREATE VIEW coupon.stuck_payments AS
SELECT p.id AS payment_id,
	   p.merchant_id,
	   p.order_id,
	   p.state,
	   p.resume_state,
	   p.attempts,
	   p.next_attempt_at,
	   p.last_error,
	   p.updated_at,
	   now() - p.updated_at AS stuck_for
  FROM coupon.payment p
 WHERE p.state = 'needs_attention'
	OR (p.state IN ('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')
		AND p.updated_at < now() - interval '1 minute');
COMMENT ON VIEW coupon.stuck_payments IS 'Payments that need a human (needs_attention) or have not moved for over a minute; retry_payment() requeues the former.';
COMMENT ON COLUMN coupon.stuck_payments.payment_id IS 'The payment.';
COMMENT ON COLUMN coupon.stuck_payments.merchant_id IS 'Its merchant.';
COMMENT ON COLUMN coupon.stuck_payments.order_id IS 'Its order.';
COMMENT ON COLUMN coupon.stuck_payments.state IS 'Its state.';
COMMENT ON COLUMN coupon.stuck_payments.resume_state IS 'For needs_attention: the step retry_payment() resumes.';
COMMENT ON COLUMN coupon.stuck_payments.attempts IS 'Gateway calls made for the current step.';
COMMENT ON COLUMN coupon.stuck_payments.next_attempt_at IS 'When the next attempt is due.';
COMMENT ON COLUMN coupon.stuck_payments.last_error IS 'The last failure in words.';
COMMENT ON COLUMN coupon.stuck_payments.updated_at IS 'When it last changed.';
COMMENT ON COLUMN coupon.stuck_payments.stuck_for IS 'How long since it last changed.';

CREATE VIEW coupon.payment_backlog AS
SELECT s.state,
	   coalesce(b.payments, 0) AS payments,
	   b.oldest_updated_at
  FROM (VALUES ('pending'), ('authorizing'), ('approved'), ('voiding'), ('releasing'),
			   ('refunding'), ('needs_attention')) AS s (state)
  LEFT JOIN (SELECT p.state, count(*) AS payments, min(p.updated_at) AS oldest_updated_at
			   FROM coupon.payment p
			  WHERE p.state IN ('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')
				 OR p.state = 'needs_attention'
			  GROUP BY p.state) b ON b.state = s.state;
COMMENT ON VIEW coupon.payment_backlog IS
'Payments the saga has not finished, per state (a row for every such state, 0 when none): read through payment_due_idx and payment_attention_idx, never the final payments. For monitoring (coupon_monitor).';
COMMENT ON COLUMN coupon.payment_backlog.state IS 'A state the saga drives (pending, authorizing, approved, voiding, releasing, refunding) or needs_attention.';
COMMENT ON COLUMN coupon.payment_backlog.payments IS 'Payments in that state now.';
COMMENT ON COLUMN coupon.payment_backlog.oldest_updated_at IS 'When the one of them that changed longest ago last changed (NULL when none).';

CREATE VIEW coupon.relay_status AS
SELECT w.pid, w.state, w.mode, w.connected,
	   b.backlog,
	   CASE WHEN b.backlog = 0 THEN 0
			ELSE extract(epoch FROM pg_catalog.clock_timestamp() - b.oldest_at)::double precision END AS lag_seconds,
	   r.published, r.last_published_at, w.reconnects, w.last_error, w.last_round_at,
	   r.rebuild_requested_at, r.rebuilt_at, q.queued, q.queue_full
  FROM coupon.relay_status_row() w, coupon.outbox_backlog() b, coupon.relay_state r,
	   coupon.outbox_queue_counts() q;
COMMENT ON VIEW coupon.relay_status IS 'The relay worker: its state (idle, publishing, redis_down, no_extension, standby, stopped), where it publishes (redis or notify), the backlog of committed events not yet published and how old the oldest is, and totals.';
COMMENT ON COLUMN coupon.relay_status.pid IS 'The worker''s process id (NULL when it is not running).';
COMMENT ON COLUMN coupon.relay_status.state IS 'idle, publishing, redis_down (waiting to reconnect), no_extension, standby or stopped.';
COMMENT ON COLUMN coupon.relay_status.mode IS 'redis (coupon.redis_url is set) or notify.';
COMMENT ON COLUMN coupon.relay_status.connected IS 'Whether the worker holds a Redis connection.';
COMMENT ON COLUMN coupon.relay_status.backlog IS 'Committed events not yet published.';
COMMENT ON COLUMN coupon.relay_status.lag_seconds IS 'Age of the oldest committed event not yet published (0 when none).';
COMMENT ON COLUMN coupon.relay_status.published IS 'Events published since the extension was created.';
COMMENT ON COLUMN coupon.relay_status.last_published_at IS 'When events were last published.';
COMMENT ON COLUMN coupon.relay_status.reconnects IS 'Redis connections the worker has opened since it started.';
COMMENT ON COLUMN coupon.relay_status.last_error IS 'The last Redis error the worker met (NULL when none since it started).';
COMMENT ON COLUMN coupon.relay_status.last_round_at IS 'When the worker last went round its loop.';
COMMENT ON COLUMN coupon.relay_status.rebuild_requested_at IS 'When rebuild_redis_caches() last asked for a refill.';
COMMENT ON COLUMN coupon.relay_status.rebuilt_at IS 'When the last refill finished.';
COMMENT ON COLUMN coupon.relay_status.queued IS 'Events written to the queue since the server started (the checkout''s way when the relay takes them).';
COMMENT ON COLUMN coupon.relay_status.queue_full IS 'Events written to the outbox itself since the server started because the queue''s ring (coupon.outbox_queue_size) was full: the relay is behind or down.';

/* =========================================================== privileges */

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA coupon FROM PUBLIC;
GRANT USAGE ON SCHEMA coupon
	TO coupon_admin, coupon_app, coupon_merchant, coupon_customer, coupon_anonymous, coupon_monitor;

-- the platform's operators: every function; every table but the relay's
-- position and the lock-only table, and every view
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA coupon TO coupon_admin;
GRANT SELECT ON coupon.merchant, coupon.policy, coupon.policy_stock, coupon.coupon, coupon.reservation,
	coupon.idempotency_key, coupon.payment, coupon.payment_event, coupon.payment_refund,
	coupon.settlement, coupon.settlement_item, coupon.reconciliation_issue, coupon.settlement_problem,
	coupon.outbox, coupon.outbox_queue, coupon.outbox_lookup
TO coupon_admin;
GRANT SELECT ON coupon.policy_stats, coupon.merchant_stats, coupon.worker_status, coupon.stuck_payments,
	coupon.payment_backlog, coupon.relay_status
TO coupon_admin;

-- a trusted backend acting for any merchant
GRANT EXECUTE ON FUNCTION
	coupon.check_acting_merchant(bigint),
	coupon.sees_merchant(bigint),
	coupon.reasons(),
	coupon.raise_error(text, text, jsonb),
	coupon.set_merchant_status(bigint, text),
	coupon.create_policy(bigint, text, text, bigint, text, bigint, integer, bigint, bigint, timestamptz, timestamptz, integer, timestamptz, timestamptz, bigint[], integer, bigint, boolean, text),
	coupon.set_policy_status(bigint, text),
	coupon.update_policy(bigint, text, timestamptz, bigint, bigint, text),
	coupon.policy_coupons(bigint, text),
	coupon.issue(bigint, text, text),
	coupon.generate_codes(bigint, integer),
	coupon.redeem_code(text, text),
	coupon.revoke_coupon(bigint, text),
	coupon.user_coupons(text, text),
	coupon.validate(bigint, text, bigint, bigint),
	coupon.reserve(bigint, text, bigint, text, bigint, interval),
	coupon.confirm(bigint),
	coupon.release(bigint),
	coupon.pay(bigint, text, text, bigint, bigint[], text, text),
	coupon.cancel_payment(bigint, text, bigint, text),
	coupon.payment_status(bigint, integer),
	coupon.find_payment(bigint, text),
	coupon.settlement_report(bigint, date, date),
	coupon.merchant_credentials(bigint, interval),
	coupon.revoke_merchant_credentials(bigint),
	coupon.take_request_token(bigint, text),
	coupon.set_rate_limit(bigint, integer),
	coupon.pre_request(),
	coupon.events(text, bigint)
TO coupon_app;
GRANT SELECT ON coupon.policy_stats, coupon.merchant_stats TO coupon_app;

-- a merchant's session or server, bound to its merchant: what coupon_app
-- may do but suspend merchants, redeem codes, list a user's coupons and set
-- rate limits; and its own statistics (the views filter by sees_merchant()
-- and call round_half_up_bp() as the caller)
GRANT EXECUTE ON FUNCTION
	coupon.check_acting_merchant(bigint),
	coupon.sees_merchant(bigint),
	coupon.reasons(),
	coupon.raise_error(text, text, jsonb),
	coupon.create_policy(bigint, text, text, bigint, text, bigint, integer, bigint, bigint, timestamptz, timestamptz, integer, timestamptz, timestamptz, bigint[], integer, bigint, boolean, text),
	coupon.set_policy_status(bigint, text),
	coupon.update_policy(bigint, text, timestamptz, bigint, bigint, text),
	coupon.policy_coupons(bigint, text),
	coupon.issue(bigint, text, text),
	coupon.generate_codes(bigint, integer),
	coupon.revoke_coupon(bigint, text),
	coupon.validate(bigint, text, bigint, bigint),
	coupon.reserve(bigint, text, bigint, text, bigint, interval),
	coupon.confirm(bigint),
	coupon.release(bigint),
	coupon.pay(bigint, text, text, bigint, bigint[], text, text),
	coupon.cancel_payment(bigint, text, bigint, text),
	coupon.payment_status(bigint, integer),
	coupon.find_payment(bigint, text),
	coupon.round_half_up_bp(bigint, integer),
	coupon.settlement_report(bigint, date, date),
	coupon.merchant_credentials(bigint, interval),
	coupon.revoke_merchant_credentials(bigint),
	coupon.take_request_token(bigint, text),
	coupon.pre_request(),
	coupon.events(text, bigint)
TO coupon_merchant;
GRANT SELECT ON coupon.policy_stats, coupon.merchant_stats TO coupon_merchant;

-- a customer's session: its own coupons and payments; only the merchant's
-- side creates payments (no customer can claim a merchant's order id first)
GRANT EXECUTE ON FUNCTION
	coupon.reasons(),
	coupon.raise_error(text, text, jsonb),
	coupon.issue(bigint, text, text),
	coupon.redeem_code(text, text),
	coupon.user_coupons(text, text),
	coupon.validate(bigint, text, bigint, bigint),
	coupon.payment_status(bigint, integer),
	coupon.take_request_token(bigint, text),
	coupon.pre_request()
TO coupon_customer;

-- PostgREST requests without a JWT: pre_request(), which signs a
-- merchant's server in with client credentials
GRANT EXECUTE ON FUNCTION
	coupon.raise_error(text, text, jsonb),
	coupon.authenticate_client(text, text),
	coupon.take_request_token(bigint, text),
	coupon.pre_request()
TO coupon_anonymous;

-- monitoring: the status views and statistics (and the functions they
-- call as the caller), no table
GRANT EXECUTE ON FUNCTION
	coupon.sees_merchant(bigint),
	coupon.round_half_up_bp(bigint, integer),
	coupon.worker_status_rows(),
	coupon.relay_status_row(),
	coupon.outbox_backlog(),
	coupon.outbox_queue_counts(),
	coupon.throttle_status()
TO coupon_monitor;
GRANT SELECT ON coupon.policy_stats, coupon.merchant_stats, coupon.worker_status, coupon.stuck_payments,
	coupon.payment_backlog, coupon.relay_status
TO coupon_monitor;

/* ============================================================== pg_dump */

/*
 * The tables pg_dump saves with their rows, and their id sequences; in
 * the order the releases registered them.  relay_state is left out: a
 * restored database starts the relay from its own first snapshot.
 */
SELECT pg_catalog.pg_extension_config_dump('coupon.merchant', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.merchant_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.policy', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.policy_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.policy_stock', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.coupon', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.coupon_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.reservation', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.reservation_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.idempotency_key', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment_event', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment_event_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment_refund', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.payment_refund_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement_item', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement_item_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.reconciliation_issue', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.reconciliation_issue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement_problem', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.settlement_problem_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.fact_change_guard', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.outbox_queue', '');
SELECT pg_catalog.pg_extension_config_dump('coupon.outbox_event_id_seq', '');
