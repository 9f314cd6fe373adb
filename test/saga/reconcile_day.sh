#!/usr/bin/env bash
# reconcile() on a busy day, and on a transaction list it cannot read.
#
# wrk drives the mock gateway's confirm endpoint (bench/mockpg/confirm.lua:
# orders ord-*, none of them a payment here) until the day holds at least
# a million approvals.  reconcile(current_date) must read the whole list,
# page by page, and find every approval as missing_in_database: as many
# findings as the gateway counts approvals, their amounts summing to the
# gateway's own total, each order once.  Before 0.8 the list was one jsonb
# value, which passes PostgreSQL's 256 MB limit near a million.
#
# Then the mock's list_fault switch makes the gateway answer 200 with a body
# that is not a readable list (not JSON, not an array, a transaction without
# its key, a negative amount): reconcile raises 58000, says why, and leaves
# the day's findings as they were.
#
# The cluster runs in a fixed-offset time zone where it is about noon, so
# "today" is the same day from the first approval to the last check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

TARGET=${RECONCILE_DAY_TRANSACTIONS:-1000000}
command -v wrk >/dev/null || { echo "Bail out! wrk is not installed"; exit 2; }

saga_start <<CONF
coupon.workers = 1
timezone = '$(noon_timezone)'
work_mem = '64MB'
CONF

diag "--- $TARGET approvals at the gateway"
round=0
while [ "$(gw_stat approvals)" -lt "$TARGET" ]; do
	round=$((round + 1))
	MOCKPG_AUTH="Basic $(printf '%s:' "$SAGA_SECRET" | base64 -w0)" MOCKPG_RUN="day$round" \
		wrk -t 2 -c 32 -d 10s -s "$COUPON_ROOT/bench/mockpg/confirm.lua" "$MOCKPG_URL" >"$SAGA_DIR/wrk.out"
	check "wrk round $round: every confirm approved" "$(sed -n 's/^non-200 answers: //p' "$SAGA_DIR/wrk.out")" 0
	[ "$round" -lt 100 ] || break
done
APPROVALS=$(gw_stat approvals)
TOTAL=$(gw_stat total_approved_amount)
diag "  the gateway holds $APPROVALS approvals for $TOTAL in all"

diag "--- reconcile reads the whole day"
t0=$(date +%s)
check "reconcile(current_date) finds each approval, once, with the gateway's amounts" \
	"$(q "SELECT count(*) || ' ' || count(DISTINCT order_id) || ' ' || sum(gateway_amount) || ' '
	             || count(*) FILTER (WHERE kind <> 'missing_in_database')
	        FROM coupon.reconcile(current_date)")" "$APPROVALS $APPROVALS $TOTAL 0"
diag "  reconcile of $APPROVALS transactions took $(($(date +%s) - t0)) s"
check "reconciliation_issue stores them" \
	"$(q "SELECT count(*) FROM coupon.reconciliation_issue WHERE day = current_date")" "$APPROVALS"

diag "--- a list it cannot read"
for fault in not_json:'it is not JSON' not_array:'it is not an array' \
	no_key:'a transaction lacks its transactionKey, orderId or type' \
	bad_amount:"a transaction's amount is not a whole number"; do
	gw_faults "{\"list_fault\":\"${fault%%:*}\"}"
	out=$(q "SELECT try_full('SELECT coupon.reconcile(current_date)')")
	diag "  $out"
	check_match "list_fault ${fault%%:*}: reconcile raises 58000, saying why, and that nothing was written" \
		"$out" "^58000 \\| the payment gateway's transaction list could not be read: ${fault#*:}.* \\| .*nothing was written"
done
gw_faults '{"list_fault":"none"}'
check "the day's findings are as they were" \
	"$(q "SELECT count(*) FROM coupon.reconciliation_issue WHERE day = current_date")" "$APPROVALS"

saga_finish
