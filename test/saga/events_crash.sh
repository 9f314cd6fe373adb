#!/usr/bin/env bash
# The relay through crashes: Redis killed with kill -9 in the middle of a
# burst of 50,000 events, then PostgreSQL killed with kill -9 while the
# relay waits on Redis for a batch it has sent.
#
# (a) Eight pgbench clients issue 50,000 coupons; once the stream holds
#     some of them Redis is killed, and started again on its fsynced
#     append-only file.  Every event must arrive at least once; duplicates
#     (the batch in flight at the kill) are told apart by event_id.
# (b) With Redis down, 20,000 more events wait in the outbox.  The test
#     locks the relay's position table (LOCK ... IN EXCLUSIVE MODE: a
#     queue, first come first served), so that with Redis back exactly one
#     batch goes out (1,000 events) between two such sessions; then Redis
#     pauses writes (CLIENT PAUSE), the relay sends its next batch and
#     waits for the replies, and the postmaster is killed.  After the
#     restart the relay must go on from the batch it committed: every event
#     present, at most that one unanswered batch sent twice; the audit
#     trail's lookup rows, written with the relay's position, match the
#     outbox.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

BATCH=1000	# events per relay round (RELAY_BATCH in src/relay_worker.c)

relay_start <<'CONF'
coupon.redis_timeout_ms = 120000
CONF
M=$(q "SELECT id FROM coupon.create_merchant('events crash shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 500', 'fixed', 500, per_user_limit => NULL)")
xlen() { redis-cli -p "$REDIS_PORT" XLEN coupon:events 2>/dev/null || echo 0; }

# ------------------------------------------------------------ (a) Redis dies
SCRIPT=$(scratch_file issue.pgbench <<'PGB'
\set n random(1, 100000)
SELECT coupon.issue(:p, 'u' || :n);
PGB
)
as_pg pgbench -n -c 8 -j 2 -t 6250 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench-a.log" 2>&1 &
BURST=$!
SAGA_BG_PIDS+=("$BURST")
deadline=$(($(date +%s) + 120))
while [ "$(xlen)" -lt 5000 ] && [ "$(date +%s)" -lt $deadline ]; do sleep 0.1; done
diag "(a) at the kill: $(xlen) entries in the stream, burst still running: $(kill -0 $BURST 2>/dev/null && echo yes || echo no)"
redis_kill
wait_for "(a) relay_status says redis_down" 60 "SELECT state = 'redis_down' AND NOT connected FROM coupon.relay_status"
redis_start
if wait "$BURST"; then ok "(a) pgbench: 50,000 coupons issued by 8 clients"; else not_ok "(a) pgbench: 50,000 coupons issued"; fi
wait_relay_drained 180 "(a) the relay publishes every event after Redis is back"
stream_dump "$SAGA_DIR/stream-a.txt"
outbox_ids "$SAGA_DIR/outbox-a.txt"
read -r missing dups_a unknown <<<"$(stream_vs_outbox "$SAGA_DIR/stream-a.txt" "$SAGA_DIR/outbox-a.txt")"
check "(a) the burst wrote 50,000 coupon.issued events" \
	"$(q "SELECT count(*) FROM coupon.outbox WHERE event_type = 'coupon.issued' AND user_id ~ '^u[0-9]'")" 50000
check "(a) every event id arrived at least once" "$missing" 0
check "(a) no entry names an event the outbox lacks" "$unknown" 0
diag "(a) duplicates (the batch in flight at the kill): $dups_a"
check "(a) at most one batch was sent twice" "$((dups_a <= BATCH))" 1
check "(a) the relay reconnected" "$(q "SELECT reconnects >= 2 FROM coupon.relay_status")" t
check "(a) one log line for the outage" "$(grep -c 'coupon relay: Redis is unavailable' "$SAGA_DIR/server.log")" 1

# ------------------------------------------------------------ (b) PostgreSQL dies
redis_kill
psql_saga >/dev/null <<SQL &
SELECT count(coupon.issue($P, 'b' || g)) FROM generate_series(1, 10000) g;
SQL
OTHER=$!
psql_saga >/dev/null <<SQL
SELECT count(coupon.issue($P, 'c' || g)) FROM generate_series(1, 10000) g;
SQL
wait "$OTHER"
check "(b) 20,000 events wait in the outbox" "$(q "SELECT backlog FROM coupon.relay_status")" 20000
BEFORE=$(wc -l <"$SAGA_DIR/stream-a.txt")

# hold_position NAME: a session that locks the relay's position and keeps it
hold_position() {
	as_pg env PGAPPNAME="$1" psql -X -q -d "$SAGA_DB" \
		-c "BEGIN; LOCK TABLE coupon.relay_state IN EXCLUSIVE MODE; SELECT pg_sleep(600)" >/dev/null 2>&1 &
	SAGA_BG_PIDS+=("$!")
}
relay_waits_on() {
	echo "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'coupon relay worker' AND wait_event_type = '$1'"
}
hold_position hold_a
wait_for "(b) session A holds the relay's position" 30 \
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'hold_a' AND wait_event = 'PgSleep'"
redis_start
wait_for "(b) the relay, connected again, waits for its position" 60 "$(relay_waits_on Lock)"
hold_position hold_b
wait_for "(b) session B queues behind the relay" 30 \
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'hold_b' AND wait_event_type = 'Lock'"
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hold_a'" >/dev/null
wait_for "(b) one round later session B holds the position" 30 \
	"SELECT count(*) = 1 FROM pg_stat_activity WHERE application_name = 'hold_b' AND wait_event = 'PgSleep'"
check "(b) exactly one batch went out" "$(($(xlen) - BEFORE))" "$BATCH"
redis-cli -p "$REDIS_PORT" CLIENT PAUSE 600000 WRITE >/dev/null
q "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'hold_b'" >/dev/null
deadline=$(($(date +%s) + 60))
until redis-cli -p "$REDIS_PORT" CLIENT LIST | grep -q 'flags=b.*cmd=xadd'; do
	[ "$(date +%s)" -lt $deadline ] || break
	sleep 0.1
done
check "(b) the relay sent its next batch and waits for Redis" \
	"$(redis-cli -p "$REDIS_PORT" CLIENT LIST | grep -c 'flags=b.*cmd=xadd')" 1
postmaster_kill "(b)"
redis-cli -p "$REDIS_PORT" CLIENT UNPAUSE >/dev/null
crash_restart "(b)"
wait_relay_drained 180 "(b) the relay publishes the rest after the restart"
stream_dump "$SAGA_DIR/stream-b.txt"
outbox_ids "$SAGA_DIR/outbox-b.txt"
read -r missing dups_b unknown <<<"$(stream_vs_outbox "$SAGA_DIR/stream-b.txt" "$SAGA_DIR/outbox-b.txt")"
check "(b) every event id arrived at least once" "$missing" 0
check "(b) no entry names an event the outbox lacks" "$unknown" 0
diag "(b) duplicates after the restart: $((dups_b - dups_a))"
check "(b) the relay went on from its committed position (at most the unanswered batch again)" \
	"$(((dups_b - dups_a) <= BATCH))" 1
check "(b) relay_status counts every event once per send it committed" \
	"$(q "SELECT published >= (SELECT count(*) FROM coupon.outbox) FROM coupon.relay_status")" t
check_lookup "(b)"

saga_finish
