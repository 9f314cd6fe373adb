-- coupon.validate on a random pre-issued coupon, asked by its holder
-- variables (-D): cmin, ncoupons, nusers, mid
\set cid random(:cmin, :cmin + :ncoupons - 1)
\set uid :cid % :nusers
\set amt random(1000, 200000)
SELECT ok, discount, reason FROM coupon.validate(:cid, 'u' || :uid, :mid, :amt);
