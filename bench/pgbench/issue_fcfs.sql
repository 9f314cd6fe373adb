-- coupon.issue on an fcfs policy with a huge stock, random users
-- variables (-D): pid
\set uid random(1, 1000000)
SELECT id FROM coupon.issue(:pid, 'u' || :uid);
