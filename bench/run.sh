#!/usr/bin/env bash
# bench/run.sh: the coupon benchmark.  Run as root from the repo root:
#
#     bash bench/run.sh                 # BENCH_SECONDS=10 per run, about 4-5 minutes
#     BENCH_SECONDS=3 bash bench/run.sh # a quick check that everything works
#
# Builds and installs the extension, starts a private cluster with durable
# settings (fsync and synchronous_commit on), measures the baselines and the
# extension's workloads with pgbench at 8 and 32 clients, and prints one table
# (tps, p50/p95/p99 latency, WAL per transaction, ratio to the relevant
# baseline), then correctness checks as information lines.  It prints
# figures and never judges a time: the exit status only says whether the runs
# themselves worked.  See bench/README.md.
#
# Settings (environment):
#   BENCH_SECONDS   seconds per pgbench run (10)
#   BENCH_CLIENTS   client counts ("8 32")
#   BENCH_ROUNDS    rounds of every run (1); with more, the table shows the
#                   median of the rounds and each ratio is the median of the
#                   ratios measured within one round
#   BENCH_JOBS      pgbench threads (2)
#   BENCH_SCALE     pgbench -i scale of the simple-update baseline (10)
#   BENCH_USERS     distinct user ids of the pre-issued pools (20000)
#   BENCH_VALIDATE_COUPONS  coupons pre-issued for validate (100000)
#   BENCH_SMALL_STOCK       total_quantity of the sell-out policy (20000)
#   BENCH_PAIR_RATE  reserve+confirm pool per run = BENCH_SECONDS * this (12000)
#   BENCH_STATEMENTS=1  also load pg_stat_statements and print the top statements
#   BENCH_RELAY=1    the relay worker serves the bench database (bench/lib.bash)
#   BENCH_KEEP=1     keep the work directory (logs) instead of removing it
#   BENCH_SAVE=DIR   keep the report and its summary table in DIR (for
#                    bench/plot.sh, which draws them with gnuplot)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

BENCH=$COUPON_ROOT/bench
SECS=${BENCH_SECONDS:-10}
CLIENT_COUNTS=${BENCH_CLIENTS:-"8 32"}
ROUNDS=${BENCH_ROUNDS:-1}
JOBS=${BENCH_JOBS:-2}
SCALE=${BENCH_SCALE:-10}
NUSERS=${BENCH_USERS:-20000}
VALIDATE_COUPONS=${BENCH_VALIDATE_COUPONS:-100000}
SMALL_STOCK=${BENCH_SMALL_STOCK:-20000}
PAIR_RATE=${BENCH_PAIR_RATE:-12000}
STATEMENTS=${BENCH_STATEMENTS:-0}

prepare_run bench
PORT=${BENCH_PORT:-$(free_port)}
RESULTS=$WORK/results.tsv
INFO=$WORK/info.txt
mkdir -p "$WORK/logs"
: >"$RESULTS"
: >"$INFO"

cleanup() {
	cluster_stop "$WORK"
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

preload="coupon,pg_cron"
statements_conf=""
if [ "$STATEMENTS" = 1 ]; then
	preload="coupon,pg_cron,pg_stat_statements"
	statements_conf="pg_stat_statements.track = all"
fi
log "starting a private cluster in $WORK (port $PORT)"
cluster_start "$WORK" "$PORT" <<EOF
$BENCH_DURABLE_CONF
shared_preload_libraries = '$preload'
$(bench_relay_conf)
$statements_conf
EOF

START=$SECONDS

# ------------------------------------------------------------------ setup

log "setup: pgbench -i -s $SCALE (database pgb)"
pg -d postgres -c "CREATE DATABASE pgb" -c "CREATE DATABASE bench"
PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
	"$PGBIN/pgbench" -i -q -s "$SCALE" pgb >"$WORK/logs/pgbench-init.out" 2>&1

log "setup: extension, baselines and the validate pool (database bench)"
pg -d bench -c "CREATE EXTENSION coupon"
if [ "$STATEMENTS" = 1 ]; then
	pg -d bench -c "CREATE EXTENSION pg_stat_statements"
fi
pg -d bench <"$BENCH/sql/baseline.sql"
MID=$(q bench "SELECT id FROM coupon.create_merchant('bench shop')")
OTHER_MID=$(q bench "SELECT id FROM coupon.create_merchant('other shop')")
VPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'bench validate 10%', 'percent', 1000,
	max_discount => 5000, min_order_amount => 1000, valid_days => 30, per_user_limit => NULL)")
VMIN=$(q bench "SELECT bench.issue_pool($VPID, $VALIDATE_COUPONS, $NUSERS)")
q bench "INSERT INTO bench.bench_policy (id, total) VALUES (1, 100000000)" >/dev/null
q bench "VACUUM ANALYZE" >/dev/null

# ------------------------------------------------------------------- runs

for ROUND in $(seq 1 "$ROUNDS"); do
	for c in $CLIENT_COUNTS; do
		run_pgbench select1 "SELECT 1" "$c" bench -n -f "$BENCH/pgbench/select1.sql"
		run_pgbench validate_sql "sql validate (baseline)" "$c" bench -n -f "$BENCH/pgbench/validate_sql.sql" \
			-D cmin="$VMIN" -D ncoupons="$VALIDATE_COUPONS" -D nusers="$NUSERS" -D mid="$MID"
		run_pgbench validate "coupon.validate" "$c" bench -n -f "$BENCH/pgbench/validate.sql" \
			-D cmin="$VMIN" -D ncoupons="$VALIDATE_COUPONS" -D nusers="$NUSERS" -D mid="$MID"

		issued0=$(q bench "SELECT issued FROM bench.bench_policy WHERE id = 1")
		run_pgbench issue_counter "counter fcfs (baseline)" "$c" bench -n -f "$BENCH/pgbench/issue_counter.sql" -D pid=1
		read -r issued1 rows1 < <(q bench "SELECT p.issued, (SELECT count(*) FROM bench.bench_coupon)
			FROM bench.bench_policy p WHERE p.id = 1" | tr '|' ' ')
		info "counter fcfs at $c clients: $((issued1 - issued0)) issued for $LAST_XACTS transactions; counter $issued1, rows $rows1 ($([ "$issued1" = "$rows1" ] && echo consistent || echo INCONSISTENT))"

		FPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'bench fcfs big c$c r$ROUND', 'fixed', 1000,
			issue_method => 'fcfs', total_quantity => 100000000, per_user_limit => NULL)")
		stock0=$(upd_stats coupon.policy_stock)
		run_pgbench issue_fcfs "coupon.issue fcfs, stock 1e8" "$c" bench -n -f "$BENCH/pgbench/issue_fcfs.sql" -D pid="$FPID"
		hot_info "fcfs stock 1e8 at $c clients" coupon.policy_stock "$stock0"
		read -r n left < <(q bench "SELECT (SELECT count(*) FROM coupon.coupon WHERE policy_id = $FPID),
			(SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $FPID)" | tr '|' ' ')
		info "fcfs stock 1e8 at $c clients: issued $n for $LAST_XACTS transactions, stock left $left, issued + left = $((n + left)) of 100000000 ($([ $((n + left)) = 100000000 ] && [ "$n" = "$LAST_XACTS" ] && echo consistent || echo INCONSISTENT))"

		SPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'bench fcfs small c$c r$ROUND', 'fixed', 1000,
			issue_method => 'fcfs', total_quantity => $SMALL_STOCK, per_user_limit => NULL)")
		run_pgbench issue_small "coupon.issue fcfs, stock $SMALL_STOCK" "$c" bench -n -f "$BENCH/pgbench/issue_small.sql" -D pid="$SPID"
		read -r n left neg t_first t_last < <(q bench "SELECT count(*),
				(SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $SPID),
				(SELECT count(*) FROM coupon.policy_stock WHERE policy_id = $SPID AND remaining < 0),
				coalesce(extract(epoch FROM min(issued_at)), 0), coalesce(extract(epoch FROM max(issued_at)), 0)
			FROM coupon.coupon WHERE policy_id = $SPID" | tr '|' ' ')
		over=$((n > SMALL_STOCK ? n - SMALL_STOCK : 0))
		refused=$((LAST_XACTS - n))
		if [ "$n" = "$SMALL_STOCK" ]; then
			sellout=$(awk -v a="$t_first" -v b="$t_last" 'BEGIN { printf "%.2f", b - a }')
			info "fcfs stock $SMALL_STOCK at $c clients: issued $n of $SMALL_STOCK, over-issue $over, stock left $left, negative shards $neg; sold out ${sellout}s after the first issue; sold_out answers $refused of $LAST_XACTS ($(awk -v r=$refused -v x="$LAST_XACTS" 'BEGIN { printf "%.1f", (x > 0 ? 100 * r / x : 0) }')%)"
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' issue_small_soldout "  ... sold-out phase only" "$c" - \
				"$WORK/logs/issue_small-c$c-r$ROUND" "$LAST_STATUS" - "$refused" "$t_last" "$ROUND" >>"$RESULTS"
		else
			info "fcfs stock $SMALL_STOCK at $c clients: issued $n of $SMALL_STOCK, over-issue $over, stock left $left: did NOT sell out within ${SECS}s (no sold-out phase to report)"
		fi

		pool=$(((SECS * PAIR_RATE + c - 1) / c * c))
		slice=$((pool / c))
		RPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'bench checkout c$c r$ROUND', 'fixed', 1000,
			per_user_limit => NULL)")
		log "setup: pre-issuing $pool coupons for reserve+confirm at $c clients"
		RMIN=$(q bench "SELECT bench.issue_pool($RPID, $pool, $NUSERS)")
		q bench "VACUUM ANALYZE coupon.coupon" >/dev/null
		# the pair's baseline right before it, so both meet the machine in one phase
		run_pgbench simple_update "simple-update (built-in)" "$c" pgb -b simple-update
		coupon0=$(upd_stats coupon.coupon)
		resv0=$(upd_stats coupon.reservation)
		run_pgbench reserve_confirm "reserve+confirm pair" "$c" bench -n -f "$BENCH/pgbench/reserve_confirm.sql" \
			-D cmin="$RMIN" -D slice="$slice" -D nusers="$NUSERS" -D mid="$MID" -D k=0
		hot_info "reserve+confirm at $c clients" coupon.coupon "$coupon0"
		hot_info "reserve+confirm at $c clients" coupon.reservation "$resv0"
		read -r used held confirmed maxk < <(q bench "SELECT
				count(*) FILTER (WHERE c.status = 'used'),
				(SELECT count(*) FROM coupon.reservation r JOIN coupon.coupon c2 ON c2.id = r.coupon_id
				  WHERE c2.policy_id = $RPID AND r.status = 'held'),
				(SELECT count(*) FROM coupon.reservation r JOIN coupon.coupon c2 ON c2.id = r.coupon_id
				  WHERE c2.policy_id = $RPID AND r.status = 'confirmed'),
				coalesce(max((c.id - $RMIN) % $slice) FILTER (WHERE c.status = 'used') + 1, 0)
			FROM coupon.coupon c WHERE c.policy_id = $RPID" | tr '|' ' ')
		info "reserve+confirm at $c clients: $LAST_XACTS pairs, coupons used $used, reservations confirmed $confirmed, still held $held ($([ "$used" = "$LAST_XACTS" ] && [ "$confirmed" = "$LAST_XACTS" ] && [ "$held" = 0 ] && echo consistent || echo INCONSISTENT)); busiest client used $maxk of its $slice-coupon slice"
	done
done

# -------------------------------------------------------- answers checked

ROUND=""	# once, after every round

log "checking coupon.validate against the plain SQL baseline"
# a few holds so that coupon_reserved shows up too
q bench "SELECT count(*) FROM (SELECT coupon.reserve(id, user_id, $MID, 'check-' || id, 50000)
	FROM coupon.coupon WHERE policy_id = $VPID ORDER BY id LIMIT 50) s" >/dev/null
# a suspended merchant: coupons it issued, and coupons spendable there
SUSP=$(q bench "SELECT id FROM coupon.create_merchant('suspended shop')")
SPOL1=$(q bench "SELECT id FROM coupon.create_policy($SUSP, 'issued by a suspended shop', 'fixed', 500,
	per_user_limit => NULL, allowed_merchants => ARRAY[$SUSP, $MID]::bigint[])")
SPOL2=$(q bench "SELECT id FROM coupon.create_policy($MID, 'spendable at a suspended shop', 'fixed', 500,
	per_user_limit => NULL, allowed_merchants => ARRAY[$SUSP, $MID]::bigint[])")
q bench "SELECT count(*) FROM (SELECT coupon.issue(p, 'u' || g) FROM generate_series(1, 30) g,
	unnest(ARRAY[$SPOL1, $SPOL2]::bigint[]) p) s" >/dev/null
q bench "UPDATE coupon.merchant SET status = 'suspended' WHERE id = $SUSP" >/dev/null
read -r checked mismatched answers < <(q bench "
	WITH cases AS (
		SELECT c.id,
			   CASE WHEN c.id % 5 = 0 THEN 'someone-else' ELSE c.user_id END AS uid,
			   CASE WHEN c.policy_id = $SPOL2 THEN $SUSP WHEN c.id % 13 = 0 THEN -7
					WHEN c.id % 3 = 0 THEN $OTHER_MID ELSE $MID END AS mid,
			   CASE WHEN c.id % 4 = 0 THEN 500 ELSE 10000 + c.id % 90000 END AS amount
		  FROM coupon.coupon c
		 WHERE c.id % 11 = 0 OR c.id < $VMIN + 50 OR c.policy_id IN ($SPOL1, $SPOL2)
		UNION ALL SELECT -1, 'nobody', $MID, 1000),
	 answers AS (
		SELECT v.ok AS ok1, v.discount AS d1, v.reason AS r1, s.ok AS ok2, s.discount AS d2, s.reason AS r2
		  FROM cases, coupon.validate(cases.id, cases.uid, cases.mid, cases.amount) v,
			   bench.validate_sql(cases.id, cases.uid, cases.mid, cases.amount) s)
	SELECT count(*),
		   count(*) FILTER (WHERE (ok1, d1, r1) IS DISTINCT FROM (ok2, d2, r2)),
		   (SELECT string_agg(r1 || ':' || n, ',' ORDER BY r1)
			  FROM (SELECT r1, count(*) AS n FROM answers GROUP BY r1) g)
	  FROM answers" | tr '|' ' ')
info "validate vs sql validate: $checked cases, $mismatched different answers ($answers)"

if [ "$STATEMENTS" = 1 ]; then
	info "top statements by total time (pg_stat_statements, database bench):"
	while IFS= read -r l; do info "    $l"; done < <(q bench "
		SELECT to_char(total_exec_time, 'FM999999990') || ' ms  ' || calls || ' calls  '
			   || to_char(mean_exec_time * 1000, 'FM999999990.0') || ' us/call  '
			   || left(regexp_replace(query, '\s+', ' ', 'g'), 110)
		  FROM pg_stat_statements JOIN pg_database d ON d.oid = dbid
		 WHERE d.datname = 'bench' ORDER BY total_exec_time DESC LIMIT 15")
fi

# ----------------------------------------------------------------- report

print_report "coupon benchmark" "$CLIENT_COUNTS" | tee "$WORK/report.txt"
save_report "$WORK/report.txt"
