-- one checkout: reserve a pre-issued coupon, then confirm the hold, in one
-- transaction.  Each client walks its own slice of the pool (k counts this
-- client's transactions), so pairs never collide and never reuse a coupon.
-- variables (-D): cmin, slice, nusers, mid, k (=0)
\set k :k + 1
\set cid :cmin + :client_id * :slice + :k - 1
\set uid :cid % :nusers
\set amt random(10000, 100000)
BEGIN;
SELECT id AS rid FROM coupon.reserve(:cid, 'u' || :uid, :mid, 'o' || :cid, :amt) \gset
SELECT status FROM coupon.confirm(:rid);
END;
