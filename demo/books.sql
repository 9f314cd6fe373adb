-- demo/books.sql: the payments after the rush, and the books.
\echo
\echo '=== payments by state ==='
SELECT state, count(*) AS payments, sum(amount) AS ordered, sum(discount) AS discounts,
	   sum(approved_amount) AS charged, sum(refunded_amount) AS refunded
  FROM coupon.payment GROUP BY state ORDER BY state;
\echo '=== coupons of the rush ==='
SELECT c.status, count(*) FROM coupon.coupon c JOIN public.demo_orders o ON o.coupon_id = c.id
 GROUP BY c.status ORDER BY c.status;
\echo '=== no failed payment kept its coupon, every completed one spent it ==='
SELECT count(*) FILTER (WHERE p.state = 'failed' AND c.status <> 'issued') AS failed_but_coupon_spent,
	   count(*) FILTER (WHERE p.state IN ('completed', 'partially_refunded') AND c.status <> 'used') AS paid_but_coupon_free
  FROM coupon.payment p JOIN coupon.coupon c ON c.id = p.coupon_ids[1];
\echo '=== the order whose answer came too late: confirm timed out, the lookup found it approved ==='
SELECT e.step, e.from_state, e.to_state, e.http_status, e.gateway_code, round(e.latency_ms) AS ms
  FROM coupon.payment p JOIN coupon.payment_event e ON e.payment_id = p.id
 WHERE p.payment_key = 'timeout_demo_7' ORDER BY e.id;
\echo '=== the saga worker ==='
SELECT worker, state, done, errors, circuit FROM coupon.worker_status;
