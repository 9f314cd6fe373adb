/* coupon--0.5--0.6.sql: a cheaper validate().
 *
 * validate() returns a named row type, coupon.validation, instead of OUT
 * parameters: the executor builds the row type of OUT parameters from
 * pg_proc on every call, and looks a named one up in the type cache.  The
 * columns (ok, discount, reason) are the same.  Changing a function's
 * result type takes a DROP and a CREATE, so a view or function of yours
 * that calls validate() must be dropped before the update and made again
 * after it.
 *
 * validate() keeps copies of the policy and merchant facts it reads in each
 * backend (src/factcache.c), so a call probes only the coupon.  The copies
 * are trusted only while no transaction that changed a policy or a merchant
 * is in flight and none has ended since they were made; the triggers below
 * tell every backend about such a transaction.  They fire even under
 * session_replication_role = replica (logical replication's apply), and
 * validate() stops using the copies if they are missing or disabled. */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.6'" to load this file. \quit

CREATE TYPE coupon.validation AS (
	ok boolean,
	discount bigint,
	reason text
);
COMMENT ON TYPE coupon.validation IS 'What validate() answers: whether a coupon applies to an order, and the discount it would give.';
COMMENT ON COLUMN coupon.validation.ok IS 'True when the coupon can be used for the order (reason is ok).';
COMMENT ON COLUMN coupon.validation.discount IS 'The discount it would give, in minor units; 0 unless ok.';
COMMENT ON COLUMN coupon.validation.reason IS 'ok, or the first business rule that fails (a reason code of the error contract).';

DROP FUNCTION coupon.validate(bigint, text, bigint, bigint);
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
REVOKE ALL ON FUNCTION coupon.validate(bigint, text, bigint, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.validate(bigint, text, bigint, bigint)
	TO coupon_admin, coupon_app, coupon_merchant, coupon_customer;

CREATE FUNCTION coupon.note_fact_change() RETURNS trigger
AS 'MODULE_PATHNAME', 'coupon_note_fact_change'
LANGUAGE C;
COMMENT ON FUNCTION coupon.note_fact_change() IS 'Trigger: this transaction changed facts that validate() may hold copies of; when it ends, every backend drops its copies. Such a transaction cannot be prepared (PREPARE TRANSACTION).';
REVOKE ALL ON FUNCTION coupon.note_fact_change() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION coupon.note_fact_change() TO coupon_admin;

-- budgeted policies are never copied (budget_used moves with every hold)
CREATE TRIGGER policy_fact_change AFTER UPDATE ON coupon.policy
	FOR EACH ROW WHEN (OLD.budget IS NULL OR NEW.budget IS NULL)
	EXECUTE FUNCTION coupon.note_fact_change();
ALTER TABLE coupon.policy ENABLE ALWAYS TRIGGER policy_fact_change;
COMMENT ON TRIGGER policy_fact_change ON coupon.policy IS 'Drops validate()''s copies of policies when a policy without a budget (before or after) changes; fires even in replica sessions.';

CREATE TRIGGER merchant_fact_change AFTER UPDATE ON coupon.merchant
	FOR EACH ROW EXECUTE FUNCTION coupon.note_fact_change();
ALTER TABLE coupon.merchant ENABLE ALWAYS TRIGGER merchant_fact_change;
COMMENT ON TRIGGER merchant_fact_change ON coupon.merchant IS 'Drops validate()''s copies of merchants when a merchant changes; fires even in replica sessions.';
