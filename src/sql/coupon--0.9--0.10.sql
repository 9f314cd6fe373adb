/* coupon--0.9--0.10.sql
 *
 * Event ids taken a block at a time (docs/events.md, "Event ids"); comments
 * on the triggers, the row-level security policies and the roles that had
 * none (docs/api.md is made from the comments). */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "ALTER EXTENSION coupon UPDATE TO '0.10'" to load this file. \quit

-- events (begin)

/*
 * A commit takes its events' ids from a block of 1000 kept in shared
 * memory; one nextval() of the sequence reserves the next block.  Ids stay
 * unique and rise in commit order per aggregate; they are no longer dense.
 */
ALTER TABLE coupon.outbox ALTER COLUMN event_id SET INCREMENT BY 1000;

-- events (end)

-- comments (begin)

COMMENT ON TRIGGER merchant_no_delete ON coupon.merchant IS 'Refuses DELETE and TRUNCATE: a merchant is suspended with set_merchant_status(), never removed, so rows that point at it stay valid without foreign keys.';
COMMENT ON TRIGGER policy_no_delete ON coupon.policy IS 'Refuses DELETE and TRUNCATE: a policy is paused or retired, never removed, so the coupons that point at it stay valid without foreign keys.';
COMMENT ON TRIGGER coupon_no_delete ON coupon.coupon IS 'Refuses DELETE and TRUNCATE: a coupon is revoked or expires, never removed, as holds and payments refer to it.';
COMMENT ON TRIGGER payment_event_append_only ON coupon.payment_event IS 'Refuses UPDATE, DELETE and TRUNCATE: a payment''s events are its audit trail, only ever appended.';
COMMENT ON TRIGGER payment_refund_ledger ON coupon.payment IS 'Writes a payment_refund row for every refund that goes through (refunded_amount grows, or the payment becomes refunded).';
COMMENT ON TRIGGER settlement_append_only ON coupon.settlement IS 'Refuses UPDATE, DELETE and TRUNCATE: settled figures are never edited or removed; a later batch corrects them with adjustments.';
COMMENT ON TRIGGER settlement_item_append_only ON coupon.settlement_item IS 'Refuses UPDATE, DELETE and TRUNCATE: a batch''s items are what was settled; a later batch corrects them with adjustments.';

DO $$
DECLARE
	t regclass;
BEGIN
	FOR t IN SELECT polrelid FROM pg_catalog.pg_policy
			  WHERE polname = 'admin_all'
				AND polrelid IN (SELECT objid FROM pg_catalog.pg_depend
								  WHERE refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
									AND refobjid = (SELECT oid FROM pg_catalog.pg_extension WHERE extname = 'coupon')
									AND classid = 'pg_catalog.pg_class'::pg_catalog.regclass)
	LOOP
		EXECUTE pg_catalog.format('COMMENT ON POLICY admin_all ON %s IS %L', t,
			'coupon_admin reads and writes every row; no other role has privileges on the table: '
			'merchants and customers reach rows only through the functions, which run as the owner.');
	END LOOP;
END
$$;

COMMENT ON ROLE coupon_admin IS 'coupon: platform operators; every function, and SELECT on every table and view (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_app IS 'coupon: a trusted backend acting for any merchant: policies, issuance, codes, validation, holds, payments (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_merchant IS 'coupon: a merchant''s session or server (PostgREST), bound to its merchant: the merchant''s own policies, coupons, holds and payments (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_customer IS 'coupon: a customer''s session (PostgREST): issue, redeem_code, user_coupons, validate, payment_status, its own (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_anonymous IS 'coupon: PostgREST requests without a JWT; pre_request() only, which signs a merchant''s server in with client credentials (docs/operations.md, "Roles").';
COMMENT ON ROLE coupon_monitor IS 'coupon: monitoring; SELECT on the status views and throttle_status(), no table (docs/operations.md, "Roles").';

-- comments (end)
