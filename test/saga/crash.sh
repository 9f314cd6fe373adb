#!/usr/bin/env bash
# Payment saga through crashes: kill -9 of the saga worker, then of the
# postmaster itself, while payments and refunds are in flight.
#
# The gateway answers after 200 ms and the worker keeps at most 4 calls in
# flight, so a backlog of payments made by 4 pgbench clients is still being
# worked on when (a) the worker is killed (the postmaster restarts the
# cluster) and, with a second backlog and 20 refunds requested, (b) the
# postmaster is killed and the cluster started again with pg_ctl.  Then:
# every payment reaches its terminal state (ok_* keys completed, refunded if
# cancelled; decline_* failed; none needs attention), the gateway's net
# equals the database's, order by order, at most one APPROVE per orderId,
# no coupon used by a failed payment, every completed payment's coupon used.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

CLIENTS=4
PER_CLIENT_A=50 # 200 payments before the worker is killed
PER_CLIENT_B=25 # 100 more before the postmaster is killed
REFUNDS=20

saga_start <<'CONF'
coupon.workers = 1
coupon.gateway_timeout_ms = 2000
coupon.max_inflight = 4
CONF
gw_faults '{"latency_ms":200}'

M=$(q "SELECT id FROM coupon.create_merchant('saga crash shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 1000', 'fixed', 1000, per_user_limit => NULL)")
# one coupon for each of the users u1..u400; payment n is user n's, with
# paymentKey decline_<n> for every tenth n and ok_<n> otherwise
psql_saga >/dev/null <<SQL
SELECT count(coupon.issue($P, 'u' || g)) FROM generate_series(1, 400) g;
CREATE SEQUENCE drive_seq;
CREATE FUNCTION crash_pay(m bigint) RETURNS void
LANGUAGE plpgsql AS \$f\$
DECLARE
	n bigint := nextval('drive_seq');
	cid bigint;
BEGIN
	SELECT id INTO cid FROM coupon.coupon WHERE user_id = 'u' || n;
	PERFORM coupon.pay(m, 'u' || n, 'crash-' || n, 10000,
		CASE WHEN cid IS NULL THEN NULL ELSE ARRAY[cid] END,
		CASE WHEN n % 10 = 0 THEN 'decline_' ELSE 'ok_' END || n);
END
\$f\$;
SQL
SCRIPT=$(scratch_file crash.pgbench <<'PGB'
SELECT crash_pay(:m);
PGB
)

# pgbench_backlog PER_CLIENT: that many payments from each client
pgbench_backlog() {
	local log="$SAGA_DIR/pgbench-$1.log"
	if as_pg pgbench -n -c "$CLIENTS" -j 2 -t "$1" -D m="$M" -f "$SCRIPT" "$SAGA_DB" >"$log" 2>&1; then
		ok "pgbench: $((CLIENTS * $1)) payments made by $CLIENTS clients"
	else
		not_ok "pgbench: $((CLIENTS * $1)) payments made by $CLIENTS clients"
		tail -20 "$log" | sed 's/^/#   /'
	fi
}

in_flight_now() {
	q_quiet "SELECT format('%s pending, %s authorizing, %s refunding, %s terminal',
		count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'authorizing'),
		count(*) FILTER (WHERE state = 'refunding'), count(*) FILTER (WHERE state IN ($SAGA_TERMINAL)))
		FROM coupon.payment"
}

diag "--- (a) kill -9 the saga worker"
pgbench_backlog "$PER_CLIENT_A"
wait_for "(a) the worker is busy with the backlog: calls in flight, some payments done" 60 \
	"SELECT (SELECT sum(in_flight) FROM coupon.worker_status) > 0
	    AND (SELECT count(*) FROM coupon.payment WHERE state IN ($SAGA_TERMINAL)) >= 20
	    AND (SELECT count(*) FROM coupon.payment WHERE state = 'pending') >= 20"
WPID=$(q "SELECT pid FROM coupon.worker_status WHERE pid IS NOT NULL")
PMPID=$(head -1 "$SAGA_DIR/data/postmaster.pid")
check "(a) worker_status names a live child of the postmaster" \
	"$(ps -o ppid= -p "$WPID" | tr -d ' ')" "$PMPID"
diag "(a) at the kill: $(in_flight_now)"
kill -KILL "$WPID"
# the postmaster answers a child's crash by restarting the cluster
wait_for "(a) after the crash restart a new worker runs" 60 \
	"SELECT count(*) = 1 FROM coupon.worker_status WHERE pid IS NOT NULL AND pid <> $WPID
	    AND state IN ('idle', 'working')"
diag "(a) after the restart: $(in_flight_now)"
check "(a) the postmaster is the same process" "$(head -1 "$SAGA_DIR/data/postmaster.pid")" "$PMPID"

diag "--- (b) kill -9 the postmaster"
pgbench_backlog "$PER_CLIENT_B"
CANCELLED=$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM (
	SELECT (coupon.cancel_payment(id, 'crash test refund')).id FROM (
		SELECT id FROM coupon.payment WHERE state = 'completed' ORDER BY id LIMIT $REFUNDS) s) c")
check "(b) $REFUNDS refunds requested" "$(tr ',' '\n' <<<"$CANCELLED" | grep -c .)" "$REFUNDS"
wait_for "(b) the worker is busy: calls in flight, payments pending" 60 \
	"SELECT (SELECT sum(in_flight) FROM coupon.worker_status) > 0
	    AND (SELECT count(*) FROM coupon.payment WHERE state = 'pending') >= 10"
diag "(b) at the kill: $(in_flight_now)"
postmaster_kill "(b)"
crash_restart "(b)"
diag "(b) after the restart: $(in_flight_now)"
wait_for "(b) the worker runs again" 60 \
	"SELECT count(*) = 1 FROM coupon.worker_status WHERE pid IS NOT NULL AND state IN ('idle', 'working')"

diag "--- after the crashes"
wait_terminal 180 || true
TOTAL=$(q "SELECT count(*) FROM coupon.payment")
diag "$TOTAL payments: $(q "SELECT string_agg(state || '=' || n, ', ' ORDER BY state)
	FROM (SELECT state, count(*) n FROM coupon.payment GROUP BY 1) s")"
check "all $(((PER_CLIENT_A + PER_CLIENT_B) * CLIENTS)) payments were made" \
	"$TOTAL" "$(((PER_CLIENT_A + PER_CLIENT_B) * CLIENTS))"
check "decline_* payments failed" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE payment_key LIKE 'decline%' AND state <> 'failed'")" 0
check "cancelled payments refunded in full" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE id IN ($CANCELLED) AND state = 'refunded'")" "$REFUNDS"
check "every other ok_* payment completed" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE payment_key LIKE 'ok%' AND id NOT IN ($CANCELLED)
	       AND state <> 'completed'")" 0
check "no payment needs attention" "$(q "SELECT count(*) FROM coupon.payment WHERE state = 'needs_attention'")" 0
check_invariants
wait_for "the worker goes idle" 30 "SELECT bool_and(state = 'idle' AND in_flight = 0) FROM coupon.worker_status"
saga_finish
