#!/usr/bin/env bash
# The exporter's queries stay cheap as the tables grow.  Every query of
# scripts/exporter_queries.yaml, and the monitoring views themselves
# (stuck_payments, payment_backlog, policy_stats asked for stock), runs as
# a coupon_monitor member over 300,000 coupons, payments and reservations
# of which a few hundred payments are unfinished: first without ANALYZE
# (autovacuum off on them), then after it; the outbox holds their 900,000
# events, published.  No plan may scan coupon, payment, reservation or
# the outbox sequentially (EXPLAIN (FORMAT JSON)), and the
# tuples they read from those tables (pg_stat_xact_user_tables) stay at the
# unfinished payments, never the table.  The audit trail's reads (events(),
# purge_outbox()) are bounded the same way.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

QUERIES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/exporter_queries.yaml"
DB=load_metric_plans
ROLE="load_metric_plans_$$"
ROWS=300000

metric_plans_cleanup() {
	local rc=$?
	for db in "${LOAD_DBS[@]}"; do
		psql_db postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	done
	psql_db postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
	(exit $rc)
	load_cleanup
}
trap metric_plans_cleanup EXIT

create_db "$DB"
psql_db "$DB" -c "CREATE ROLE $ROLE LOGIN IN ROLE coupon_monitor"
for t in coupon payment reservation outbox; do
	psql_db "$DB" -c "ALTER TABLE coupon.$t SET (autovacuum_enabled = off)"
done

# the queries of the exporter's file (each "query: |" block), one per file
python3 - "$QUERIES" "$LOAD_DIR" <<'PY'
import sys
path, out = sys.argv[1], sys.argv[2]
n, block, name = 0, None, None
for line in open(path).read().splitlines() + ["end:"]:
    if block is not None:
        if line.startswith("    ") or not line.strip():
            block.append(line[4:])
            continue
        n += 1
        with open("%s/q%02d-%s.sql" % (out, n, name), "w") as f:
            f.write("\n".join(block).strip() + "\n")
        block = None
    if line and not line.startswith((" ", "#")) and line.endswith(":"):
        name = line[:-1]
    elif line.strip() == "query: |":
        block = []
PY
cat >"$LOAD_DIR/q90-stuck_payments_view.sql" <<'SQL'
SELECT * FROM coupon.stuck_payments
SQL
cat >"$LOAD_DIR/q91-payment_backlog_view.sql" <<'SQL'
SELECT * FROM coupon.payment_backlog
SQL
cat >"$LOAD_DIR/q92-policy_stats_stock.sql" <<'SQL'
SELECT policy_id, merchant_id, name, status, total_quantity, stock_remaining, budget, budget_used
  FROM coupon.policy_stats
SQL
chown -R postgres:postgres "$LOAD_DIR"
NQ=$(find "$LOAD_DIR" -name 'q[0-9]*.sql' | wc -l)
check "the exporter's file has 8 queries (plus 3 of the views)" "$NQ" 11

fill_start=$(date +%s)
psql_db "$DB" >/dev/null <<SQL
SELECT id AS m FROM coupon.create_merchant('metric plans shop') \gset
SELECT id AS pf FROM coupon.create_policy(:m, 'flash', 'fixed', 500, issue_method => 'fcfs',
	total_quantity => 1000000, per_user_limit => NULL) \gset
SELECT id AS pd FROM coupon.create_policy(:m, 'plain', 'fixed', 500, per_user_limit => NULL) \gset
INSERT INTO coupon.coupon (policy_id, user_id, user_seq, status, issued_at, updated_at)
SELECT CASE WHEN g % 2 = 0 THEN :pf ELSE :pd END, 'bulk-' || g, 1,
	   CASE WHEN g % 3 = 0 THEN 'used' ELSE 'issued' END, now(), now()
  FROM generate_series(1, $ROWS) g;
-- every 1000th payment unfinished (half of them an hour old), every
-- 10000th in needs_attention; the rest completed
INSERT INTO coupon.payment (merchant_id, user_id, order_id, amount, payment_key, state, updated_at)
SELECT :m, 'bulk-' || g, 'bulk-o' || g, 1000, 'bulk-k' || g,
	   CASE WHEN g % 10000 = 0 THEN 'needs_attention' WHEN g % 1000 = 0 THEN 'authorizing'
			WHEN g % 1000 = 1 THEN 'pending' ELSE 'completed' END,
	   now() - (g % 2) * interval '1 hour'
  FROM generate_series(1, $ROWS) g;
INSERT INTO coupon.reservation (coupon_id, merchant_id, user_id, order_id, order_amount, discount,
								status, expires_at)
SELECT c.id, :m, c.user_id, 'bulk-r' || c.id, 1000, 0, 'confirmed', now() + interval '1 hour'
  FROM coupon.coupon c;
SQL
# their events (900,000 outbox rows), as a relay that kept up would leave them: published
query "$DB" "SELECT coupon.relay_skip()" >/dev/null
diag "filled $ROWS coupons, payments and reservations, and their events, in $(($(date +%s) - fill_start)) s"
UNFINISHED=$(query "$DB" "SELECT count(*) FROM coupon.payment WHERE state <> 'completed'")
diag "$UNFINISHED payments unfinished"

# run every query as the monitoring role; per query: its plan's scan nodes
# on the three tables and the outbox, then the tuples it read from them
run_all() {
	local label=$1 f name plan seqs reads
	for f in "$LOAD_DIR"/q[0-9]*.sql; do
		name=$(basename "$f" .sql)
		name=${name#q[0-9][0-9]-}
		plan=$(as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" \
			-c "SET ROLE $ROLE" -c "EXPLAIN (FORMAT JSON) $(cat "$f")" 2>&1) || {
			not_ok "$label: $name runs as the monitoring role"
			diag "  $plan"
			continue
		}
		seqs=$(python3 -c '
import json, sys
def walk(n):
    if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") in ("coupon", "payment", "reservation", "outbox"):
        yield n["Relation Name"]
    for c in n.get("Plans", []):
        yield from walk(c)
print(" ".join(sorted(set(walk(json.loads(sys.stdin.read())[0]["Plan"])))))' <<<"$plan")
		check "$label: $name scans none of coupon, payment, reservation, outbox sequentially" "$seqs" ""
		reads=$(as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" <<SQL
BEGIN;
SET ROLE $ROLE;
\o /dev/null
$(cat "$f");
\o
RESET ROLE;
SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)
  FROM pg_stat_xact_user_tables
 WHERE schemaname = 'coupon' AND relname IN ('coupon', 'payment', 'reservation', 'outbox');
COMMIT;
SQL
		)
		if [ "$reads" -le "$((UNFINISHED * 2))" ]; then
			ok "$label: $name read $reads rows of them (unfinished payments: $UNFINISHED)"
		else
			not_ok "$label: $name read $reads rows of them (unfinished payments: $UNFINISHED)"
			as_pg psql -X -q -d "$DB" -c "SET ROLE $ROLE" -c "EXPLAIN $(cat "$f")" | sed 's/^/#   /'
		fi
	done
}

check "the tables hold $ROWS rows each, never analyzed" \
	"$(query "$DB" "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = 'coupon'
	                  AND relname IN ('coupon', 'payment', 'reservation')
	                  AND n_live_tup >= $ROWS AND last_analyze IS NULL AND last_autoanalyze IS NULL")" 3
run_all "no statistics"
psql_db "$DB" -c "ANALYZE coupon.coupon, coupon.payment, coupon.reservation, coupon.policy, coupon.policy_stock"
run_all "analyzed"

# the audit trail at this size: one coupon's events through the lookup
# table, and a purge of 10,000 published events with their lookup rows,
# each by index (tuples read from the outbox and its lookup table)
audit_reads() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$DB" <<SQL
BEGIN;
\o /dev/null
$1;
\o
SELECT coalesce(sum(seq_tup_read), 0) || ' ' || coalesce(sum(coalesce(idx_tup_fetch, 0)), 0)
  FROM pg_stat_xact_user_tables
 WHERE schemaname = 'coupon' AND relname IN ('outbox', 'outbox_lookup');
ROLLBACK;
SQL
}
read -r seq idx <<<"$(audit_reads "SELECT * FROM coupon.events('coupon', (SELECT max(id) FROM coupon.coupon))")"
check "events() of one coupon among $ROWS: no sequential read, at most 10 rows by index" \
	"$seq $((idx <= 10))" "0 1"
check "events() of that coupon: as many as the outbox holds" \
	"$(query "$DB" "SELECT count(*) FROM coupon.events('coupon', (SELECT max(id) FROM coupon.coupon))")" \
	"$(query "$DB" "SELECT count(*) FROM coupon.outbox WHERE aggregate = 'coupon' AND aggregate_id = (SELECT max(id) FROM coupon.coupon)")"
read -r seq idx <<<"$(audit_reads "SELECT coupon.purge_outbox(interval '0', 10000)")"
check "purge_outbox of 10,000 events: no sequential read, about two rows by index each" \
	"$seq $((idx <= 25000))" "0 1"

# and the answers are right at this size
check "payment_backlog counts the unfinished payments" \
	"$(query "$DB" "SELECT sum(payments) FROM coupon.payment_backlog")" "$UNFINISHED"
check "stuck_payments: the needs_attention ones and the unfinished ones an hour old" \
	"$(query "$DB" "SELECT count(*) FROM coupon.stuck_payments")" \
	"$(query "$DB" "SELECT count(*) FROM coupon.payment WHERE state = 'needs_attention'
	                  OR (state <> 'completed' AND updated_at < now() - interval '1 minute')")"
check "policy_stats still counts coupons by status (used, available per policy)" \
	"$(query "$DB" "SELECT string_agg(format('%s/%s', used, available), ' ' ORDER BY policy_id) FROM coupon.policy_stats")" \
	"$(query "$DB" "SELECT string_agg(format('%s/%s', u, a), ' ' ORDER BY policy_id)
	                  FROM (SELECT policy_id, count(*) FILTER (WHERE status = 'used') u,
	                               count(*) FILTER (WHERE status = 'issued') a
	                          FROM coupon.coupon GROUP BY policy_id) s")"

load_finish
