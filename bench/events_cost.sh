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
# in one copy of its data directory and disabled in another.  Then each
# copy runs as a server under callgrind (every process of it), with its
# relay worker serving the database in NOTIFY mode, as in production: so a
# checkout's events take the queue (docs/events.md, "The queue") and the
# relay moves them into the outbox, in its own process, whose
# instructions are not counted.  Each operation file runs in a psql
# session of its own, and so does one that only starts; per operation:
# (the session's backend's instructions - the empty session's) / ops.
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
	for data in data_on data_off; do
		[ -f "$WORK/$data/postmaster.pid" ] &&
			runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/$data" -m immediate -w stop >/dev/null 2>&1
	done
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

# each session first names its backend, whose callgrind file is read
echo "SELECT 'backend ' || pg_backend_pid();" >"$WORK/empty.sql"
{
	echo "SELECT 'backend ' || pg_backend_pid();"
	awk -v n="$OPS" 'BEGIN { for (i = 1; i <= n; i++) printf "SELECT (coupon.issue(1, %cu%d%c)).status;\n", 39, i, 39 }'
} >"$WORK/issue.sql"
{
	echo "SELECT 'backend ' || pg_backend_pid();"
	awk -v n="$OPS" -v first="$FIRST" 'BEGIN { for (i = 0; i < n; i++)
		printf "SELECT (coupon.confirm((coupon.reserve(%d, %cpool%d%c, 1, %co%d%c, 5000)).id)).status;\n",
			first + i, 39, i + 1, 39, 39, first + i, 39 }'
} >"$WORK/pair.sql"
{
	echo "SELECT 'backend ' || pg_backend_pid();"
	echo "PREPARE op(text) AS SELECT (coupon.issue(1, \$1)).status;"
	awk -v n="$OPS" 'BEGIN { for (i = 1; i <= n; i++) printf "EXECUTE op(%cp%d%c);\n", 39, i, 39 }'
} >"$WORK/issue_prepared.sql"
{
	echo "SELECT 'backend ' || pg_backend_pid();"
	echo "PREPARE op(bigint, text, text) AS SELECT (coupon.confirm((coupon.reserve(\$1, \$2, 1, \$3, 5000)).id)).status;"
	awk -v n="$OPS" -v first="$FIRST" 'BEGIN { for (i = n; i < 2 * n; i++)
		printf "EXECUTE op(%d, %cpool%d%c, %co%d%c);\n", first + i, 39, i + 1, 39, 39, first + i, 39 }'
} >"$WORK/pair_prepared.sql"
chown postgres:postgres "$WORK"/*.sql
mkdir -p "$WORK/cg" && chown postgres:postgres "$WORK/cg"

# the server of DATA under callgrind, its relay serving the database
server_start() {
	(cd "$WORK" && runuser -u postgres -- valgrind --tool=callgrind --trace-children=yes \
		--callgrind-out-file="$WORK/cg/%p.out" "$PGBIN/postgres" -D "$WORK/$1" \
		-c coupon.relay=on -c coupon.database=bench -c autovacuum=off >>"$WORK/server.log" 2>&1) &
	SERVER=$!
	for _ in $(seq 1 600); do
		runuser -u postgres -- "$PGBIN/pg_isready" -q -h "$PGHOST" -p "$PGPORT" && return 0
		sleep 0.5
	done
	echo "the server under callgrind did not start" >&2
	return 1
}
server_stop() {
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/$1" -m fast -w -t 600 stop >/dev/null
	wait "$SERVER" 2>/dev/null || true
}

# instructions of the backend of one psql session of FILE
instructions() {
	local pid
	pid=$(pg -d bench -At -f "$WORK/$1" | sed -n 's/^backend //p')
	for _ in $(seq 1 600); do
		[ -s "$WORK/cg/$pid.out" ] && grep -q '^totals:' "$WORK/cg/$pid.out" && break
		sleep 0.2
	done
	sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$WORK/cg/$pid.out"
}

declare -A COST
for data in data_on data_off; do
	log "callgrind: $data"
	server_start "$data"
	base=$(instructions empty.sql)
	for op in issue pair issue_prepared pair_prepared; do
		COST[$data.$op]=$((($(instructions "$op.sql") - base) / OPS))
	done
	if [ "$data" = data_on ]; then
		read -r queued queue_full < <(pg -d bench -At -F ' ' -c "SELECT queued, queue_full FROM coupon.relay_status")
		check_on=$(pg -d bench -At -c "SELECT count(*) FROM coupon.outbox WHERE event_type = 'coupon.used'")
	fi
	server_stop "$data"
done

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
echo "   (coupon.used events written by the pairs, in the outbox once moved: ${check_on:-?} of $((2 * OPS));"
echo "    events through the queue: ${queued:-?}, to the outbox for want of room: ${queue_full:-?})"
