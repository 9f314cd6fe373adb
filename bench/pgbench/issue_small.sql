-- coupon.issue on an fcfs policy that sells out mid-run; sold_out is a word
-- (bench.issue_or_sold_out), not an error, so no client aborts
-- variables (-D): pid
\set uid random(1, 1000000)
SELECT bench.issue_or_sold_out(:pid, 'u' || :uid);
