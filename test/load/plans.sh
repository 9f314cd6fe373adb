#!/usr/bin/env bash
# Plans made while the tables are small stay good as they grow.  A session
# runs every kind of SQL statement the C functions prepare (issue, two
# coupons on one order, release, pay, payment_status, the expiry sweeps,
# user_coupons, cancel_payment) seven times, so its saved plans are made,
# generic ones included, on nearly empty tables; another session then adds
# 200,000 coupons, payments and reservations, without ANALYZE (autovacuum
# off on them).  The same operations in the first session must not scan
# coupon, payment or reservation sequentially: no planner hook forces it
# since 0.8, so each statement has to find its index by itself.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

DB=load_plans
create_db "$DB"
for t in coupon payment reservation; do
	psql_db "$DB" -c "ALTER TABLE coupon.$t SET (autovacuum_enabled = off)"
done

cat >"$LOAD_DIR/ops.sql" <<'SQL'
SELECT id AS c1 FROM coupon.issue(:p, 'pl-' || :r || '-a') \gset
SELECT id AS c2 FROM coupon.issue(:ps, 'pl-' || :r || '-a') \gset
SELECT coupon.reserve(:c1, 'pl-' || :r || '-a', :m, 'pl-o' || :r, 5000) IS NOT NULL AS held;
SELECT id AS h2 FROM coupon.reserve(:c2, 'pl-' || :r || '-a', :m, 'pl-o' || :r, 5000) \gset
SELECT (coupon.release(:h2)).status;
SELECT id AS c3 FROM coupon.issue(:p, 'pl-' || :r || '-b') \gset
SELECT id AS y FROM coupon.pay(:m, 'pl-' || :r || '-b', 'pl-p' || :r, 5000, ARRAY[:c3]) \gset
SELECT coupon.payment_status(:y) IS NOT NULL AS status_read;
SELECT coupon.expire_reservations(10), coupon.expire_coupons(10);
SELECT count(*) FROM coupon.user_coupons('pl-' || :r || '-a');
SELECT (coupon.cancel_payment(:y, 'changed my mind')).state;
SQL
cat >"$LOAD_DIR/grow.sql" <<'SQL'
INSERT INTO coupon.coupon (policy_id, user_id, user_seq, status, issued_at, updated_at)
SELECT (SELECT min(id) FROM coupon.policy), 'bulk-' || g, 1, 'issued', now(), now()
  FROM generate_series(1, 200000) g;
INSERT INTO coupon.payment (merchant_id, user_id, order_id, amount, payment_key, state)
SELECT (SELECT min(id) FROM coupon.merchant), 'bulk-' || g, 'bulk-o' || g, 1000, 'bulk-k' || g, 'completed'
  FROM generate_series(1, 200000) g;
INSERT INTO coupon.reservation (coupon_id, merchant_id, user_id, order_id, order_amount, discount,
                                status, expires_at)
SELECT c.id, (SELECT min(id) FROM coupon.merchant), c.user_id, 'bulk-r' || c.id, 1000, 0, 'confirmed',
       now() + interval '1 hour'
  FROM coupon.coupon c WHERE c.user_id LIKE 'bulk-%';
SQL
{
	echo "\\set ON_ERROR_STOP 1"
	echo "SELECT id AS m FROM coupon.create_merchant('plan shop') \\gset"
	echo "SELECT id AS p FROM coupon.create_policy(:m, 'plain', 'fixed', 500, per_user_limit => NULL) \\gset"
	echo "SELECT id AS ps FROM coupon.create_policy(:m, 'stacks', 'fixed', 300, per_user_limit => NULL, stackable => true) \\gset"
	for r in 1 2 3 4 5 6 7; do
		echo "\\set r $r"
		echo "\\i $LOAD_DIR/ops.sql"
	done
	echo "\\! psql -X -q -v ON_ERROR_STOP=1 -d $DB -f $LOAD_DIR/grow.sql"
	echo "BEGIN;"
	for r in 8 9; do
		echo "\\set r $r"
		echo "\\i $LOAD_DIR/ops.sql"
	done
	echo "\\o $LOAD_DIR/scans.out"
	echo "SELECT relname || ' ' || seq_tup_read FROM pg_stat_xact_user_tables"
	echo " WHERE schemaname = 'coupon' AND relname IN ('coupon', 'payment', 'reservation') ORDER BY relname;"
	echo "\\o"
	echo "COMMIT;"
} >"$LOAD_DIR/session.sql"
chown -R postgres:postgres "$LOAD_DIR"

if (cd "$LOAD_DIR" && as_pg psql -X -q -At -d "$DB" -f "$LOAD_DIR/session.sql" >"$LOAD_DIR/session.log" 2>&1); then
	ok "the session ran every operation before and after the tables grew"
else
	not_ok "the session ran every operation before and after the tables grew"
	tail -5 "$LOAD_DIR/session.log" | sed 's/^/#   /'
fi
check "the tables grew to 200,000 rows without ANALYZE" \
	"$(query "$DB" "SELECT count(*) FILTER (WHERE n_live_tup >= 200000 AND last_analyze IS NULL AND last_autoanalyze IS NULL)
	                  FROM pg_stat_user_tables WHERE schemaname = 'coupon'
	                   AND relname IN ('coupon', 'payment', 'reservation')")" 3
check "after they grew, no operation read them sequentially (tuples read by seq scans)" \
	"$(tr '\n' ' ' <"$LOAD_DIR/scans.out")" "coupon 0 payment 0 reservation 0 "

load_finish
