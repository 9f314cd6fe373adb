-- demo/setup.sql: two shops and a few policies of each kind.
CREATE EXTENSION IF NOT EXISTS coupon;

SELECT id AS cafe FROM coupon.create_merchant('Blue Bottle Cafe', 'KRW', commission_bp => 1000, pg_fee_bp => 300) \gset
SELECT id AS books FROM coupon.create_merchant('Corner Bookshop', 'KRW', commission_bp => 800, pg_fee_bp => 300) \gset

-- a welcome coupon the cafe hands out directly
SELECT id AS welcome FROM coupon.create_policy(:cafe, 'Welcome 2,000 off', 'fixed', 2000,
	min_order_amount => 5000, valid_days => 30) \gset
-- a flash sale: 100 coupons for whoever comes first, 20% off capped at 5,000
SELECT id AS flash FROM coupon.create_policy(:cafe, 'Flash sale 20%', 'percent', 2000,
	issue_method => 'fcfs', total_quantity => 100, max_discount => 5000) \gset
-- printed codes for the bookshop, usable at both shops, funded half by the platform
SELECT id AS printed FROM coupon.create_policy(:books, 'Printed flyer 3,000 off', 'fixed', 3000,
	issue_method => 'code', total_quantity => 50, allowed_merchants => ARRAY[:books, :cafe]::bigint[],
	merchant_share_bp => 5000) \gset
-- a stored-value gift card with a platform budget
SELECT id AS gift FROM coupon.create_policy(:books, 'Gift card 30,000', 'balance', 30000,
	per_user_limit => 1, budget => 1000000, stackable => true) \gset

-- what the rush calls: one attempt, the answer as a word instead of an error
CREATE FUNCTION public.demo_grab(policy_id bigint, user_id text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM coupon.issue(policy_id, user_id);
	RETURN 'issued';
EXCEPTION WHEN SQLSTATE 'PT409' THEN
	RETURN 'refused';
END $$;

CREATE TABLE public.demo_ids (name text PRIMARY KEY, id bigint);
INSERT INTO public.demo_ids VALUES ('cafe', :cafe), ('books', :books), ('welcome', :welcome),
	('flash', :flash), ('printed', :printed), ('gift', :gift);
