-- baseline: the same rules in plain SQL (bench/sql/baseline.sql), same coupons
-- variables (-D): cmin, ncoupons, nusers, mid
\set cid random(:cmin, :cmin + :ncoupons - 1)
\set uid :cid % :nusers
\set amt random(1000, 200000)
SELECT ok, discount, reason FROM bench.validate_sql(:cid, 'u' || :uid, :mid, :amt);
