#!/usr/bin/env bash
# bench/settlement.sh: how long coupon.run_settlement() takes over a million
# completed payments.  Run as root from the repo root:
#
#     bash bench/settlement.sh                                # 1,000,000 payments, about 2 minutes
#     SETTLE_BENCH_PAYMENTS=100000 bash bench/settlement.sh   # a quick check (~20 s)
#
# Builds and installs the extension, starts a private cluster with durable
# settings (fsync and synchronous_commit on, as bench/run.sh), loads the
# payments straight into the tables with INSERT ... SELECT
# (bench/sql/settlement_data.sql: 20 merchants with settlement_delay_days 0,
# six policies with different merchant shares, every third payment with a
# coupon, refunds making 5 % of the items, partial and full), then times in
# the same run:
#
#   - the floor: one plain INSERT ... SELECT of the same number of rows, with
#     the same per-item formulas, into a table of settlement_item's shape;
#   - the writes alone: the floor's rows copied again from an unlogged table
#     into another table of that shape (what any settlement has to pay);
#   - SELECT count(*) FROM coupon.run_settlement(now()) over all of it;
#   - the same call again, when nothing is new (the no-op re-run);
#
# and prints seconds, rows/s and WAL for each, the issue's target (the run in
# at most 10 s) with met / NOT met beside it, and correctness checks as
# information lines.  It prints figures and never judges a time: the exit
# status only says whether the runs themselves worked.  See bench/README.md.
#
# Settings (environment):
#   SETTLE_BENCH_PAYMENTS   completed payments (1000000)
#   SETTLE_BENCH_MERCHANTS  merchants (20)
#   SETTLE_BENCH_EXPLAIN=1  afterwards, empty the settlement tables and run it
#                           once more under auto_explain (ANALYZE, BUFFERS),
#                           printing the plan of every statement inside it
#   SETTLE_BENCH_KEEP=1     keep the work directory (server log) instead of removing it
#   SETTLE_BENCH_PORT       port (and socket name) of the private cluster (a free one)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH=$COUPON_ROOT/bench
NPAY=${SETTLE_BENCH_PAYMENTS:-1000000}
NMER=${SETTLE_BENCH_MERCHANTS:-20}
EXPLAIN=${SETTLE_BENCH_EXPLAIN:-0}
TARGET_S=10

case "$NPAY" in '' | *[!0-9]*) echo "SETTLE_BENCH_PAYMENTS must be a positive number" >&2; exit 2 ;; esac
case "$NMER" in '' | *[!0-9]*) echo "SETTLE_BENCH_MERCHANTS must be a positive number" >&2; exit 2 ;; esac
[ "$NPAY" -ge 100 ] && [ "$NMER" -ge 1 ] || { echo "at least 100 payments and 1 merchant" >&2; exit 2; }

prepare_run settle
PORT=${SETTLE_BENCH_PORT:-$(free_port)}
INFO=$WORK/info.txt
: >"$INFO"

cleanup() {
	cluster_stop "$WORK"
	if [ "${SETTLE_BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "starting a private cluster in $WORK (port $PORT)"
cluster_start "$WORK" "$PORT" <<EOF
$BENCH_DURABLE_CONF
EOF

# one value (or one |-separated row) from a query in database settle
q() {
	pg -d settle -At -c "$*"
}

info() {
	printf '%s\n' "$*" >>"$INFO"
}

# time_it SQL: run SQL (a statement whose result is one value named n, with
# \gset) after a checkpoint; prints "n seconds wal_bytes".  The clock is read
# by the server before the statement and after its commit (autocommit), so
# the commit's WAL flush is included and the client's connection is not.
time_it() {
	q "CHECKPOINT" >/dev/null
	pg -d settle -At <<EOF
SELECT pg_current_wal_lsn() AS l0, clock_timestamp() AS t0 \gset
$1 \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz), 3) AS secs,
	   pg_current_wal_lsn() - :'l0'::pg_lsn AS wal \gset
\echo :n :secs :wal
EOF
}

START=$SECONDS

# ------------------------------------------------------------------ data

log "loading $NPAY payments over $NMER merchants (bench/sql/settlement_data.sql)"
pg -d postgres -c "CREATE DATABASE settle"
pg -d settle -c "CREATE EXTENSION coupon"
t0=$SECONDS
pg -d settle -v payments="$NPAY" -v merchants="$NMER" -f "$BENCH/sql/settlement_data.sql" >/dev/null
load_s=$((SECONDS - t0))
t0=$SECONDS
q "VACUUM ANALYZE" >/dev/null
vacuum_s=$((SECONDS - t0))

IFS='|' read -r n_pay n_coupon n_zero n_partial_pay n_refunded_pay n_ref n_ref_partial n_ref_full < <(q "
	SELECT (SELECT count(*) FROM coupon.payment),
		   (SELECT count(*) FROM coupon.payment WHERE cardinality(coupon_ids) > 0),
		   (SELECT count(*) FROM coupon.payment WHERE approved_amount = 0),
		   (SELECT count(*) FROM coupon.payment WHERE state = 'partially_refunded'),
		   (SELECT count(*) FROM coupon.payment WHERE state = 'refunded'),
		   count(*), count(*) FILTER (WHERE NOT full_refund), count(*) FILTER (WHERE full_refund)
	  FROM coupon.payment_refund")
n_items=$((n_pay + n_ref))
info "data: $n_pay completed payments ($n_coupon with a coupon, $n_zero of them paid wholly by it), $n_ref refunds ($n_ref_partial partial, $n_ref_full completing a refund; $n_partial_pay payments partially refunded, $n_refunded_pay refunded in full); loaded in ${load_s}s, VACUUM ANALYZE ${vacuum_s}s"
info "tables: $(q "SELECT string_agg(relname || ' ' || pg_size_pretty(pg_total_relation_size(c.oid)), ', ' ORDER BY relname)
	FROM pg_class c WHERE c.relnamespace = 'coupon'::regnamespace AND c.relkind = 'r'
	  AND c.relname IN ('payment', 'coupon', 'reservation', 'payment_refund')") (with indexes)"

# ------------------------------------------------------------------- runs

log "floor: plain INSERT ... SELECT of $n_items rows into settle_bench.item_floor"
read -r floor_n floor_s floor_wal < <(time_it "
	WITH i AS (
		SELECT p.id AS payment_id, p.merchant_id, c.policy_id, p.completed_at AS occurred_at,
			   p.amount AS gross, p.discount, m.commission_bp, m.pg_fee_bp,
			   coalesce(coupon.round_half_up_bp(p.discount, pol.merchant_share_bp), 0) AS d_m
		  FROM coupon.payment p
		  JOIN coupon.merchant m ON m.id = p.merchant_id
		  LEFT JOIN coupon.coupon c ON c.id = p.coupon_ids[1]
		  LEFT JOIN coupon.policy pol ON pol.id = c.policy_id
		 WHERE p.completed_at IS NOT NULL),
	f AS (
		SELECT f.payment_id, f.id AS refund_id, p.merchant_id, c.policy_id,
			   f.refunded_at AS occurred_at, f.amount, m.commission_bp, m.pg_fee_bp
		  FROM coupon.payment_refund f
		  JOIN coupon.payment p ON p.id = f.payment_id
		  JOIN coupon.merchant m ON m.id = p.merchant_id
		  LEFT JOIN coupon.coupon c ON c.id = p.coupon_ids[1]),
	item AS (
		SELECT i.payment_id, NULL::bigint AS refund_id, 'sale'::text AS kind, i.merchant_id,
			   i.policy_id, i.occurred_at, i.gross, i.d_m, i.discount - i.d_m AS d_p,
			   coupon.round_half_up_bp(i.gross - i.d_m, i.commission_bp) AS commission,
			   coupon.round_half_up_bp(i.gross - i.discount, i.pg_fee_bp) AS pg_fee
		  FROM i
		UNION ALL
		SELECT f.payment_id, f.refund_id, 'refund', f.merchant_id, f.policy_id, f.occurred_at,
			   -f.amount, 0, 0,
			   -coupon.round_half_up_bp(f.amount, f.commission_bp),
			   -coupon.round_half_up_bp(f.amount, f.pg_fee_bp)
		  FROM f),
	stored AS (
		INSERT INTO settle_bench.item_floor (settlement_id, merchant_id, payment_id, refund_id, kind,
											 policy_id, occurred_at, gross, discount_merchant,
											 discount_platform, charged, base, commission, pg_fee, payout)
		SELECT i.merchant_id, i.merchant_id, i.payment_id, i.refund_id, i.kind, i.policy_id,
			   i.occurred_at, i.gross, i.d_m, i.d_p, i.gross - i.d_m - i.d_p, i.gross - i.d_m,
			   i.commission, i.pg_fee, i.gross - i.d_m - i.commission - i.pg_fee
		  FROM item i
		RETURNING 1)
	SELECT count(*) AS n FROM stored")

log "write only: the floor's rows again, INSERT ... SELECT * from an unlogged copy"
q "CREATE UNLOGGED TABLE settle_bench.item_staged AS SELECT * FROM settle_bench.item_floor ORDER BY id;
   CREATE TABLE settle_bench.item_write (LIKE coupon.settlement_item INCLUDING ALL)" >/dev/null
q "VACUUM ANALYZE settle_bench.item_staged" >/dev/null
read -r write_n write_s write_wal < <(time_it "
	WITH stored AS (
		INSERT INTO settle_bench.item_write (settlement_id, merchant_id, payment_id, refund_id, kind,
											 policy_id, occurred_at, gross, discount_merchant,
											 discount_platform, charged, base, commission, pg_fee, payout)
		SELECT settlement_id, merchant_id, payment_id, refund_id, kind, policy_id, occurred_at, gross,
			   discount_merchant, discount_platform, charged, base, commission, pg_fee, payout
		  FROM settle_bench.item_staged ORDER BY id
		RETURNING 1)
	SELECT count(*) AS n FROM stored")

log "run: SELECT count(*) FROM coupon.run_settlement(now())"
read -r run_batches run_s run_wal < <(time_it "SELECT count(*) AS n FROM coupon.run_settlement(now())")
run_items=$(q "SELECT count(*) FROM coupon.settlement_item")

log "re-run: the same call with nothing new"
read -r rerun_batches rerun_s rerun_wal < <(time_it "SELECT count(*) AS n FROM coupon.run_settlement(now())")
rerun_items=$(q "SELECT count(*) FROM coupon.settlement_item")

# -------------------------------------------------------- answers checked

log "checking the batches and items"
IFS='|' read -r sales refunds adjustments dup < <(q "
	SELECT count(*) FILTER (WHERE kind = 'sale'), count(*) FILTER (WHERE kind = 'refund'),
		   count(*) FILTER (WHERE kind = 'adjustment'),
		   count(*) - count(DISTINCT (payment_id, coalesce(refund_id, 0)))
	  FROM coupon.settlement_item")
info "run: $run_batches batches, $run_items items: $sales sales, $refunds refunds, $adjustments adjustments; expected $n_pay sales and $n_ref refunds ($([ "$sales" = "$n_pay" ] && [ "$((refunds + adjustments))" = "$n_ref" ] && [ "$dup" = 0 ] && echo consistent || echo INCONSISTENT)); items settled twice: $dup"
info "re-run: $rerun_batches batches, $((rerun_items - run_items)) items added ($([ "$rerun_batches" = 0 ] && [ "$rerun_items" = "$run_items" ] && echo consistent || echo INCONSISTENT))"
IFS='|' read -r b_payout i_payout b_pay payable carried < <(q "
	SELECT (SELECT sum(items_payout) FROM coupon.settlement), (SELECT sum(payout) FROM coupon.settlement_item),
		   (SELECT sum(payout) FROM coupon.settlement),
		   (SELECT count(*) FROM coupon.settlement WHERE status = 'payable'),
		   (SELECT count(*) FROM coupon.settlement WHERE status = 'carried_forward')")
info "batches: sum of items_payout $b_payout, sum of the items' payout $i_payout ($([ "$b_payout" = "$i_payout" ] && echo equal || echo DIFFERENT)); paid out $b_pay; $payable payable, $carried carried forward"
IFS='|' read -r sale_diff part_diff < <(q "
	SELECT (SELECT count(*) FROM coupon.settlement_item s JOIN settle_bench.item_floor f
			   ON f.payment_id = s.payment_id AND f.refund_id IS NULL
			WHERE s.refund_id IS NULL
			  AND (s.gross, s.discount_merchant, s.discount_platform, s.commission, s.pg_fee, s.payout, s.policy_id)
				  IS DISTINCT FROM (f.gross, f.discount_merchant, f.discount_platform, f.commission, f.pg_fee, f.payout, f.policy_id)),
		   (SELECT count(*) FROM coupon.settlement_item s JOIN settle_bench.item_floor f
			   ON f.payment_id = s.payment_id AND f.refund_id = s.refund_id
			   JOIN coupon.payment_refund r ON r.id = s.refund_id
			WHERE NOT r.full_refund
			  AND (s.gross, s.discount_merchant, s.discount_platform, s.commission, s.pg_fee, s.payout)
				  IS DISTINCT FROM (f.gross, f.discount_merchant, f.discount_platform, f.commission, f.pg_fee, f.payout))")
info "items against the floor's (same formulas, one coupon per payment): sales differing $sale_diff of $n_pay, partial refunds differing $part_diff of $n_ref_partial (expected 0 and 0)"
IFS='|' read -r full_pay not_zero < <(q "
	SELECT count(*), count(*) FILTER (WHERE (g, dm, dp, cm, fee, po) <> (0, 0, 0, 0, 0, 0))
	  FROM (SELECT i.payment_id, sum(i.gross) g, sum(i.discount_merchant) dm, sum(i.discount_platform) dp,
				   sum(i.commission) cm, sum(i.pg_fee) fee, sum(i.payout) po
			  FROM coupon.settlement_item i JOIN coupon.payment p ON p.id = i.payment_id
			 WHERE p.state = 'refunded' GROUP BY 1) s")
info "refunded payments whose sale and refund items net to zero on every figure: $((full_pay - not_zero)) of $full_pay"

if [ "$EXPLAIN" = 1 ]; then
	log "explain: settlement tables emptied, run_settlement(now()) again under auto_explain"
	# the append-only triggers refuse TRUNCATE; replica mode skips them
	pg -d settle -c "SET session_replication_role = replica; TRUNCATE coupon.settlement_item, coupon.settlement" >/dev/null
	q "VACUUM ANALYZE coupon.settlement_item, coupon.settlement" >/dev/null
	q "CHECKPOINT" >/dev/null
	pg -d settle -At >"$WORK/explain.txt" 2>&1 <<'EOF' || true
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 50;
SET auto_explain.log_analyze = on;
SET auto_explain.log_buffers = on;
SET auto_explain.log_timing = on;
SET auto_explain.log_nested_statements = on;
SET auto_explain.log_level = notice;
\timing on
SELECT count(*) FROM coupon.run_settlement(now());
EOF
fi

# ----------------------------------------------------------------- report

rate() {
	awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0 && n > 0) printf "%.0f", n / s; else printf "-" }'
}
mb() {
	awk -v b="$1" 'BEGIN { printf "%.0f", b / 1048576 }'
}
met=$(awk -v s="$run_s" -v t="$TARGET_S" 'BEGIN { print (s <= t ? "met" : "NOT met") }')

echo
echo "coupon settlement benchmark: $n_pay completed payments, $n_ref refunds, $NMER merchants"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $(q "SELECT version()")"
echo "build: commit $(git -C "$COUPON_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$COUPON_ROOT" diff --quiet HEAD -- src/sql 2>/dev/null || echo ', install scripts modified')"
echo "run took $((SECONDS - START))s (load, runs and checks; build excluded)"
echo "settings: fsync $(q "SHOW fsync"), synchronous_commit $(q "SHOW synchronous_commit"), shared_buffers $(q "SHOW shared_buffers"), work_mem $(q "SHOW work_mem"), checkpoint before each timed statement"
echo
printf '%-46s %10s %9s %10s %8s  %s\n' "statement" "rows" "seconds" "rows/s" "WAL MB" "target"
printf '%-46s %10s %9s %10s %8s  %s\n' "floor: plain INSERT ... SELECT (baseline)" "$floor_n" "$floor_s" "$(rate "$floor_n" "$floor_s")" "$(mb "$floor_wal")" ""
printf '%-46s %10s %9s %10s %8s  %s\n' "  ... the same rows, writes only" "$write_n" "$write_s" "$(rate "$write_n" "$write_s")" "$(mb "$write_wal")" ""
printf '%-46s %10s %9s %10s %8s  %s\n' "run_settlement(now())" "$run_items" "$run_s" "$(rate "$run_items" "$run_s")" "$(mb "$run_wal")" \
	"<= ${TARGET_S} s: $met ($(awk -v a="$run_s" -v b="$floor_s" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }') the floor's time)"
printf '%-46s %10s %9s %10s %8s  %s\n' "run_settlement(now()) again, nothing new" "$((rerun_items - run_items))" "$rerun_s" "-" "$(mb "$rerun_wal")" ""
echo
echo "(rows: items written; the run also wrote $run_batches batches)"
echo
sed 's/^/info: /' "$INFO"
if [ "$EXPLAIN" = 1 ]; then
	echo
	echo "plans of the statements inside run_settlement (auto_explain, on the emptied settlement tables):"
	sed -e 's/^NOTICE:  //' "$WORK/explain.txt"
fi
