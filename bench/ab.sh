#!/usr/bin/env bash
# bench/ab.sh: first-come-first-served issuance under two builds of the
# module, in one cluster and one run.  Run as root from the repo root:
#
#     BENCH_AB_BEFORE=<git ref> bash bench/ab.sh
#
# Builds the module of <git ref> (same schema version as the working tree:
# only the C changes between the two) and of the working tree, starts one
# private cluster with the durable settings of bench/run.sh, and in every
# round, for each build in turn (the order alternating between rounds):
# installs its coupon.so, restarts the
# cluster, and measures SELECT 1, the one-counter-row fcfs baseline and
# coupon.issue on a big (1e8) and a selling-out fcfs policy at each client
# count.  Every workload is compared with the baselines measured under the
# same build, and the working tree's with <git ref>'s.  The working tree's
# module is installed again at the end.  Figures only; see bench/README.md.
#
# Settings (environment), besides those of bench/run.sh it shares
# (BENCH_SECONDS, BENCH_JOBS, BENCH_SMALL_STOCK, BENCH_KEEP, BENCH_PORT):
#   BENCH_AB_BEFORE  the git ref to compare with (required)
#   BENCH_CLIENTS    client counts ("32 64")
#   BENCH_ROUNDS     rounds, each running both builds (2)
#   BENCH_RELAY=1    the relay worker serves the bench database (bench/lib.bash)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

BEFORE=${BENCH_AB_BEFORE:?set BENCH_AB_BEFORE to the git ref to compare with}
BENCH=$COUPON_ROOT/bench
SECS=${BENCH_SECONDS:-10}
CLIENT_COUNTS=${BENCH_CLIENTS:-"32 64"}
ROUNDS=${BENCH_ROUNDS:-2}
JOBS=${BENCH_JOBS:-2}
SMALL_STOCK=${BENCH_SMALL_STOCK:-20000}

prepare_run bench-ab
PORT=${BENCH_PORT:-$(free_port)}
RESULTS=$WORK/results.tsv
INFO=$WORK/info.txt
mkdir -p "$WORK/logs" "$WORK/before" "$WORK/lib"
: >"$RESULTS"
: >"$INFO"
LIBDIR=$(pg_config --pkglibdir)

# put a build's module in place under a new inode: copying over the file
# the running server has mapped would change its code under it
install_so() {
	cp "$1" "$LIBDIR/coupon.so.new"
	mv -f "$LIBDIR/coupon.so.new" "$LIBDIR/coupon.so"
}

cleanup() {
	cluster_stop "$WORK"
	# leave the working tree's module installed, whatever happened
	[ -f "$WORK/lib/after.so" ] && install_so "$WORK/lib/after.so"
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "building the module of $BEFORE"
git -C "$COUPON_ROOT" archive "$BEFORE" | tar -x -C "$WORK/before"
make -s -C "$WORK/before" coupon.so >/dev/null
cp "$WORK/before/coupon.so" "$WORK/lib/before.so"
cp "$COUPON_ROOT/coupon.so" "$WORK/lib/after.so"
BEFORE_SHA=$(git -C "$COUPON_ROOT" rev-parse --short "$BEFORE")
AFTER_SHA="$(git -C "$COUPON_ROOT" rev-parse --short HEAD)$(git -C "$COUPON_ROOT" diff --quiet HEAD -- src || echo +changes)"

log "starting a private cluster in $WORK (port $PORT)"
cluster_start "$WORK" "$PORT" <<EOF
$BENCH_DURABLE_CONF
$(bench_relay_conf)
EOF
START=$SECONDS

# install build $1 (before or after) and restart, so every backend loads it
use_build() {
	install_so "$WORK/lib/$1.so"
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 60 \
		restart >/dev/null
}

log "setup: extension and baselines (database bench)"
pg -d postgres -c "CREATE DATABASE bench"
pg -d bench -c "CREATE EXTENSION coupon"
pg -d bench <"$BENCH/sql/baseline.sql"
MID=$(q bench "SELECT id FROM coupon.create_merchant('bench shop')")
q bench "INSERT INTO bench.bench_policy (id, total) VALUES (1, 100000000)" >/dev/null

# a new fcfs policy of stock $2 named $1; prints its id
fcfs_policy() {
	q bench "SELECT id FROM coupon.create_policy($MID, '$1', 'fixed', 1000,
		issue_method => 'fcfs', total_quantity => $2, per_user_limit => NULL)"
}

# "issued left" of policy $1: its coupons and its stock left
issued_left() {
	q bench "SELECT (SELECT count(*) FROM coupon.coupon WHERE policy_id = $1),
		(SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $1)" | tr '|' ' '
}

# odd rounds run before then after, even rounds after then before, so
# neither build always meets the fuller cluster of the later runs
for ROUND in $(seq 1 "$ROUNDS"); do
	order="before after"
	[ $((ROUND % 2)) = 0 ] && order="after before"
	for build in $order; do
		use_build $build
		for c in $CLIENT_COUNTS; do
			run_pgbench "select1@$build" "SELECT 1 ($build)" "$c" bench -n -f "$BENCH/pgbench/select1.sql"
			run_pgbench "issue_counter@$build" "counter fcfs ($build)" "$c" bench -n \
				-f "$BENCH/pgbench/issue_counter.sql" -D pid=1

			pid=$(fcfs_policy "ab big $build c$c r$ROUND" 100000000)
			run_pgbench "issue_fcfs@$build" "coupon.issue fcfs, stock 1e8 ($build)" "$c" bench -n \
				-f "$BENCH/pgbench/issue_fcfs.sql" -D pid="$pid"
			read -r n left < <(issued_left "$pid")
			info "$build, stock 1e8 at $c clients: issued $n for $LAST_XACTS transactions, issued + left = $((n + left)) of 100000000 ($([ $((n + left)) = 100000000 ] && [ "$n" = "$LAST_XACTS" ] && echo consistent || echo INCONSISTENT))"

			pid=$(fcfs_policy "ab small $build c$c r$ROUND" "$SMALL_STOCK")
			run_pgbench "issue_small@$build" "coupon.issue fcfs, stock $SMALL_STOCK ($build)" "$c" bench -n \
				-f "$BENCH/pgbench/issue_small.sql" -D pid="$pid"
			read -r n left < <(issued_left "$pid")
			info "$build, stock $SMALL_STOCK at $c clients: issued $n, stock left $left, over-issue $((n > SMALL_STOCK ? n - SMALL_STOCK : 0)) ($([ $((n + left)) = "$SMALL_STOCK" ] && echo consistent || echo INCONSISTENT))"
		done
	done
done

info "before = $BEFORE ($BEFORE_SHA), after = the working tree ($AFTER_SHA); odd rounds ran before then after, even rounds after then before, with a restart between builds"
print_report "coupon fcfs A/B" "$CLIENT_COUNTS"
