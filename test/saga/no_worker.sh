#!/usr/bin/env bash
# Payment saga without background workers (coupon.workers = 0): the steps
# run in the calling backend through process_payments().
#
# First one caller drives a payment of each kind (ok, decline, timeout) to
# its end.  Then 4 callers run process_payments(10) at once, in loops, over
# 100 payments while the gateway answers after 100 ms: claims must never
# overlap, so every payment's confirm reaches the gateway exactly once (the
# mock counts the confirms it got), and the books, the coupons and the
# event log hold.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<'CONF'
coupon.workers = 0
coupon.gateway_timeout_ms = 1000
CONF
check "no worker runs" "$(q "SELECT count(*) FROM coupon.worker_status WHERE pid IS NOT NULL")" 0

M=$(q "SELECT id FROM coupon.create_merchant('saga no-worker shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 1000', 'fixed', 1000, per_user_limit => NULL)")

# pay_one N KEY: a payment of user uN with a fresh coupon; its id
pay_one() {
	local c
	c=$(q "SELECT id FROM coupon.issue($P, 'u$1')")
	q "SELECT id FROM coupon.pay($M, 'u$1', 'nw-$1', 10000, ARRAY[$c], '$2')"
}

# drive SECONDS: call process_payments() until every payment is terminal
drive() {
	local deadline=$(($(date +%s) + $1)) steps=0 n
	while [ "$(q "SELECT count(*) FROM coupon.payment WHERE state NOT IN ($SAGA_TERMINAL)")" != 0 ]; do
		if [ "$(date +%s)" -ge "$deadline" ]; then
			echo "timeout after $steps steps"
			return
		fi
		n=$(q "SELECT coupon.process_payments(100)")
		steps=$((steps + n))
		[ "$n" != 0 ] || sleep 0.2 # nothing due yet (backoff)
	done
	echo "done"
}

gw_faults '{"stall_ms":3000}'
OK=$(pay_one 1 ok_1)
DECLINE=$(pay_one 2 decline_2)
TIMEOUT=$(pay_one 3 timeout_3)
sleep 1 # (had there been a worker, it would have moved them by now)
check "without a worker nothing moves by itself" \
	"$(q "SELECT string_agg(state, ',') FROM coupon.payment")" "pending,pending,pending"
check "process_payments() drives them all to their end" "$(drive 60)" done
check "ok completed, decline failed, timeout completed (through the lookup)" \
	"$(q "SELECT string_agg(state, ',' ORDER BY id) FROM coupon.payment WHERE id IN ($OK, $DECLINE, $TIMEOUT)")" \
	"completed,failed,completed"
check "the steps ran in the calling backend" \
	"$(q "SELECT string_agg(DISTINCT actor, ',') FROM coupon.payment_event WHERE step IN ('confirm', 'lookup')")" backend
check "the timed-out payment was approved once" "$(gw_order "cp-$TIMEOUT")" "APPROVE 9000 timeout_3"

diag "--- 4 concurrent process_payments() callers, 100 payments"
gw_faults '{"stall_ms":30000,"latency_ms":100}'
# (paymentKeys are unique per payment at the gateway: ok_c<n>, not ok_<n> again)
psql_saga >/dev/null <<SQL
SELECT coupon.issue($P, 'c' || g) FROM generate_series(1, 100) g;
SELECT coupon.pay($M, c.user_id, 'nwc-' || g, 10000, ARRAY[c.id],
                  CASE WHEN g % 10 = 0 THEN 'decline_c' ELSE 'ok_c' END || g)
  FROM generate_series(1, 100) g JOIN coupon.coupon c ON c.user_id = 'c' || g;
SQL
CALLERS=()
for i in 1 2 3 4; do
	(
		deadline=$(($(date +%s) + 60))
		while [ "$(date +%s)" -lt "$deadline" ] &&
			[ "$(q_quiet "SELECT count(*) FROM coupon.payment WHERE state NOT IN ($SAGA_TERMINAL)")" != 0 ]; do
			q "SELECT coupon.process_payments(10)" >/dev/null || exit 1
		done
	) &
	CALLERS+=($!)
	SAGA_BG_PIDS+=($!)
done
rc=0
for pid in "${CALLERS[@]}"; do
	wait "$pid" || rc=1
done
check "no process_payments() call failed" "$rc" 0
wait_terminal 60 || true
check "100 payments: 90 completed, 10 failed" \
	"$(q "SELECT count(*) FILTER (WHERE state = 'completed') || ',' || count(*) FILTER (WHERE state = 'failed')
	       FROM coupon.payment WHERE order_id LIKE 'nwc-%'")" "90,10"
check "every payment's confirm was sent exactly once" \
	"$(q "SELECT count(*) FROM coupon.payment p WHERE p.order_id LIKE 'nwc-%'
	       AND (SELECT count(*) FROM coupon.payment_event e WHERE e.payment_id = p.id AND e.step = 'confirm') <> 1")" 0
check "the gateway got exactly one confirm per payment (no double work)" \
	"$(gw_stat confirms)" "$(q "SELECT count(*) FROM coupon.payment_event WHERE step = 'confirm'")"
check_invariants
saga_finish
