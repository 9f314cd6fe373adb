-- demo/checkout.sql: codes, direct issuance, holds confirmed and released.
\set ON_ERROR_STOP on
SELECT id AS cafe FROM public.demo_ids WHERE name = 'cafe' \gset
SELECT id AS books FROM public.demo_ids WHERE name = 'books' \gset
SELECT id AS welcome FROM public.demo_ids WHERE name = 'welcome' \gset
SELECT id AS printed FROM public.demo_ids WHERE name = 'printed' \gset
SELECT id AS gift FROM public.demo_ids WHERE name = 'gift' \gset

\echo
\echo '--- the bookshop prints 5 flyer codes (shown once, stored only as HMAC-SHA256)'
CREATE TEMP TABLE flyer AS SELECT code FROM coupon.generate_codes(:printed, 5) AS code;
SELECT code FROM flyer;

\echo '--- three customers redeem a flyer code each (case and dashes do not matter), then one mistypes'
SELECT c.user_id, c.id AS coupon_id, c.status
  FROM (SELECT code, 'customer-' || row_number() OVER () AS who FROM flyer LIMIT 3) f,
	   LATERAL coupon.redeem_code(lower(f.code), f.who) c;
DO $$
BEGIN
	PERFORM coupon.redeem_code('2222-3333-4444-5555', 'customer-1');
EXCEPTION WHEN OTHERS THEN
	RAISE NOTICE 'mistyped code refused: %', SQLERRM;
END $$;

\echo '--- the cafe welcomes two customers; one also gets a gift card'
SELECT user_id, id AS coupon_id, status FROM coupon.issue(:welcome, 'customer-1');
SELECT user_id, id AS coupon_id, status FROM coupon.issue(:welcome, 'customer-2');
SELECT user_id, id AS coupon_id, balance FROM coupon.issue(:gift, 'customer-2');

\echo '--- customer-1 checks a coupon before paying 12,000 at the cafe'
SELECT v.* FROM coupon.user_coupons('customer-1') u,
	   LATERAL coupon.validate(u.coupon_id, 'customer-1', :cafe, 12000) v
 WHERE u.policy_id = :welcome;

\echo '--- checkout: hold the welcome coupon, then the order is paid: confirm'
SELECT id AS r1 FROM coupon.reserve((SELECT coupon_id FROM coupon.user_coupons('customer-1') WHERE policy_id = :welcome),
	'customer-1', :cafe, 'order-1001', 12000) \gset
SELECT id, order_id, order_amount, discount, status FROM coupon.confirm(:r1);

\echo '--- customer-2 spends 8,000 of the gift card, then abandons a second cart (released)'
SELECT id AS r2 FROM coupon.reserve((SELECT coupon_id FROM coupon.user_coupons('customer-2') WHERE policy_id = :gift),
	'customer-2', :books, 'order-2001', 8000) \gset
SELECT id, order_id, discount, status FROM coupon.confirm(:r2);
SELECT id AS r3 FROM coupon.reserve((SELECT coupon_id FROM coupon.user_coupons('customer-2') WHERE policy_id = :welcome),
	'customer-2', :cafe, 'order-2002', 9000) \gset
SELECT id, order_id, discount, status FROM coupon.release(:r3);

\echo '--- using a spent coupon again is refused with a reason'
SELECT v.* FROM coupon.validate((SELECT coupon_id FROM coupon.user_coupons('customer-1') WHERE policy_id = :welcome),
	'customer-1', :cafe, 12000) v;
