-- demo/payments.sql: what the payment rush calls, and its orders.
-- 300 shoppers, each with a coupon: three in four at the cafe (welcome
-- coupon, 2,000 off from 5,000, funded by the cafe), one in four at the
-- bookshop (reading week, 3,000 off from 10,000, half funded by the platform).
SELECT id AS cafe FROM public.demo_ids WHERE name = 'cafe' \gset
SELECT id AS books FROM public.demo_ids WHERE name = 'books' \gset
SELECT id AS welcome FROM public.demo_ids WHERE name = 'welcome' \gset
SELECT id AS week FROM coupon.create_policy(:books, 'Reading week 3,000 off', 'fixed', 3000,
	min_order_amount => 10000, merchant_share_bp => 5000) \gset

CREATE TABLE public.demo_orders (n integer PRIMARY KEY, merchant_id bigint, user_id text,
								 coupon_id bigint, amount bigint, payment_key text);
INSERT INTO public.demo_orders
SELECT g, CASE WHEN g % 4 = 0 THEN :books ELSE :cafe END, 'shopper-' || g,
	   (coupon.issue(CASE WHEN g % 4 = 0 THEN :week ELSE :welcome END, 'shopper-' || g)).id,
	   CASE WHEN g % 4 = 0 THEN 12000 + 1000 * (g % 9) ELSE 5000 + 500 * (g % 20) END,
	   -- one order whose confirm the gateway approves but answers too late
	   CASE WHEN g = 7 THEN 'timeout_demo_7' ELSE 'pk_demo_' || g END
  FROM generate_series(1, 300) g;
CREATE SEQUENCE public.demo_order_seq;

-- one checkout: the next order, paid with its coupon
CREATE FUNCTION public.demo_pay() RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	k bigint := nextval('public.demo_order_seq');
	o public.demo_orders;
BEGIN
	SELECT * INTO o FROM public.demo_orders WHERE n = k;
	RETURN (coupon.pay(o.merchant_id, o.user_id, 'order-' || o.n, o.amount, ARRAY[o.coupon_id],
					   o.payment_key)).state;
END
$$;
