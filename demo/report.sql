-- demo/report.sql: what happened, per policy.
\echo
\echo '=== policies after the demo ==='
SELECT name, issue_method AS method, total_quantity AS total, stock_remaining AS left,
	   unclaimed, issued, available, reserved, used, budget_used
  FROM coupon.policy_stats ORDER BY policy_id;
\echo '=== gift card balance of customer-2 ==='
SELECT coupon_id, policy_name, status, balance FROM coupon.user_coupons('customer-2') WHERE discount_type = 'balance';
