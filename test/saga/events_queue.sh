#!/usr/bin/env bash
# The outbox queue (docs/events.md, "The queue"): a checkout's events wait
# in coupon.outbox_queue, found by the relay through a ring in shared
# memory, here of 64 entries (coupon.outbox_queue_size).
#
# (a) With Redis down the relay moves nothing: 64 events of 500 fill the
#     ring, the other 436 go to the outbox itself (relay_status.queue_full).
# (b) The relay worker is terminated and comes back: it keeps the ring's
#     entries, and its first window moves every queued event anyway.
# (c) The postmaster is killed with kill -9 while events wait in the
#     queue: the ring is gone with the shared memory; the relay's first
#     window after the restart moves them all by a scan of the queue.
# (e) 100 commits fail writing their queue rows (a CHECK added for the
#     test): they give their entries up, and the ring still has room.
# (d) Live traffic through the ring once Redis is back: 8 clients.
# After each: every event in the stream, the queue empty, the audit
# trail's lookup rows right.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

relay_start <<'CONF'
coupon.outbox_queue_size = 64
CONF
M=$(q "SELECT id FROM coupon.create_merchant('queue shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 500', 'fixed', 500, per_user_limit => NULL)")
SCRIPT=$(scratch_file issue.pgbench <<'PGB'
SELECT coupon.issue(:p, :client_id || '-' || random());
PGB
)

# all_published LABEL: the stream holds every outbox event, the queue is empty
all_published() {
	wait_relay_drained 120 "$1: the relay publishes every event"
	stream_dump "$SAGA_DIR/stream.txt"
	outbox_ids "$SAGA_DIR/outbox.txt"
	read -r missing _ unknown <<<"$(stream_vs_outbox "$SAGA_DIR/stream.txt" "$SAGA_DIR/outbox.txt")"
	check "$1: every event id is in the stream" "$missing" 0
	check "$1: no entry names an event the outbox lacks" "$unknown" 0
	check "$1: the queue is empty" "$(q "SELECT count(*) FROM coupon.outbox_queue")" 0
}

# ------------------------------------------------------------ (a) a full ring
# redis_down: kill Redis; the relay finds out with the next event it sends
redis_down() {
	redis_kill
	q "SELECT coupon.issue($P, 'wake-$1')" >/dev/null
	wait_for "$1 relay_status says redis_down" 60 "SELECT state = 'redis_down' FROM coupon.relay_status"
}

all_published "(a) before"
redis_down "(a)"
read -r queued0 full0 backlog0 <<<"$(q "SELECT queued, queue_full, backlog FROM coupon.relay_status" | tr '|' ' ')"
as_pg pgbench -n -c 1 -t 500 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench-a.log" 2>&1
check "(a) 64 events wait in the queue, as many as the ring holds" \
	"$(q "SELECT count(*) FROM coupon.outbox_queue")" 64
check "(a) the others went to the outbox (queue_full), none lost" \
	"$(q "SELECT queue_full - $full0 >= 436 AND queued - $queued0 + queue_full - $full0 = 500 FROM coupon.relay_status")" t
check "(a) relay_status counts both as backlog" "$(q "SELECT backlog - $backlog0 FROM coupon.relay_status")" 500
check "(a) events() reads a queued event" \
	"$(q "SELECT count(*) FROM coupon.outbox_queue q, coupon.events(q.aggregate, q.aggregate_id) e
	       WHERE e.event_id = q.event_id")" 64

# ------------------------------------------------------------ (b) the relay restarts
RELAY_PID=$(q "SELECT pid FROM coupon.relay_status")
q "SELECT pg_terminate_backend($RELAY_PID)" >/dev/null
wait_for "(b) a new relay worker runs" 60 \
	"SELECT pid IS NOT NULL AND pid <> $RELAY_PID AND state = 'redis_down' FROM coupon.relay_status"
redis_start
all_published "(b) after the relay's restart"
check_lookup "(b)"

# ------------------------------------------------------------ (c) a crash
redis_down "(c)"
as_pg pgbench -n -c 1 -t 40 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench-c.log" 2>&1
check "(c) the 40 events wait in the queue" \
	"$(q "SELECT count(*) >= 40 FROM coupon.outbox_queue WHERE user_id NOT LIKE 'wake-%'")" t
postmaster_kill "(c)"
redis_start
crash_restart "(c)"
check "(c) the ring is empty after the restart" "$(q "SELECT queued FROM coupon.relay_status")" 0
all_published "(c) after the crash"
check_lookup "(c)"

# ------------------------------------------------------------ (e) aborted writes
# a commit whose queue write fails (a CHECK the test adds refuses the row)
# gives its ring entries up: 100 of them, then 100 events that must still
# find room in the 64-entry ring
q "ALTER TABLE coupon.outbox_queue ADD CONSTRAINT poison CHECK (user_id IS DISTINCT FROM 'poison')" >/dev/null
read -r queued0 full0 <<<"$(q "SELECT queued, queue_full FROM coupon.relay_status" | tr '|' ' ')"
for _ in $(seq 1 100); do echo "SELECT coupon.issue($P, 'poison');"; done >"$SAGA_DIR/poison.sql"
chown postgres:postgres "$SAGA_DIR/poison.sql"
failed=$(as_pg psql -X -q -d "$SAGA_DB" -f "$SAGA_DIR/poison.sql" 2>&1 | grep -c 'violates check constraint "poison"' || true)
check "(e) 100 commits failed writing their queue rows" "$failed" 100
q "ALTER TABLE coupon.outbox_queue DROP CONSTRAINT poison" >/dev/null
check "(e) ... and left no coupon, no event" \
	"$(q "SELECT (SELECT count(*) FROM coupon.coupon WHERE user_id = 'poison')
	           + (SELECT count(*) FROM coupon.outbox WHERE user_id = 'poison')")" 0
as_pg pgbench -n -c 1 -t 100 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench-e.log" 2>&1
check "(e) the ring had room for the next 100: the failed commits gave their entries up" \
	"$(q "SELECT queued - $queued0 = 100 AND queue_full = $full0 FROM coupon.relay_status")" t
all_published "(e)"

# ------------------------------------------------------------ (d) live traffic
as_pg pgbench -n -c 8 -j 2 -t 500 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench-d.log" 2>&1
check "(d) 8 clients issued 4,000 coupons" \
	"$(q "SELECT count(*) FROM coupon.coupon WHERE policy_id = $P AND user_id NOT LIKE 'wake-%'")" 4640
check "(d) events went through the queue" "$(q "SELECT queued > 0 FROM coupon.relay_status")" t
all_published "(d)"
check_lookup "(d)"

saga_finish
