-- demo/payments.sql: what the payment rush calls, and its orders.
-- 300 shoppers at the cafe, each with a welcome coupon (2,000 off from 5,000).
SELECT id AS cafe FROM public.demo_ids WHERE name = 'cafe' \gset
SELECT id AS welcome FROM public.demo_ids WHERE name = 'welcome' \gset

CREATE TABLE public.demo_orders (n integer PRIMARY KEY, user_id text, coupon_id bigint,
								 amount bigint, payment_key text);
INSERT INTO public.demo_orders
SELECT g, 'shopper-' || g, (coupon.issue(:welcome, 'shopper-' || g)).id,
	   5000 + 500 * (g % 20),
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
	RETURN (coupon.pay((SELECT id FROM public.demo_ids WHERE name = 'cafe'), o.user_id,
					   'cafe-order-' || o.n, o.amount, ARRAY[o.coupon_id], o.payment_key)).state;
END
$$;
