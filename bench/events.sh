#!/usr/bin/env bash
# bench/events.sh: the outbox and its relay.  Run as root from the repo root:
#
#     bash bench/events.sh                  # BENCH_SECONDS=10 per run, about 4 minutes
#     BENCH_SECONDS=3 BENCH_ROUNDS=1 bash bench/events.sh   # a quick check
#
# One private cluster with the durable settings of bench/run.sh, its relay
# worker serving the bench database, and a real redis-server on 127.0.0.1.
# It measures, in one run:
#
# 1. what writing the outbox costs the hot paths: coupon.issue on a big
#    fcfs policy and the reserve+confirm pair, with the outbox triggers
#    enabled and disabled in turn (the order alternating between rounds),
#    while the relay points at a Redis that is not there (so it takes no
#    CPU from the runs and the events wait in the queue, whose ring is made
#    big enough to hold them all: docs/events.md, "The queue");
# 2. the relay's throughput: Redis comes back and the relay publishes that
#    backlog; events per second from the first to the last XADD, beside
#    redis-benchmark's own XADD rate (same entry size, one pipelined
#    connection, and 50 plain clients);
# 3. the lag from commit to XADD under an FCFS rush with the relay live:
#    each stream entry's id (Redis's clock, ms) minus the event's
#    occurred_at (written just before the commit), p50/p99/max.
#
# It prints figures and never judges them.  Settings (environment):
#   BENCH_SECONDS  seconds per pgbench run (10)
#   BENCH_CLIENTS  clients of the hot-path and rush runs (32)
#   BENCH_ROUNDS   rounds of the on/off comparison (2)
#   BENCH_JOBS     pgbench threads (2)
#   BENCH_KEEP=1   keep the work directory
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

BENCH=$COUPON_ROOT/bench
SECS=${BENCH_SECONDS:-10}
CLIENTS=${BENCH_CLIENTS:-32}
ROUNDS=${BENCH_ROUNDS:-2}
JOBS=${BENCH_JOBS:-2}
NUSERS=20000
PAIR_RATE=12000

prepare_run bench-events
PORT=${BENCH_PORT:-$(free_port)}
RPORT=$(free_port)
RESULTS=$WORK/results.tsv
INFO=$WORK/info.txt
mkdir -p "$WORK/logs" "$WORK/redis"
: >"$RESULTS"
: >"$INFO"
REDIS_PID=

cleanup() {
	cluster_stop "$WORK"
	[ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "starting redis-server on 127.0.0.1:$RPORT and a private cluster in $WORK (port $PORT)"
redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$WORK/redis" --save '' --appendonly no \
	--logfile "$WORK/redis/redis.log" &
REDIS_PID=$!
cluster_start "$WORK" "$PORT" <<EOF
$BENCH_DURABLE_CONF
coupon.database = 'bench'
coupon.workers = 0
coupon.redis_url = 'redis://127.0.0.1:1'
coupon.outbox_queue_size = 2097152
EOF
START=$SECONDS

relay_conf() {
	q postgres "ALTER SYSTEM SET $1 = '$2'" >/dev/null
	q postgres "SELECT pg_reload_conf()" >/dev/null
}

log "setup: the extension and the baselines' helpers (database bench)"
pg -d postgres -c "CREATE DATABASE bench"
pg -d bench -c "CREATE EXTENSION coupon"
pg -d bench <"$BENCH/sql/baseline.sql"
MID=$(q bench "SELECT id FROM coupon.create_merchant('bench shop')")

# ---------------------------------------------- 1. the cost of writing events

TRIGGERS="coupon.coupon:coupon_outbox coupon.reservation:reservation_outbox"
outbox_triggers() {
	local t
	for t in $TRIGGERS; do
		q bench "ALTER TABLE ${t%%:*} $1 TRIGGER ${t##*:}" >/dev/null
	done
}

for ROUND in $(seq 1 "$ROUNDS"); do
	order="on off"
	[ $((ROUND % 2)) = 0 ] && order="off on"
	for mode in $order; do
		outbox_triggers "$([ "$mode" = on ] && echo ENABLE || echo DISABLE)"
		FPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'fcfs $mode r$ROUND', 'fixed', 1000,
			issue_method => 'fcfs', total_quantity => 100000000, per_user_limit => NULL)")
		run_pgbench "issue_$mode" "coupon.issue fcfs, events $mode" "$CLIENTS" bench -n \
			-f "$BENCH/pgbench/issue_fcfs.sql" -D pid="$FPID"
		pool=$(((SECS * PAIR_RATE + CLIENTS - 1) / CLIENTS * CLIENTS))
		RPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'checkout $mode r$ROUND', 'fixed', 1000,
			per_user_limit => NULL)")
		log "setup: pre-issuing $pool coupons for reserve+confirm"
		RMIN=$(q bench "SELECT bench.issue_pool($RPID, $pool, $NUSERS)")
		q bench "VACUUM ANALYZE coupon.coupon" >/dev/null
		run_pgbench "pair_$mode" "reserve+confirm, events $mode" "$CLIENTS" bench -n \
			-f "$BENCH/pgbench/reserve_confirm.sql" \
			-D cmin="$RMIN" -D slice="$((pool / CLIENTS))" -D nusers="$NUSERS" -D mid="$MID" -D k=0
	done
done
outbox_triggers ENABLE

# ---------------------------------------------- 2. relay throughput

BACKLOG=$(q bench "SELECT backlog FROM coupon.relay_status")
read -r QUEUED QUEUE_FULL < <(q bench "SELECT queued, queue_full FROM coupon.relay_status" | tr '|' ' ')
P0=$(q bench "SELECT published FROM coupon.relay_state")
log "relay: publishing a backlog of $BACKLOG events to Redis"
T0=$(q bench "SELECT clock_timestamp()")
relay_conf coupon.redis_url "redis://127.0.0.1:$RPORT"
deadline=$((SECONDS + 600))
while [ "$(q bench "SELECT published - $P0 >= $BACKLOG FROM coupon.relay_state")" != t ]; do
	[ $SECONDS -lt $deadline ] || { echo "the relay did not publish the backlog within 600 s" >&2; exit 1; }
	sleep 0.5
done
read -r relay_secs relay_rate < <(q bench "SELECT round(extract(epoch FROM last_published_at - '$T0')::numeric, 2),
	round((published - $P0) / extract(epoch FROM last_published_at - '$T0'))
	FROM coupon.relay_state" | tr '|' ' ')
XLEN=$(redis-cli -p "$RPORT" XLEN coupon:events)

ENTRY=(event_id __rand_int__ type coupon.issued aggregate coupon aggregate_id 123456 merchant_id 1
	user_id u123456 actor postgres occurred_at 2026-12-04T12:00:00.000000Z
	payload '{"policy_id":1,"status":"issued","balance":null}')
rb_rate() {
	redis-benchmark -p "$RPORT" -q "$@" XADD bench:xadd MAXLEN '~' 1000000 '*' "${ENTRY[@]}" |
		tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1
}
log "redis-benchmark: XADD, one pipelined connection and 50 clients"
rb_pipe=$(rb_rate -n 1000000 -c 1 -P 1000)
rb_plain=$(rb_rate -n 200000 -c 50)

# ---------------------------------------------- 3. lag under an FCFS rush

relay_conf coupon.redis_prefix lag
LPID=$(q bench "SELECT id FROM coupon.create_policy($MID, 'rush', 'fixed', 1000,
	issue_method => 'fcfs', total_quantity => 100000000, per_user_limit => NULL)")
ROUND=lag
run_pgbench rush "coupon.issue fcfs, relay live" "$CLIENTS" bench -n -f "$BENCH/pgbench/issue_fcfs.sql" -D pid="$LPID"
while [ "$(q bench "SELECT backlog = 0 FROM coupon.relay_status")" != t ]; do sleep 0.5; done
python3 "$COUPON_ROOT/test/saga/redis_stream.py" "$RPORT" stream lag:events >"$WORK/lag.txt"
lag=$(python3 - "$WORK/lag.txt" <<'PY'
import datetime, sys
lags = []
for line in open(sys.argv[1]):
    entry, _, typ, _, _, at = line.split()[:6]
    ms = int(entry.split("-")[0])
    t = datetime.datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    lags.append(ms - t.timestamp() * 1000)
lags.sort()
pick = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
print("%d %.1f %.1f %.1f" % (len(lags), pick(0.5), pick(0.99), lags[-1]))
PY
)
read -r lag_n lag_p50 lag_p99 lag_max <<<"$lag"

# ---------------------------------------------- report

median_tps() {
	awk -F'\t' -v k="$1" '$1 == k && $4 != "-" { print $4 }' "$RESULTS" | sort -n |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratios() {
	# on/off within each round, then their median and range
	awk -F'\t' -v a="$1_on" -v b="$1_off" '$1 == a { on[$10] = $4 } $1 == b { off[$10] = $4 }
		END { for (r in on) if (r in off && off[r] > 0) print on[r] / off[r] }' "$RESULTS" | sort -n |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
			printf "%.3f [%.3f-%.3f]", m, v[1], v[NR] }'
}

echo
echo "events benchmark: pgbench -M prepared -j $JOBS, ${SECS}s per run, $CLIENTS clients, $ROUNDS rounds"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $(q postgres "SELECT version()")"
echo "redis: $(redis-server --version | cut -d' ' -f1-3)"
echo "settings: fsync $(q postgres "SHOW fsync"), synchronous_commit $(q postgres "SHOW synchronous_commit"); run took $((SECONDS - START))s"
echo
echo "1. writing the outbox (tps, median of rounds; ratio events on / off per round, median [range])"
printf '   %-24s %10s %10s   %s\n' workload "events on" "events off" "on/off"
printf '   %-24s %10s %10s   %s\n' "coupon.issue fcfs" "$(median_tps issue_on)" "$(median_tps issue_off)" "$(ratios issue)"
printf '   %-24s %10s %10s   %s\n' "reserve+confirm" "$(median_tps pair_on)" "$(median_tps pair_off)" "$(ratios pair)"
echo
echo "2. relay throughput"
echo "   relay: $BACKLOG events in ${relay_secs}s = $relay_rate events/s (stream length $XLEN)"
echo "   (the backlog: $QUEUED events queued, moved into the outbox by the relay's first window; $QUEUE_FULL written to the outbox for want of room in the ring)"
echo "   redis-benchmark XADD, same entry: $rb_pipe/s one connection pipelined 1000 deep; $rb_plain/s 50 clients, no pipeline"
echo
echo "3. lag from commit to XADD under an FCFS rush ($CLIENTS clients, relay live; $(median_tps rush) tps)"
echo "   $lag_n events: p50 ${lag_p50} ms, p99 ${lag_p99} ms, max ${lag_max} ms"
