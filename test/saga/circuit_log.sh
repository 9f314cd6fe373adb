#!/usr/bin/env bash
# A gateway outage writes exactly one LOG line when the circuit opens and
# one when it closes, however many workers and calls fail meanwhile.
#
# Four workers, the circuit opening after 3 failures, a 300 ms cool-down
# (so many probes fail while the gateway is out), and a 500 ms call
# timeout.  Two outages: the mock's latency_ms fault switch holds every
# request (lookups included) past the timeout, then the mock is killed
# (connections refused) and restarted with its journal.  During each,
# payments keep coming and time out; the server log gets one "circuit
# opened" line, and one "circuit closed" line once the gateway answers and
# the payments complete.  The books agree at the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<CONF
coupon.workers = 4
coupon.circuit_failures = 3
coupon.circuit_cooldown_ms = 300
coupon.gateway_timeout_ms = 500
coupon.max_attempts = 1000
coupon.retry_base_ms = 50
coupon.retry_max_ms = 300
CONF

LOG="$SAGA_DIR/server.log"
OPENED="coupon: gateway circuit opened after"
CLOSED="coupon: gateway circuit closed after"
lines() {
	grep -cF -- "$1" "$LOG" || true
}

M=$(q "SELECT id FROM coupon.create_merchant('circuit log shop')")
N=0
# pay COUNT: that many payments of 1000 without coupons; their ids in PAID
pay_some() {
	local ids=()
	for _ in $(seq 1 "$1"); do
		N=$((N + 1))
		ids+=("$(q "SELECT id FROM coupon.pay($M, 'user-$N', 'o-$N', 1000, NULL, 'ok_cl_$N')")")
	done
	PAID=$(IFS=,; echo "${ids[*]}")
}

pay_some 4
wait_for "before any outage: the first payments complete" 60 \
	"SELECT count(*) = 4 FROM coupon.payment WHERE state = 'completed'"
check "before any outage: no circuit line in the server log" "$(lines "$OPENED") $(lines "$CLOSED")" "0 0"

# outage ROUND: the gateway is out (by the caller), payments keep coming;
# then it comes back (by $1, a command) and everything completes
outage() {
	local round=$1 back=$2 failures_before
	failures_before=$(q "SELECT coalesce(sum(errors), 0) FROM coupon.worker_status")
	pay_some 12
	wait_for "outage $round: the circuit opens" 60 \
		"SELECT bool_and(circuit <> 'closed') FROM coupon.worker_status" || { show_workers; return 1; }
	# several cool-downs pass: probes go out and fail, each reopening it
	wait_for "outage $round: at least 6 more calls failed (probes included)" 60 \
		"SELECT sum(errors) >= $failures_before + 6 FROM coupon.worker_status" || show_workers
	pay_some 4
	sleep 1
	check "outage $round: still out, one 'circuit opened' line per outage so far, no new 'closed'" \
		"$(lines "$OPENED") $(lines "$CLOSED")" "$round $((round - 1))"
	$back
	wait_for "outage $round: once the gateway is back, every payment completes" 120 \
		"SELECT count(*) = 0 FROM coupon.payment WHERE state <> 'completed'" || { show_workers; return 1; }
	wait_for "outage $round: the circuit is closed" 30 \
		"SELECT bool_and(circuit = 'closed') FROM coupon.worker_status"
	sleep 1
	check "outage $round: one 'circuit opened' and one 'circuit closed' line per outage" \
		"$(lines "$OPENED") $(lines "$CLOSED")" "$round $round"
	diag "outage $round: $(q "SELECT sum(errors) - $failures_before FROM coupon.worker_status") calls failed"
}

diag "--- outage 1: every request held past the call timeout (latency_ms fault)"
gw_faults '{"latency_ms":2000}'
latency_off() { gw_faults '{"latency_ms":0}'; }
outage 1 latency_off

diag "--- outage 2: the gateway killed (connections refused), then restarted"
saga_mockpg_kill
outage 2 saga_mockpg_restart

check_match "the lines say how many failures opened it and how long it was open" \
	"$(grep -F "coupon: gateway circuit" "$LOG" | sed 's/.*LOG: *//' | tr '\n' '|')" \
	'^(coupon: gateway circuit opened after [0-9]+ failed calls in a row\|coupon: gateway circuit closed after [0-9]+\.[0-9] s open\|){2}$'
check_invariants
saga_finish
