#!/usr/bin/env bash
# bench/saga.sh: the payment saga benchmark.  Run as root from the repo root:
#
#     bash bench/saga.sh                        # full run, about 2 minutes (build excluded)
#     SAGA_BENCH_N=2000 bash bench/saga.sh      # a quick check that everything works
#
# Builds and installs the extension and the mock gateway, starts a private
# cluster with durable settings (fsync and synchronous_commit on,
# track_commit_timestamp on) and its own coupon-mockpg (with --journal, so the
# gateway fsyncs before it answers), then measures:
#
#   - the baseline: plain INSERTs of a payment row and its 'created' event
#     row into copies of the tables, and pay() alone with no worker running;
#   - end to end: payments sent by pgbench clients as fast as they go while
#     the worker runs, until all are completed (gateway latency 0, then 50 ms
#     at each coupon.max_inflight);
#   - the worker's drain rate: a backlog of pending payments written while
#     the worker could not call (coupon.gateway_url empty), then released;
#   - the idle wake-up: single payments with a pause between them, from
#     pay()'s commit (pg_xact_commit_timestamp of its 'created' event) to the
#     worker's claim (authorized_at).
#
# It prints the figures, the targets of the issue with met / NOT met beside
# them, and per-phase information (worker and machine CPU, WAL fsyncs, claim
# and record transactions).  It never asserts a time: the exit status only
# says whether the runs themselves worked.  See bench/README.md.
#
# Settings (environment):
#   SAGA_BENCH_N          payments of the latency-0 runs (20000)
#   SAGA_BENCH_N50        payments of the 50 ms runs at the first max_inflight (N / 2);
#                         the other max_inflight values get N50 * inflight / first
#   SAGA_BENCH_INFLIGHT   coupon.max_inflight values of the latency runs ("64 16")
#   SAGA_BENCH_LATENCY_MS gateway latency of the latency runs (50)
#   SAGA_BENCH_IDLE       single payments of the idle wake-up run (N / 100, 20..200)
#   SAGA_BENCH_PAUSE_MS   pause between them (75)
#   SAGA_BENCH_CLIENTS    pgbench clients (8)
#   SAGA_BENCH_JOBS       pgbench threads (2)
#   SAGA_BENCH_PORT       port (and socket name) of the private cluster (free port)
#   SAGA_BENCH_KEEP=1     keep the work directory (logs) instead of removing it
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

CLIENTS=${SAGA_BENCH_CLIENTS:-8}
JOBS=${SAGA_BENCH_JOBS:-2}
N=${SAGA_BENCH_N:-20000}
N50=${SAGA_BENCH_N50:-$((N / 2))}
INFLIGHTS=${SAGA_BENCH_INFLIGHT:-"64 16"}
LAT=${SAGA_BENCH_LATENCY_MS:-50}
IDLE_DEFAULT=$((N / 100))
[ "$IDLE_DEFAULT" -lt 20 ] && IDLE_DEFAULT=20
[ "$IDLE_DEFAULT" -gt 200 ] && IDLE_DEFAULT=200
IDLE=${SAGA_BENCH_IDLE:-$IDLE_DEFAULT}
PAUSE_MS=${SAGA_BENCH_PAUSE_MS:-75}
SECRET=bench_sk_saga
TIMEOUT_S=300 # longest wait for a phase's payments to finish

# payments per run: a multiple of the client count (pgbench -t per client)
round_clients() {
	local n=$1
	[ "$n" -lt "$CLIENTS" ] && n=$CLIENTS
	echo $(((n + CLIENTS - 1) / CLIENTS * CLIENTS))
}
N=$(round_clients "$N")
N50=$(round_clients "$N50")
FIRST_INFLIGHT=${INFLIGHTS%% *}

prepare_run saga
# what was built: the commit, and whether the code differed from it
BUILD="commit $(git -C "$COUPON_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git -C "$COUPON_ROOT" status --porcelain -- src mockpg ':(glob)coupon*' Makefile 2>/dev/null)" ]; then
	BUILD="$BUILD with uncommitted changes: $(git -C "$COUPON_ROOT" status --porcelain -- src mockpg ':(glob)coupon*' Makefile | awk '{ print $2 }' | paste -sd' ')"
fi
PORT=${SAGA_BENCH_PORT:-$(free_port)}
RESULTS=$WORK/results.tsv
INFO=$WORK/info.txt
mkdir -p "$WORK/logs"
chown postgres:postgres "$WORK/logs"
: >"$RESULTS"
: >"$INFO"

cleanup() {
	mockpg_stop
	cluster_stop "$WORK"
	if [ "${SAGA_BENCH_KEEP:-0}" = 1 ]; then
		echo "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT

log "starting the mock gateway and a private cluster in $WORK (port $PORT)"
mockpg_start "$WORK" "$SECRET"
# coupon.workers = 0 at first: pay() alone is measured with no worker at all
cluster_start "$WORK" "$PORT" <<EOF
$BENCH_DURABLE_CONF
track_commit_timestamp = on
track_wal_io_timing = on
coupon.database = 'bench'
coupon.workers = 0
coupon.gateway_url = '$MOCKPG_URL'
coupon.gateway_secret = '$SECRET'
coupon.max_inflight = $FIRST_INFLIGHT
EOF

START=$SECONDS
TICK=$(getconf CLK_TCK)

# one value (or a |-separated row) from a query in the bench database
q() {
	pg -d bench -At -c "$*"
}

info() {
	printf '%s\n' "$*" >>"$INFO"
}

# a reloadable setting, through ALTER SYSTEM and a reload
set_conf() {
	pg -d bench -c "ALTER SYSTEM SET $1 = '$2'" -c "SELECT pg_reload_conf()" >/dev/null
}

# the mock gateway's settings and counters
gw_faults() {
	curl -sf -X POST -d "$1" "$MOCKPG_URL/__mock/faults" >/dev/null
}
gw_stat() {
	curl -sf "$MOCKPG_URL/__mock/stats" | python3 -c 'import json, sys
s = json.load(sys.stdin)
print(s["approvals"], s["requests"], s["journal"]["fsyncs"])'
}

# wait until the worker's state is $1 (after a reload)
wait_worker_state() {
	for _ in $(seq 1 200); do
		[ "$(q "SELECT state FROM coupon.worker_status WHERE worker = 1")" = "$1" ] && return 0
		sleep 0.05
	done
	echo "the saga worker did not reach state $1" >&2
	exit 1
}

# CPU ticks (user + system) of a process, 0 if it is gone
proc_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# "busy total" ticks of the whole machine
machine_ticks() {
	awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

now_s() {
	date +%s.%N
}

# before each phase: vacuum what the previous phases left (so autovacuum
# has nothing to catch up on during the next one) and a checkpoint (so no
# phase pays for its predecessor's dirty pages)
settle() {
	q "VACUUM (ANALYZE) coupon.payment, coupon.payment_event, bench.payment, bench.payment_event" >/dev/null
	q "CHECKPOINT" >/dev/null
}

# autovacuum and autoanalyze runs so far, all tables of the bench database
av_runs() {
	q "SELECT sum(autovacuum_count + autoanalyze_count) FROM pg_stat_all_tables"
}

# "lsn_bytes fsyncs fsync_ms" of the cluster (pg_stat_wal is updated by the
# worker at most once a second: call this 2 s after the phase ended)
wal_snap() {
	q "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint || ' ' || wal_sync || ' ' || wal_sync_time
	   FROM pg_stat_wal" | tr -d '\n'
}

WORKER_PID=0
# phase_begin: vacuum and checkpoint, then the counters the phase is measured against
phase_begin() {
	settle
	read -r P_WAL0 P_SYNC0 P_SYNCMS0 <<<"$(wal_snap)"
	read -r P_GWA0 P_GWR0 P_GWF0 <<<"$(gw_stat)"
	read -r P_BUSY0 P_TOT0 <<<"$(machine_ticks)"
	P_WT0=$(proc_ticks "$WORKER_PID")
	P_MT0=$(proc_ticks "$MOCKPG_PID")
	P_AV0=$(av_runs)
	P_T0=$(now_s)
}

# phase_end LABEL N: the counters again, as an information line
phase_end() {
	local label=$1 n=$2 t1 busy1 tot1 wt1 mt1 wal1 sync1 syncms1 gwa1 gwr1 gwf1 av1
	t1=$(now_s)
	read -r busy1 tot1 <<<"$(machine_ticks)"
	wt1=$(proc_ticks "$WORKER_PID")
	mt1=$(proc_ticks "$MOCKPG_PID")
	sleep 2 # the worker's WAL statistics reach pg_stat_wal at most once a second
	read -r wal1 sync1 syncms1 <<<"$(wal_snap)"
	read -r gwa1 gwr1 gwf1 <<<"$(gw_stat)"
	av1=$(av_runs)
	info "$(awk -v l="$label" -v n="$n" -v t0="$P_T0" -v t1="$t1" -v tick="$TICK" -v ncpu="$(nproc)" \
		-v b0="$P_BUSY0" -v b1="$busy1" -v a0="$P_TOT0" -v a1="$tot1" \
		-v w0="$P_WT0" -v w1="$wt1" -v m0="$P_MT0" -v m1="$mt1" \
		-v l0="$P_WAL0" -v l1="$wal1" -v s0="$P_SYNC0" -v s1="$sync1" -v sm0="$P_SYNCMS0" -v sm1="$syncms1" \
		-v ga0="$P_GWA0" -v ga1="$gwa1" -v gr0="$P_GWR0" -v gr1="$gwr1" -v gf0="$P_GWF0" -v gf1="$gwf1" \
		-v av0="$P_AV0" -v av1="$av1" '
		BEGIN {
			wall = t1 - t0; syncs = s1 - s0
			printf "%s: %.1f s wall; machine CPU %.0f%% busy of %d CPUs; saga worker %.2f CPU s (%.0f%% of one CPU, %.2f ms per payment); mock gateway %.2f CPU s; ", \
				l, wall, 100 * (b1 - b0) / (a1 - a0), ncpu, (w1 - w0) / tick, 100 * (w1 - w0) / tick / wall, \
				1000 * (w1 - w0) / tick / n, (m1 - m0) / tick
			printf "WAL %.0f B/payment, %d fsyncs (%.0f/s, %.2f ms each, %.2f per payment); ", \
				(l1 - l0) / n, syncs, syncs / wall, (syncs > 0 ? (sm1 - sm0) / syncs : 0), syncs / n
			printf "gateway: %d requests, %d approvals, %d journal fsyncs; autovacuum/autoanalyze runs: %d", \
				gr1 - gr0, ga1 - ga0, gf1 - gf0, av1 - av0
		}')"
}

# run_pgbench KEY SCRIPT N CLIENTS [pgbench options...]: N transactions; sets PB_TPS, PB_PREFIX
run_pgbench() {
	local key=$1 script=$2 n=$3 c=$4
	shift 4
	local j=$JOBS
	[ "$c" -lt "$j" ] && j=$c
	PB_PREFIX="$WORK/logs/$key"
	if ! runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		"$PGBIN/pgbench" -n -M prepared -c "$c" -j "$j" -t $((n / c)) -l --log-prefix="$PB_PREFIX" \
		-f "$script" "$@" bench >"$PB_PREFIX.out" 2>&1; then
		cat "$PB_PREFIX.out" >&2
		echo "pgbench failed ($key)" >&2
		exit 1
	fi
	if grep -q '^number of failed transactions: [1-9]' "$PB_PREFIX.out"; then
		cat "$PB_PREFIX.out" >&2
		echo "pgbench had failed transactions ($key)" >&2
		exit 1
	fi
	PB_TPS=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$PB_PREFIX.out")
}

# "p50 p95 p99" in ms of the pgbench per-transaction logs PREFIX.*
log_pcts() {
	python3 - "$1" <<'PY'
import glob, math, sys
ms = []
for path in glob.glob(glob.escape(sys.argv[1]) + ".*"):
    if path.endswith(".out"):
        continue
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 6 and p[2].isdigit():
                ms.append(int(p[2]) / 1000.0)
ms.sort()
def pct(q):
    return ms[max(0, math.ceil(q / 100.0 * len(ms)) - 1)] if ms else float("nan")
print("%.2f %.2f %.2f" % (pct(50), pct(95), pct(99)))
PY
}

# one row of the table: label latency inflight payments rate p50 p95 p99 target
row() {
	local IFS=$'\t'
	printf '%s\n' "$*" >>"$RESULTS"
}

# wait until no payment is live any more, then check they all completed
wait_done() {
	local mid=$1 n=$2 states
	q "SELECT bench.wait_done($TIMEOUT_S)" >/dev/null
	states=$(q "SELECT string_agg(state || ' ' || n, ', ' ORDER BY state)
		FROM (SELECT state, count(*) AS n FROM coupon.payment WHERE merchant_id = $mid GROUP BY state) s")
	if [ "$states" != "completed $n" ]; then
		info "merchant $mid: expected $n completed payments, found: $states"
	fi
}

# "rate p50 p95 p99 claims records" of merchant $1's payments: rate over
# [min(from), max(completed_at)], percentiles of completed_at - from
saga_figures() {
	local mid=$1 from=$2
	q "WITH p AS (SELECT * FROM coupon.payment WHERE merchant_id = $mid),
		  d AS (SELECT extract(epoch FROM completed_at - $from) * 1000 AS ms FROM p)
	SELECT round(count(*) / extract(epoch FROM max(completed_at) - min($from))::numeric, 0),
		   (SELECT round(percentile_disc(0.50) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM d),
		   (SELECT round(percentile_disc(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM d),
		   (SELECT round(percentile_disc(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2) FROM d),
		   count(DISTINCT authorized_at), -- now() of the claim transaction
		   count(DISTINCT completed_at), -- now() of the record transaction (answers in subtransactions)
		   (SELECT round(percentile_disc(0.50) WITHIN GROUP (ORDER BY e.latency_ms)::numeric, 2)
			  FROM coupon.payment_event e JOIN p ON p.id = e.payment_id WHERE e.step = 'confirm'),
		   (SELECT round(percentile_disc(0.99) WITHIN GROUP (ORDER BY e.latency_ms)::numeric, 2)
			  FROM coupon.payment_event e JOIN p ON p.id = e.payment_id WHERE e.step = 'confirm')
	  FROM p" | tr '|' ' '
}

# a line on how the worker batched a phase's payments
batch_info() {
	local label=$1 n=$2 claims=$3 records=$4 call50=$5 call99=$6
	info "$(awk -v l="$label" -v n="$n" -v c="$claims" -v r="$records" -v a="$call50" -v b="$call99" 'BEGIN {
		printf "%s: %d claim transactions (%.1f payments each), %d record transactions (%.1f each); gateway call p50 %s ms, p99 %s ms (payment_event.latency_ms)", \
			l, c, n / c, r, n / r, a, b }')"
}

met() { # met VALUE OP LIMIT
	if awk -v v="$1" -v l="$3" "BEGIN { exit !(v $2 l) }"; then echo met; else echo "NOT met"; fi
}

# ------------------------------------------------------------------ setup

log "setup: extension, merchants, baseline tables and the pgbench scripts"
pg -d postgres -c "CREATE DATABASE bench"
pg -d bench <<'SQL'
CREATE EXTENSION coupon;
CREATE SCHEMA bench;
-- the same columns, defaults, checks and indexes as the extension's tables
CREATE TABLE bench.payment (LIKE coupon.payment INCLUDING ALL) WITH (fillfactor = 80);
CREATE TABLE bench.payment_event (LIKE coupon.payment_event INCLUDING ALL);
-- wait until no payment is live (one session, a poll every 50 ms)
CREATE FUNCTION bench.wait_done(timeout_s integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	WHILE EXISTS (SELECT 1 FROM coupon.payment
				   WHERE state IN ('pending', 'authorizing', 'approved', 'voiding', 'releasing', 'refunding')) LOOP
		IF clock_timestamp() > t0 + timeout_s * interval '1 second' THEN
			RAISE EXCEPTION 'payments still live after % s', timeout_s;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
END
$$;
SQL
merchant() {
	q "SELECT id FROM coupon.create_merchant('$1')"
}
M_ALONE=$(merchant "pay alone")
M_E2E0=$(merchant "end to end, latency 0")
M_DRAIN0=$(merchant "drain, latency 0")
M_IDLE=$(merchant "idle wake-up")

cat >"$WORK/insert.sql" <<'EOF'
-- baseline: a payment row and its 'created' event, plain SQL, one statement
WITH p AS (INSERT INTO bench.payment (merchant_id, user_id, order_id, amount, payment_key)
		   VALUES (:mid, 'user-' || :client_id, gen_random_uuid()::text, 10000, 'pk-' || gen_random_uuid())
		   RETURNING id)
INSERT INTO bench.payment_event (payment_id, step, to_state, actor)
SELECT id, 'created', 'pending', 'backend' FROM p;
EOF
cat >"$WORK/pay.sql" <<'EOF'
SELECT id FROM coupon.pay(:mid, 'user-' || :client_id, gen_random_uuid()::text, 10000);
EOF
cat >"$WORK/idle.sql" <<'EOF'
SELECT id FROM coupon.pay(:mid, 'user-idle', gen_random_uuid()::text, 10000);
\sleep :pause ms
EOF
chown postgres:postgres "$WORK"/*.sql
q "VACUUM ANALYZE" >/dev/null

# ------------------------------------------------------- baselines: no worker

log "baseline: $N plain INSERTs of a payment and its event ($CLIENTS clients)"
settle
run_pgbench insert "$WORK/insert.sql" "$N" "$CLIENTS" -D mid="$M_ALONE"
row "plain INSERT payment + event rows (baseline)" - - "$N" "$PB_TPS" $(log_pcts "$PB_PREFIX") -
info "latency columns: pgbench transaction latency for the baseline and pay() rows; created_at -> completed_at for end to end; authorized_at -> completed_at for the drain (claim to done, per payment)"

log "baseline: $N pay() with no worker running ($CLIENTS clients)"
settle
run_pgbench pay_alone "$WORK/pay.sql" "$N" "$CLIENTS" -D mid="$M_DRAIN0"
row "pay() alone, no worker" - - "$N" "$PB_TPS" $(log_pcts "$PB_PREFIX") -

# the worker on, parked (no gateway) until the drain starts
log "restarting with coupon.workers = 1 (gateway off: the $N pay() payments wait)"
pg -d bench -c "ALTER SYSTEM SET coupon.workers = 1" -c "ALTER SYSTEM SET coupon.gateway_url = ''" >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/server.log" -w -t 120 -m fast restart >/dev/null
wait_worker_state no_gateway
WORKER_PID=$(q "SELECT pid FROM coupon.worker_status WHERE worker = 1")

# drain KEY MID N LATENCY INFLIGHT: release a backlog to the worker
drain() {
	local key=$1 mid=$2 n=$3 lat=$4 f=$5 rate p50 p95 p99 claims records c50 c99 note="-"
	log "drain: $n pending payments, gateway latency $lat ms, max_inflight $f"
	phase_begin
	set_conf coupon.gateway_url "$MOCKPG_URL"
	wait_done "$mid" "$n"
	phase_end "drain, latency $lat ms, max_inflight $f" "$n"
	read -r rate p50 p95 p99 claims records c50 c99 <<<"$(saga_figures "$mid" authorized_at)"
	if [ "$lat" -gt 0 ]; then
		note="ideal $f / ${lat} ms = $((f * 1000 / lat))/s: $(awk -v r="$rate" -v i=$((f * 1000 / lat)) 'BEGIN { printf "%.0f %%", 100 * r / i }') of it"
	fi
	row "worker drain of a backlog" "$lat ms" "$f" "$n" "$rate" "$p50" "$p95" "$p99" "$note"
	batch_info "drain, latency $lat ms, max_inflight $f" "$n" "$claims" "$records" "$c50" "$c99"
}

# park the worker (no gateway) and write a backlog of N pending payments
preload() {
	local key=$1 mid=$2 n=$3
	set_conf coupon.gateway_url ""
	wait_worker_state no_gateway
	log "writing a backlog of $n payments while the worker has no gateway"
	settle
	local t0 t1 w0 w1
	t0=$(now_s)
	w0=$(proc_ticks "$WORKER_PID")
	run_pgbench "$key" "$WORK/pay.sql" "$n" "$CLIENTS" -D mid="$mid"
	w1=$(proc_ticks "$WORKER_PID")
	t1=$(now_s)
	info "$(awk -v k="$key" -v tps="$PB_TPS" -v n="$n" -v w=$((w1 - w0)) -v tick="$TICK" -v t0="$t0" -v t1="$t1" 'BEGIN {
		printf "backlog for %s: pay() at %.0f tps while the worker has no gateway; the worker, woken at every commit to claim local steps only, used %.2f CPU s meanwhile (%.0f%% of one CPU, %.2f ms per pay())", \
			k, tps, w / tick, 100 * w / tick / (t1 - t0), 1000 * w / tick / n }')"
}

# end_to_end KEY MID N LATENCY INFLIGHT TARGET: pgbench sends, the worker runs
end_to_end() {
	local key=$1 mid=$2 n=$3 lat=$4 f=$5 target=$6 rate p50 p95 p99 claims records c50 c99 pcts
	log "end to end: $n payments from $CLIENTS clients, gateway latency $lat ms, max_inflight $f"
	phase_begin
	run_pgbench "$key" "$WORK/pay.sql" "$n" "$CLIENTS" -D mid="$mid"
	pcts=$(log_pcts "$PB_PREFIX")
	wait_done "$mid" "$n"
	phase_end "end to end, latency $lat ms, max_inflight $f" "$n"
	read -r rate p50 p95 p99 claims records c50 c99 <<<"$(saga_figures "$mid" created_at)"
	row "end to end: pay() -> completed" "$lat ms" "$f" "$n" "$rate" "$p50" "$p95" "$p99" \
		">= $target/s: $(met "$rate" '>=' "$target")"
	row "  pay() calls during it" "$lat ms" "$f" "$n" "$PB_TPS" $pcts -
	batch_info "end to end, latency $lat ms, max_inflight $f" "$n" "$claims" "$records" "$c50" "$c99"
}

# ------------------------------------------------------------ latency 0

drain drain0 "$M_DRAIN0" "$N" 0 "$FIRST_INFLIGHT"
end_to_end e2e0 "$M_E2E0" "$N" 0 "$FIRST_INFLIGHT" 1000

log "idle wake-up: $IDLE single payments, ${PAUSE_MS} ms apart"
phase_begin
run_pgbench idle "$WORK/idle.sql" "$IDLE" 1 -D mid="$M_IDLE" -D pause="$PAUSE_MS"
wait_done "$M_IDLE" "$IDLE"
phase_end "idle wake-up" "$IDLE"
# commit time of pay(): its 'created' event is never updated, so the
# event's xmin is pay()'s transaction; the first confirm event's time minus
# the call's duration is an upper bound of when the call started
read -r w50 w95 w99 s50 s95 s99 c50 c95 c99 wmin wmax <<<"$(q "
	WITH x AS (
		SELECT extract(epoch FROM p.authorized_at - pg_xact_commit_timestamp(e.xmin)) * 1000 AS commit_claim,
			   extract(epoch FROM p.authorized_at - p.created_at) * 1000 AS start_claim,
			   extract(epoch FROM c.at - c.latency_ms * interval '1 millisecond'
							 - pg_xact_commit_timestamp(e.xmin)) * 1000 AS commit_call
		  FROM coupon.payment p
		  JOIN coupon.payment_event e ON e.payment_id = p.id AND e.step = 'created'
		  CROSS JOIN LATERAL (SELECT * FROM coupon.payment_event c
							   WHERE c.payment_id = p.id AND c.step = 'confirm' ORDER BY c.id LIMIT 1) c
		 WHERE p.merchant_id = $M_IDLE)
	SELECT concat_ws(' ',
		round(percentile_disc(0.50) WITHIN GROUP (ORDER BY commit_claim)::numeric, 2),
		round(percentile_disc(0.95) WITHIN GROUP (ORDER BY commit_claim)::numeric, 2),
		round(percentile_disc(0.99) WITHIN GROUP (ORDER BY commit_claim)::numeric, 2),
		round(percentile_disc(0.50) WITHIN GROUP (ORDER BY start_claim)::numeric, 2),
		round(percentile_disc(0.95) WITHIN GROUP (ORDER BY start_claim)::numeric, 2),
		round(percentile_disc(0.99) WITHIN GROUP (ORDER BY start_claim)::numeric, 2),
		round(percentile_disc(0.50) WITHIN GROUP (ORDER BY commit_call)::numeric, 2),
		round(percentile_disc(0.95) WITHIN GROUP (ORDER BY commit_call)::numeric, 2),
		round(percentile_disc(0.99) WITHIN GROUP (ORDER BY commit_call)::numeric, 2),
		round(min(commit_claim)::numeric, 2), round(max(commit_claim)::numeric, 2))
	  FROM x")"
row "idle: pay() commit -> claim starts" "0 ms" "$FIRST_INFLIGHT" "$IDLE" - "$w50" "$w95" "$w99" \
	"p50 < 5 ms: $(met "$w50" '<' 5)"
row "idle: pay() start -> claim starts" "0 ms" "$FIRST_INFLIGHT" "$IDLE" - "$s50" "$s95" "$s99" -
row "idle: pay() commit -> call starts (upper bound)" "0 ms" "$FIRST_INFLIGHT" "$IDLE" - "$c50" "$c95" "$c99" -
info "idle wake-up: commit -> claim min $wmin ms, max $wmax ms; the commit timestamp is taken before pay()'s commit record is flushed, so these figures include that WAL flush (see the fsync time on the idle wake-up line)"
info "idle wake-up: 'pay() start -> claim' is authorized_at - created_at (pay()'s whole transaction, its commit flush and the wake-up); 'commit -> call starts' uses the confirm event's time minus the call's duration, an upper bound that includes the claim's own commit"

# --------------------------------------------------------- gateway latency

gw_faults "{\"latency_ms\":$LAT}"
for f in $INFLIGHTS; do
	n=$(round_clients $((N50 * f / FIRST_INFLIGHT)))
	set_conf coupon.max_inflight "$f"
	M_E=$(merchant "end to end, latency $LAT, inflight $f")
	M_D=$(merchant "drain, latency $LAT, inflight $f")
	target=$((f * 1000 / LAT * 8 / 10))
	end_to_end "e2e${LAT}_$f" "$M_E" "$n" "$LAT" "$f" "$target"
	preload "drain${LAT}_$f" "$M_D" "$n"
	drain "drain${LAT}_$f" "$M_D" "$n" "$LAT" "$f"
done
gw_faults '{"latency_ms":0}'

# ----------------------------------------------------------------- report

TOTAL=$(q "SELECT count(*) FROM coupon.payment")
DONE=$(q "SELECT count(*) FROM coupon.payment WHERE state = 'completed'")
read -r APPROVALS _ _ <<<"$(gw_stat)"
info "all phases: $DONE of $TOTAL payments completed; the gateway approved $APPROVALS; worker_status: $(q "SELECT concat_ws(' ', 'state', state, 'done', done, 'errors', errors, 'circuit', circuit) FROM coupon.worker_status WHERE worker = 1")"

echo
echo "coupon saga benchmark: pgbench -M prepared -c $CLIENTS -j $JOBS; one saga worker; gateway coupon-mockpg --journal over loopback"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo "server: $(q "SELECT version()")"
echo "build: $BUILD"
echo "run took $((SECONDS - START))s (build excluded)"
echo "settings: fsync $(q "SHOW fsync"), synchronous_commit $(q "SHOW synchronous_commit"), track_commit_timestamp $(q "SHOW track_commit_timestamp"), shared_buffers $(q "SHOW shared_buffers"), coupon.workers $(q "SHOW coupon.workers"), coupon.gateway_timeout_ms $(q "SHOW coupon.gateway_timeout_ms"), payments without coupons (amount 10000), VACUUM and CHECKPOINT before each phase"
echo
python3 - "$RESULTS" <<'PY'
import sys
header = ("measurement", "gateway", "inflight", "payments", "per second", "p50 ms", "p95 ms", "p99 ms", "target")
rows = []
with open(sys.argv[1]) as f:
    for line in f:
        cells = line.rstrip("\n").split("\t")
        try:
            cells[4] = "{:,.0f}".format(float(cells[4]))
        except ValueError:
            pass
        cells[3] = "{:,}".format(int(cells[3]))
        rows.append(cells)
widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
right = {1, 2, 3, 4, 5, 6, 7}
def line(cells):
    return "  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                     for i, c in enumerate(cells)).rstrip()
print(line(header))
print("  ".join("-" * w for w in widths))
for r in rows:
    print(line(r))
PY
echo
sed 's/^/info: /' "$INFO"
