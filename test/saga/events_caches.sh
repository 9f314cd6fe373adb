#!/usr/bin/env bash
# The Redis read caches equal the database after a concurrent FCFS rush and
# a burst of balance spends, and rebuild_redis_caches() refills them from
# scratch: wrong values put right, stray keys gone.
#
# The relay refreshes, after each batch, the caches of the policies and
# balance coupons its events touched, from the tables as they are then; so
# once every event is published (relay_status.backlog = 0), each cache key
# must hold what the database holds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

relay_start <<'CONF'
CONF

M=$(q "SELECT id FROM coupon.create_merchant('cache shop')")
FP=$(q "SELECT id FROM coupon.create_policy($M, 'rush', 'fixed', 1000, issue_method => 'fcfs',
	total_quantity => 3000, per_user_limit => NULL)")
BP=$(q "SELECT id FROM coupon.create_policy($M, 'gift card', 'balance', 100000, per_user_limit => NULL)")
FP_OPEN=$(q "SELECT id FROM coupon.create_policy($M, 'open', 'fixed', 100, per_user_limit => NULL)")
psql_saga >/dev/null <<SQL
SELECT count(coupon.issue($BP, 'b' || g)) FROM generate_series(1, 100) g;
CREATE SEQUENCE ord;
-- an issue that may find the stock gone
CREATE FUNCTION try_issue(p bigint, u text) RETURNS text
LANGUAGE plpgsql AS \$f\$
BEGIN
	PERFORM coupon.issue(p, u);
	RETURN 'issued';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLERRM;
END
\$f\$;
-- part of a balance spent: hold and confirm in one go (or lose the race)
CREATE FUNCTION spend(n integer, m bigint, amount bigint) RETURNS text
LANGUAGE plpgsql AS \$f\$
BEGIN
	PERFORM coupon.confirm((coupon.reserve((SELECT id FROM coupon.coupon WHERE user_id = 'b' || n),
		'b' || n, m, 'o-' || nextval('ord'), amount)).id);
	RETURN 'spent';
EXCEPTION WHEN OTHERS THEN
	RETURN SQLERRM;
END
\$f\$;
SQL
RUSH=$(scratch_file rush.pgbench <<'PGB'
\set n random(1, 1000000)
SELECT try_issue(:p, 'r' || :n);
PGB
)
SPEND=$(scratch_file spend.pgbench <<'PGB'
\set n random(1, 100)
\set amount random(1000, 9000)
SELECT spend(:n, :m, :amount);
PGB
)
as_pg pgbench -n -c 16 -j 2 -t 250 -D p="$FP" -f "$RUSH" "$SAGA_DB" >"$SAGA_DIR/rush.log" 2>&1 &
R=$!
as_pg pgbench -n -c 8 -j 2 -t 200 -D m="$M" -f "$SPEND" "$SAGA_DB" >"$SAGA_DIR/spend.log" 2>&1 &
S=$!
SAGA_BG_PIDS+=("$R" "$S")
if wait "$R"; then ok "FCFS rush: 4,000 attempts by 16 clients"; else not_ok "FCFS rush: 4,000 attempts by 16 clients"; fi
if wait "$S"; then ok "balance spends: 1,600 by 8 clients"; else not_ok "balance spends: 1,600 by 8 clients"; fi
check "the rush sold the policy out" "$(q "SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $FP")" 0
diag "balance spent: $(q "SELECT 100 * 100000 - sum(balance) FROM coupon.coupon WHERE policy_id = $BP") in $(q "SELECT count(*) FROM coupon.outbox WHERE event_type = 'coupon.used'") spends"

# the caches as Redis has them, and as the database says they should be
cache_redis() {
	local keys
	keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'coupon:policy:*'; redis-cli -p "$REDIS_PORT" --scan --pattern 'coupon:balance:*')
	# shellcheck disable=SC2086
	python3 "$COUPON_ROOT/test/saga/redis_stream.py" "$REDIS_PORT" hash $keys | sort
}
cache_db() {
	q "SELECT k FROM (
		SELECT format('coupon:policy:%s remaining=%s status=%s total=%s', p.id,
			   (SELECT sum(s.remaining) FROM coupon.policy_stock s WHERE s.policy_id = p.id), p.status,
			   p.total_quantity) FROM coupon.policy p
		UNION ALL
		SELECT format('coupon:balance:%s balance=%s status=%s', c.id, c.balance, c.status)
		  FROM coupon.coupon c WHERE c.balance IS NOT NULL) s(k)" | sort
}
compare_caches() {
	cache_redis >"$SAGA_DIR/redis.txt"
	cache_db >"$SAGA_DIR/db.txt"
	check "$1: $(wc -l <"$SAGA_DIR/db.txt") keys, each as in the database" \
		"$(diff "$SAGA_DIR/db.txt" "$SAGA_DIR/redis.txt" | grep -c '^[<>]' || true)" 0
	diff "$SAGA_DIR/db.txt" "$SAGA_DIR/redis.txt" | head -6 | sed 's/^/#   /' || true
}

wait_relay_drained 120
compare_caches "after the rush and the spends"

# wrong values and a stray key, then a rebuild from scratch
B1=$(q "SELECT min(id) FROM coupon.coupon WHERE policy_id = $BP")
redis-cli -p "$REDIS_PORT" HSET "coupon:policy:$FP" remaining 999999 >/dev/null
redis-cli -p "$REDIS_PORT" DEL "coupon:balance:$B1" >/dev/null
redis-cli -p "$REDIS_PORT" HSET coupon:balance:999999999 balance 1 >/dev/null
AT=$(q "SELECT coupon.rebuild_redis_caches()")
wait_for "rebuild_redis_caches() is done" 60 \
	"SELECT rebuilt_at >= '$AT'::timestamptz FROM coupon.relay_status"
compare_caches "after rebuild_redis_caches()"
check "the stray key is gone" "$(redis-cli -p "$REDIS_PORT" EXISTS coupon:balance:999999999)" 0
check "only merchants' coupon data is cached: no other key under the prefix but the stream" \
	"$(redis-cli -p "$REDIS_PORT" --scan --pattern 'coupon:*' | grep -cv '^coupon:\(policy\|balance\):[0-9]*$\|^coupon:events$' || true)" 0

# Redis refusing: a cache key of another type is logged once and does not
# hold the events back; a stream key of another type holds them (the relay
# backs off), until it is put right
SP=$(q "SELECT id FROM coupon.create_policy($M, 'wrong type', 'fixed', 100, total_quantity => 50, per_user_limit => NULL)")
wait_relay_drained 60 "the new policy's event is published"
redis-cli -p "$REDIS_PORT" DEL "coupon:policy:$SP" >/dev/null
redis-cli -p "$REDIS_PORT" SET "coupon:policy:$SP" not-a-hash >/dev/null
q "SELECT coupon.issue($SP, 'wt' || g) FROM generate_series(1, 5) g" >/dev/null
wait_relay_drained 60 "events go out although a cache write is refused"
check "the refused cache write is logged once" \
	"$(grep -c 'coupon relay: a Redis cache was not updated' "$SAGA_DIR/server.log")" 1
check "the relay stays connected (a refused cache write is no outage)" \
	"$(q "SELECT state <> 'redis_down' AND connected FROM coupon.relay_status")" t
XLEN_BEFORE=$(redis-cli -p "$REDIS_PORT" XLEN coupon:events)
redis-cli -p "$REDIS_PORT" RENAME coupon:events coupon:events-aside >/dev/null
redis-cli -p "$REDIS_PORT" SET coupon:events not-a-stream >/dev/null
q "SELECT coupon.issue($FP_OPEN, 'refused' || g) FROM generate_series(1, 3) g" >/dev/null
wait_for "a stream key of another type: the relay backs off (redis_down, WRONGTYPE)" 60 \
	"SELECT state = 'redis_down' AND last_error LIKE '%WRONGTYPE%' AND backlog = 3 FROM coupon.relay_status"
check "one log line for that outage" "$(grep -c 'coupon relay: Redis is unavailable' "$SAGA_DIR/server.log")" 1
# one command, which replaces the string: a retry between two would create
# a fresh stream that the second then overwrote
redis-cli -p "$REDIS_PORT" RENAME coupon:events-aside coupon:events >/dev/null
wait_relay_drained 60 "put right, the relay publishes what waited"
check "the three events joined the stream" "$(($(redis-cli -p "$REDIS_PORT" XLEN coupon:events) - XLEN_BEFORE))" 3

saga_finish
