/* coupon--0.4--0.5.sql: a cheaper checkout (reserve + confirm).
 *
 * The C functions no longer carry SET clauses: the SQL they run goes
 * through one place in C (spi_run) that pins the search path to pg_catalog
 * and plans with enable_seqscan off, so the settings no longer cost a GUC
 * save and restore on every call.  Reservations no longer have a foreign
 * key to their coupon: coupons are never deleted, which a trigger now
 * enforces, so the key's check of every new (and every updated, when it was
 * made in the same transaction) reservation bought nothing.  And the
 * coupon table, written on every issue and checkout, keeps one CHECK
 * constraint of four: PostgreSQL parses each one from its stored text in
 * every statement that writes the table. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.5'" to load this file. \quit

/* ---------------------------------------------------------------- tables */

-- each never-deleted table now says in its trigger's argument what to do instead
CREATE OR REPLACE FUNCTION coupon.forbid_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
		USING ERRCODE = 'restrict_violation', HINT = TG_ARGV[0];
END
$$;
COMMENT ON FUNCTION coupon.forbid_delete() IS 'Trigger: merchants, policies and coupons are never deleted, so rows that point at them stay valid without foreign keys; the trigger''s argument is the hint.';
DROP TRIGGER merchant_no_delete ON coupon.merchant;
CREATE TRIGGER merchant_no_delete BEFORE DELETE OR TRUNCATE ON coupon.merchant
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete('Suspend a merchant instead.');
DROP TRIGGER policy_no_delete ON coupon.policy;
CREATE TRIGGER policy_no_delete BEFORE DELETE OR TRUNCATE ON coupon.policy
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete('Retire a policy instead.');
CREATE TRIGGER coupon_no_delete BEFORE DELETE OR TRUNCATE ON coupon.coupon
	FOR EACH STATEMENT EXECUTE FUNCTION coupon.forbid_delete(
		'Coupons stay as the record of what was issued and spent; an unusable one keeps its final status.');

ALTER TABLE coupon.reservation DROP CONSTRAINT reservation_coupon_id_fkey;
COMMENT ON COLUMN coupon.reservation.coupon_id IS 'The coupon held (no foreign key: coupons are never deleted, see coupon_no_delete).';

/*
 * Fewer CHECK constraints to parse per write (see coupon--0.3--0.4.sql on
 * why they cost): coupon's balance takes the amount domain and its three
 * row checks become one.  As in 0.4, the domain gets its constraint back
 * after the column changes type, so nothing is rewritten; the constraints
 * are then checked with one scan.
 */
ALTER DOMAIN coupon.amount DROP CONSTRAINT amount_check;
ALTER TABLE coupon.coupon
	DROP CONSTRAINT coupon_balance_check,
	DROP CONSTRAINT coupon_check,
	DROP CONSTRAINT coupon_check1,
	DROP CONSTRAINT coupon_user_seq_check,
	ALTER COLUMN balance TYPE coupon.amount;
ALTER DOMAIN coupon.amount ADD CONSTRAINT amount_check CHECK (VALUE BETWEEN 0 AND 1000000000000000);
ALTER TABLE coupon.coupon ADD CONSTRAINT coupon_state_check CHECK (
	(status = 'unclaimed') = (user_id IS NULL)
	AND (status = 'unclaimed' OR issued_at IS NOT NULL)
	AND user_seq > 0);
COMMENT ON CONSTRAINT coupon_state_check ON coupon.coupon IS 'Only an unclaimed coupon (a code not yet redeemed) has no holder, every other one has an issue time, and a holder''s sequence number starts at 1.';

/* ------------------------------------------------------------- functions */

/*
 * The C functions: SECURITY DEFINER still, their settings pinned in C (see
 * src/spi_util.c).  validate() lost its clauses in 0.4 already.
 */
ALTER FUNCTION coupon.create_merchant(text, text, integer, integer, integer) RESET ALL;
ALTER FUNCTION coupon.create_policy(bigint, text, text, bigint, text, bigint, integer, bigint,
	bigint, timestamptz, timestamptz, integer, timestamptz, timestamptz, bigint[], integer,
	bigint, boolean, text) RESET ALL;
ALTER FUNCTION coupon.set_policy_status(bigint, text) RESET ALL;
ALTER FUNCTION coupon.issue(bigint, text, text) RESET ALL;
ALTER FUNCTION coupon.generate_codes(bigint, integer) RESET ALL;
ALTER FUNCTION coupon.redeem_code(text, text) RESET ALL;
ALTER FUNCTION coupon.reserve(bigint, text, bigint, text, bigint, interval) RESET ALL;
ALTER FUNCTION coupon.confirm(bigint) RESET ALL;
ALTER FUNCTION coupon.release(bigint) RESET ALL;
ALTER FUNCTION coupon.expire_reservations(integer) RESET ALL;
ALTER FUNCTION coupon.expire_coupons(integer) RESET ALL;
ALTER FUNCTION coupon.pay(bigint, text, text, bigint, bigint[], text, text) RESET ALL;
ALTER FUNCTION coupon.cancel_payment(bigint, text, bigint, text) RESET ALL;
ALTER FUNCTION coupon.payment_status(bigint, integer) RESET ALL;
ALTER FUNCTION coupon.process_payments(integer) RESET ALL;
ALTER FUNCTION coupon.retry_payment(bigint) RESET ALL;
