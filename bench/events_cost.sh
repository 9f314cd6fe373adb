#!/usr/bin/env bash
# bench/events_cost.sh: what writing the outbox costs the hot paths, in
# instructions (valgrind's callgrind), outbox on and off.  Run as root from
# the repo root:
#
#     bash bench/events_cost.sh          # about 5 minutes
#
# Throughput ratios on two CPUs at 32 clients move by tens of percent from
# run to run (bench/events.sh prints them); instruction counts do not: the
# same binary, data and statements give the same count whatever else the
# machine does.  So the cost of the outbox is measured here as instructions
# per operation, each operation its own transaction as in production:
#
#   issue   coupon.issue on an fcfs policy with a big stock
#   pair    coupon.reserve then coupon.confirm of one pre-issued coupon
#
# each sent twice: as a plain statement, parsed, analysed and planned every
# time (a client on the simple protocol), and as the EXECUTE of a statement
# the session prepared (as pgbench -M prepared, PostgREST and most drivers
# run it), whose path is shorter by the parse and the plan, so the outbox's
# share of it is larger.
#
# One private cluster prepares the data, with the outbox's triggers enabled
# in one copy of its data directory and disabled in another; then each copy
# runs, in single-user mode under callgrind, a session that only starts,
# and sessions of BENCH_OPS operations (one transaction each).  Per
# operation: (the session's instructions - the empty session's) / ops.
# Figures only; see bench/README.md.
#
# Settings (environment):
#   BENCH_OPS   operations per session (2000)
#   BENCH_OUTBOX_ROWS  published events the outbox holds before the
#               sessions, as a relay that keeps up leaves it within the
#               retention (0: only the preparation's own)
#   BENCH_KEEP=1  keep the work directory
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

OPS=${BENCH_OPS:-2000}
OUTBOX_ROWS=${BENCH_OUTBOX_ROWS:-0}
prepare_run bench-events-cost
PORT=${BENCH_PORT:-$(free_port)}
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 2; }

cleanup() {
	cluster_stop "$WORK"
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "preparing the data in a private cluster ($WORK)"
cluster_start "$WORK" "$PORT" <<'EOF'
fsync = off
coupon.relay = off
coupon.workers = 0
EOF
pg -d postgres -c "CREATE DATABASE bench"
pg -d bench -c "CREATE EXTENSION coupon" >/dev/null
pg -d bench >/dev/null <<SQL
SELECT coupon.create_merchant('cost shop');
SELECT coupon.create_policy(1, 'fcfs', 'fixed', 1000, issue_method => 'fcfs',
	total_quantity => 100000000, per_user_limit => NULL);
SELECT coupon.create_policy(1, 'checkout', 'fixed', 1000, per_user_limit => NULL);
SELECT count(coupon.issue(2, 'pool' || g)) FROM generate_series(1, 2 * $OPS) g;
INSERT INTO coupon.outbox (xid, occurred_at, event_type, aggregate, aggregate_id, merchant_id, user_id,
						   actor, payload)
SELECT pg_current_xact_id(), now(), 'coupon.issued', 'coupon', 1000000000 + g, 1, 'old' || g, 'postgres',
	   '{"policy_id": 2, "status": "issued", "balance": null}'
  FROM generate_series(1, $OUTBOX_ROWS) g;
SELECT coupon.relay_skip();
VACUUM ANALYZE;
SQL
FIRST=$(pg -d bench -At -c "SELECT min(id) FROM coupon.coupon WHERE policy_id = 2")
BEFORE=$(pg -d bench -At -c "SELECT count(*) FROM coupon.outbox")
cluster_stop "$WORK"

runuser -u postgres -- cp -a "$WORK/data" "$WORK/data_off"
runuser -u postgres -- "$PGBIN/postgres" --single -D "$WORK/data_off" bench >/dev/null 2>&1 <<'SQL'
ALTER TABLE coupon.coupon DISABLE TRIGGER coupon_outbox
ALTER TABLE coupon.reservation DISABLE TRIGGER reservation_outbox
SQL
mv "$WORK/data" "$WORK/data_on"

# one statement per line: in single-user mode each is a transaction
echo "SELECT 1" >"$WORK/empty.sql"
awk -v n="$OPS" 'BEGIN { for (i = 1; i <= n; i++) printf "SELECT (coupon.issue(1, %cu%d%c)).status\n", 39, i, 39 }' >"$WORK/issue.sql"
awk -v n="$OPS" -v first="$FIRST" 'BEGIN { for (i = 0; i < n; i++)
	printf "SELECT (coupon.confirm((coupon.reserve(%d, %cpool%d%c, 1, %co%d%c, 5000)).id)).status\n",
		first + i, 39, i + 1, 39, 39, first + i, 39 }' >"$WORK/pair.sql"
{
	echo "PREPARE op(text) AS SELECT (coupon.issue(1, \$1)).status"
	awk -v n="$OPS" 'BEGIN { for (i = 1; i <= n; i++) printf "EXECUTE op(%cp%d%c)\n", 39, i, 39 }'
} >"$WORK/issue_prepared.sql"
{
	echo "PREPARE op(bigint, text, text) AS SELECT (coupon.confirm((coupon.reserve(\$1, \$2, 1, \$3, 5000)).id)).status"
	awk -v n="$OPS" -v first="$FIRST" 'BEGIN { for (i = n; i < 2 * n; i++)
		printf "EXECUTE op(%d, %cpool%d%c, %co%d%c)\n", first + i, 39, i + 1, 39, 39, first + i, 39 }'
} >"$WORK/pair_prepared.sql"
chown postgres:postgres "$WORK"/*.sql

# instructions of one single-user session of FILE on DATA
instructions() {
	(cd "$WORK" && runuser -u postgres -- valgrind --tool=callgrind --callgrind-out-file="${CALLGRIND_OUT:-/dev/null}" \
		"$PGBIN/postgres" --single -D "$WORK/$1" bench <"$WORK/$2" 2>&1 >/dev/null |
		sed -n 's/.*I *refs: *\([0-9,]*\).*/\1/p' | tr -d ,)
}

declare -A COST
for data in data_on data_off; do
	log "callgrind: $data"
	base=$(instructions "$data" empty.sql)
	for op in issue pair issue_prepared pair_prepared; do
		COST[$data.$op]=$((($(instructions "$data" "$op.sql") - base) / OPS))
	done
done
# every session above committed its operations: check they ran
check_on=$(runuser -u postgres -- "$PGBIN/postgres" --single -D "$WORK/data_on" bench 2>/dev/null <<'SQL' | sed -n 's/.*= "\([0-9]*\)".*/\1/p' | head -1
SELECT count(*) FROM coupon.outbox WHERE event_type IN ('coupon.used')
SQL
)

echo
echo "events cost: instructions per operation (callgrind), each operation one transaction, $OPS per session"
echo "outbox before the sessions: $BEFORE events, published (BENCH_OUTBOX_ROWS=$OUTBOX_ROWS)"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1); server: $("$PGBIN/postgres" --version)"
printf '   %-18s %12s %12s %8s\n' operation "outbox on" "outbox off" "on/off"
for op in issue pair issue_prepared pair_prepared; do
	on=${COST[data_on.$op]}
	off=${COST[data_off.$op]}
	printf '   %-18s %12s %12s %8s\n' "$op" "$on" "$off" "$(awk -v a="$on" -v b="$off" 'BEGIN { printf "%.3f", a / b }')"
done
echo "   (coupon.used events written by the pairs: ${check_on:-?} of $((2 * OPS)))"
