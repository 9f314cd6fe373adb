#!/usr/bin/env bash
# pg_dump round trip of a database holding coupon data.
#
# Every table the extension registers with pg_extension_config_dump must
# come back row for row, and the identity sequences must continue: after the
# restore, new merchants, policies, coupons and reservations get ids above
# the old ones (pg_extension_config_dump on the identity sequences).  The
# restored data must also keep working: fcfs stock continues, per_user_limit
# still counts restored coupons, restored holds can be confirmed and
# released, and generated codes can still be redeemed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

SRC=load_dump
DST=load_dump_restored
TABLES="merchant policy policy_stock coupon reservation idempotency_key payment payment_event outbox"

create_db "$SRC"
# the restore target gets no CREATE EXTENSION: the dump carries it
psql_db postgres -c "DROP DATABASE IF EXISTS $DST" -c "CREATE DATABASE $DST"
LOAD_DBS+=("$DST")

psql_db "$SRC" >/dev/null <<'SQL'
CREATE TABLE codes (policy_id bigint, code text);
SELECT id AS m1 FROM coupon.create_merchant('dump shop one') \gset
SELECT id AS m2 FROM coupon.create_merchant('dump shop two', 'KRW', 250, 300, 2) \gset
SELECT id AS fixed_p FROM coupon.create_policy(:m1, 'fixed', 'fixed', 1000, budget => 100000) \gset
SELECT id AS fcfs_p FROM coupon.create_policy(:m1, 'fcfs', 'percent', 1000, issue_method => 'fcfs',
	total_quantity => 100, per_user_limit => 1, max_discount => 5000) \gset
SELECT id AS bal_p FROM coupon.create_policy(:m2, 'balance', 'balance', 50000,
	allowed_merchants => ARRAY[:m1, :m2]::bigint[]) \gset
SELECT id AS code_p FROM coupon.create_policy(:m2, 'codes', 'fixed', 700, issue_method => 'code',
	total_quantity => 20) \gset
INSERT INTO codes SELECT :code_p, coupon.generate_codes(:code_p, 10);
SELECT coupon.issue(:fixed_p, 'u' || g, 'key-fixed-' || g) FROM generate_series(1, 30) g;
SELECT coupon.issue(:fcfs_p, 'u' || g) FROM generate_series(1, 40) g;
SELECT coupon.issue(:bal_p, 'u' || g) FROM generate_series(1, 10) g;
SELECT coupon.redeem_code(code, 'code-user-' || row_number() OVER ()) FROM (SELECT code FROM codes ORDER BY code LIMIT 4) s;
-- holds in every state
SELECT coupon.reserve(c.id, c.user_id, :m1, 'order-' || c.id, 20000)
  FROM coupon.coupon c WHERE c.policy_id IN (:fixed_p, :fcfs_p) AND c.user_id IN ('u1', 'u2', 'u3', 'u4', 'u5', 'u6');
SELECT coupon.confirm(id) FROM coupon.reservation WHERE order_id IN (SELECT 'order-' || id FROM coupon.coupon WHERE user_id IN ('u1', 'u2'));
SELECT coupon.release(id) FROM coupon.reservation WHERE order_id IN (SELECT 'order-' || id FROM coupon.coupon WHERE user_id = 'u3');
SELECT coupon.reserve(c.id, c.user_id, :m2, 'bal-order-' || c.id, 12000)
  FROM coupon.coupon c WHERE c.policy_id = :bal_p AND c.user_id IN ('u1', 'u2');
SELECT coupon.confirm(id) FROM coupon.reservation WHERE order_id LIKE 'bal-order-%';
-- payments (nothing drives them here: they keep the state pay() gave them)
SELECT coupon.pay(:m1, c.user_id, 'pay-' || c.id, 15000, ARRAY[c.id], NULL, 'pay-key-' || c.id)
  FROM coupon.coupon c WHERE c.policy_id = :fixed_p AND c.user_id IN ('u8', 'u9', 'u10');
SELECT coupon.cancel_payment((SELECT min(id) FROM coupon.payment), 'dump test');
SQL

fingerprint() {
	local db=$1 t=$2
	query "$db" "SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
	               FROM coupon.$t x"
}
declare -A BEFORE
for t in $TABLES; do
	BEFORE[$t]=$(fingerprint "$SRC" "$t")
done
MAXIDS="SELECT (SELECT max(id) FROM coupon.merchant) || ' ' || (SELECT max(id) FROM coupon.policy)
        || ' ' || (SELECT max(id) FROM coupon.coupon) || ' ' || (SELECT max(id) FROM coupon.reservation)"
read -r OLD_M OLD_P OLD_C OLD_R <<<"$(query "$SRC" "$MAXIDS")"
diag "source: $(query "$SRC" "SELECT string_agg(relname || '=' || n_live_tup, ' ' ORDER BY relname)
                               FROM pg_stat_user_tables WHERE schemaname = 'coupon'")"

DUMP="$LOAD_DIR/coupon.dump"
if as_pg pg_dump -Fc -f "$DUMP" "$SRC" 2>"$LOAD_DIR/pg_dump.err"; then
	ok "pg_dump of a database with coupon data"
else
	not_ok "pg_dump of a database with coupon data"
	sed 's/^/#   /' "$LOAD_DIR/pg_dump.err"
fi
if as_pg pg_restore --exit-on-error -d "$DST" "$DUMP" 2>"$LOAD_DIR/pg_restore.err"; then
	ok "pg_restore into a new database"
else
	not_ok "pg_restore into a new database"
	sed 's/^/#   /' "$LOAD_DIR/pg_restore.err" | head -20
fi
check "pg_restore printed no errors or warnings" "$(cat "$LOAD_DIR/pg_restore.err")" ""

for t in $TABLES; do
	check "coupon.$t restored row for row" "$(fingerprint "$DST" "$t")" "${BEFORE[$t]}"
done

# the audit trail's lookup is not dumped: the restore's COPY of the outbox
# makes it again, a row for every event (the restored database's relay
# position counts them all as published), and events() finds them
check "every restored event has its outbox_lookup row, and no other row is there" \
	"$(query "$DST" "SELECT (SELECT count(*) FROM coupon.outbox) || ' ' || count(*) || ' ' ||
	                        count(*) FILTER (WHERE EXISTS (SELECT FROM coupon.outbox o WHERE o.xid = l.xid
	                                           AND o.event_id = l.event_id AND o.aggregate_id = l.aggregate_id))
	                   FROM coupon.outbox_lookup l")" \
	"$(query "$SRC" "SELECT count(*) || ' ' || count(*) || ' ' || count(*) FROM coupon.outbox")"
check "events() gives each restored aggregate its events, as the source did" \
	"$(query "$DST" "SELECT string_agg(a.aggregate || a.aggregate_id || ':' || (SELECT count(*) FROM coupon.events(a.aggregate, a.aggregate_id)), ' ' ORDER BY a.aggregate, a.aggregate_id)
	                   FROM (SELECT DISTINCT aggregate, aggregate_id FROM coupon.outbox) a")" \
	"$(query "$SRC" "SELECT string_agg(a.aggregate || a.aggregate_id || ':' || (SELECT count(*) FROM coupon.events(a.aggregate, a.aggregate_id)), ' ' ORDER BY a.aggregate, a.aggregate_id)
	                   FROM (SELECT DISTINCT aggregate, aggregate_id FROM coupon.outbox) a")"

# the identity sequences continue where the source stopped
diag "sequences in the source: $(query "$SRC" "SELECT string_agg(sequencename || '=' || coalesce(last_value::text, 'null'), ' ' ORDER BY sequencename) FROM pg_sequences WHERE schemaname = 'coupon'")"
check "sequence values restored (merchant, policy, coupon, reservation)" \
	"$(query "$DST" "SELECT string_agg(s.sequencename || '=' || coalesce(s.last_value::text, 'null'), ' ' ORDER BY s.sequencename)
	                   FROM pg_sequences s WHERE s.schemaname = 'coupon'
	                    AND s.sequencename IN ('merchant_id_seq', 'policy_id_seq', 'coupon_id_seq', 'reservation_id_seq')")" \
	"$(query "$SRC" "SELECT string_agg(s.sequencename || '=' || coalesce(s.last_value::text, 'null'), ' ' ORDER BY s.sequencename)
	                   FROM pg_sequences s WHERE s.schemaname = 'coupon'
	                    AND s.sequencename IN ('merchant_id_seq', 'policy_id_seq', 'coupon_id_seq', 'reservation_id_seq')")"
new_id() {
	query "$DST" "$1" 2>"$LOAD_DIR/new_id.err" || { sed 's/^/#   /' "$LOAD_DIR/new_id.err" | head -3; echo "error"; }
}
NEW_M=$(new_id "SELECT id FROM coupon.create_merchant('after restore')")
check "a new merchant after restore gets an id above the old ones" \
	"$([ "$NEW_M" != error ] && [ "$NEW_M" -gt "$OLD_M" ] && echo above || echo "$NEW_M <= $OLD_M")" "above"
NEW_P=$(new_id "SELECT id FROM coupon.create_policy((SELECT min(id) FROM coupon.merchant), 'after restore', 'fixed', 100)")
check "a new policy after restore gets an id above the old ones" \
	"$([ "$NEW_P" != error ] && [ "$NEW_P" -gt "$OLD_P" ] && echo above || echo "$NEW_P <= $OLD_P")" "above"
NEW_C=$(new_id "SELECT id FROM coupon.issue((SELECT id FROM coupon.policy WHERE name = 'fixed'), 'new-user')")
check "a new coupon after restore gets an id above the old ones" \
	"$([ "$NEW_C" != error ] && [ "$NEW_C" -gt "$OLD_C" ] && echo above || echo "$NEW_C <= $OLD_C")" "above"
NEW_R=$(new_id "SELECT r.id FROM coupon.coupon c, coupon.reserve(c.id, c.user_id,
                  (SELECT min(id) FROM coupon.merchant), 'after-restore', 5000) r
                 WHERE c.user_id = 'u7' AND c.policy_id = (SELECT id FROM coupon.policy WHERE name = 'fixed')")
check "a new reservation after restore gets an id above the old ones" \
	"$([ "$NEW_R" != error ] && [ "$NEW_R" -gt "$OLD_R" ] && echo above || echo "$NEW_R <= $OLD_R")" "above"

# the restored data keeps working
check "fcfs stock continues: 60 left, one more issue leaves 59" \
	"$(query "$DST" "SELECT stock_remaining FROM coupon.policy_stats WHERE name = 'fcfs'") $(new_id "SELECT count(*) FROM coupon.issue((SELECT id FROM coupon.policy WHERE name = 'fcfs'), 'fresh-user')" >/dev/null; query "$DST" "SELECT stock_remaining FROM coupon.policy_stats WHERE name = 'fcfs'")" \
	"60 59"
check "per_user_limit counts restored coupons (PT409 per_user_limit)" \
	"$(query "$DST" "CREATE FUNCTION pg_temp.try_issue() RETURNS text LANGUAGE plpgsql AS \$f\$
	                 DECLARE det text;
	                 BEGIN
	                     PERFORM coupon.issue((SELECT id FROM coupon.policy WHERE name = 'fcfs'), 'u1');
	                     RETURN 'issued';
	                 EXCEPTION WHEN OTHERS THEN
	                     GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
	                     RETURN SQLSTATE || ' ' || (det::jsonb ->> 'reason');
	                 END \$f\$;
	                 SELECT pg_temp.try_issue()")" \
	"PT409 per_user_limit"
check "a restored hold can be confirmed" \
	"$(query "$DST" "SELECT (coupon.confirm(r.id)).status FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
	                 WHERE c.user_id = 'u4' AND r.status = 'held' ORDER BY r.id LIMIT 1")" "confirmed"
check "a restored hold can be released, giving the budget back" \
	"$(query "$DST" "WITH b AS (SELECT budget_used FROM coupon.policy WHERE name = 'fixed')
	                 SELECT (coupon.release(r.id)).status FROM coupon.reservation r JOIN coupon.coupon c ON c.id = r.coupon_id
	                 WHERE c.user_id = 'u5' AND r.status = 'held' AND c.policy_id = (SELECT id FROM coupon.policy WHERE name = 'fixed')")" \
	"released"
check "budget_used still equals the held + confirmed discounts" \
	"$(query "$DST" "SELECT p.budget_used = (SELECT coalesce(sum(r.discount), 0) FROM coupon.reservation r
	                   JOIN coupon.coupon c ON c.id = r.coupon_id
	                  WHERE c.policy_id = p.id AND r.status IN ('held', 'confirmed'))
	                   FROM coupon.policy p WHERE p.name = 'fixed'")" "t"
CODE=$(query "$SRC" "SELECT code FROM codes ORDER BY code DESC LIMIT 1")
check "an unredeemed generated code can be redeemed after restore" \
	"$(query "$DST" "SELECT status FROM coupon.redeem_code('$CODE', 'code-after-restore')" 2>&1)" "issued"
check "an idempotency key replays the first coupon after restore" \
	"$(query "$DST" "SELECT (coupon.issue((SELECT id FROM coupon.policy WHERE name = 'fixed'), 'u9', 'key-fixed-9')).id
	                   = (SELECT id FROM coupon.coupon WHERE user_id = 'u9'
	                       AND policy_id = (SELECT id FROM coupon.policy WHERE name = 'fixed'))")" "t"

load_finish
