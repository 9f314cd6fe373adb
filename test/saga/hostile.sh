#!/usr/bin/env bash
# A hostile (or broken) gateway: it answers DONE with a totalAmount that is
# not what was charged (the mock's badtotal_* key: the negative of it), or
# in another currency than the one it was asked to charge (badcurrency_*).
# The saga must never take that as an approval: the payment does not
# complete, its coupon stays held for it (never spent), every try is logged
# with why, and after max_attempts it waits in needs_attention for a human.
# Ordinary payments beside them complete, a USD merchant's charged in USD,
# and a payment's trace id reaches the gateway with its calls.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

MAX_ATTEMPTS=3
saga_start <<CONF
coupon.max_attempts = $MAX_ATTEMPTS
CONF

M=$(q "SELECT id FROM coupon.create_merchant('hostile gateway shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'two thousand', 'fixed', 2000, per_user_limit => NULL)")
C=$(q "SELECT id FROM coupon.issue($P, 'hana')")
BAD=$(q "SELECT id FROM coupon.pay($M, 'hana', 'o-bad-total', 10000, ARRAY[$C], 'badtotal_hana')")
GOOD=$(q "SELECT id FROM coupon.pay($M, 'gil', 'o-good', 5000, NULL, 'ok_gil')")

wait_state "$GOOD" completed 60
wait_state "$BAD" needs_attention 60
check "an answer DONE with a negative totalAmount never completes the payment" \
	"$(q "SELECT approved_amount || ' ' || (completed_at IS NULL) FROM coupon.payment WHERE id = $BAD")" "0 true"
check "its coupon stays held for it, never spent" \
	"$(q "SELECT c.status || ' ' || r.status FROM coupon.coupon c JOIN coupon.reservation r ON r.coupon_id = c.id
	       WHERE r.payment_id = $BAD")" "reserved held"
check_match "each answer is logged as DONE with why it was not taken" \
	"$(q "SELECT count(*) FROM coupon.payment_event WHERE payment_id = $BAD AND gateway_code = 'DONE'
	       AND error LIKE 'the gateway''s approval has no valid totalAmount (expected 8000)'")" '^[1-9][0-9]*$'
check "none of them was recorded as an approval" \
	"$(q "SELECT count(*) FROM coupon.payment_event WHERE payment_id = $BAD AND to_state IN ('approved', 'completed')")" 0
check "the ordinary payment beside it completed" \
	"$(q "SELECT approved_amount FROM coupon.payment WHERE id = $GOOD")" 5000

# currencies: the confirm says which one, and only an answer in it counts
gw_currency() {
	curl -sS -f -u "$SAGA_SECRET:" "$MOCKPG_URL/v1/payments/orders/cp-$1" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["currency"])'
}
M_USD=$(q "SELECT id FROM coupon.create_merchant('dollar shop', 'USD')")
USD=$(q "SELECT id FROM coupon.pay($M_USD, 'una', 'o-usd', 1999, NULL, 'ok_una')")
CUR=$(q "SELECT id FROM coupon.pay($M, 'cora', 'o-bad-currency', 3000, NULL, 'badcurrency_cora')")
wait_state "$USD" completed 60
check "a USD merchant's payment is charged in USD at the gateway" "$(gw_currency "$USD")" USD
check "a KRW merchant's payment is charged in KRW" "$(gw_currency "$GOOD")" KRW
wait_state "$CUR" needs_attention 60
check "an approval in another currency is never taken" \
	"$(q "SELECT approved_amount || ' ' || (completed_at IS NULL) FROM coupon.payment WHERE id = $CUR")" "0 true"
check_match "and each such answer is logged with why" \
	"$(q "SELECT count(*) FROM coupon.payment_event WHERE payment_id = $CUR AND gateway_code = 'DONE'
	       AND error = 'the gateway approved in USD, not KRW'")" '^[1-9][0-9]*$'

# trace ids: the caller's goes with every call the saga makes for the payment
T=$(q "SET coupon.trace_id = 'trace-hostile-1'; SELECT id FROM coupon.pay($M, 'tia', 'o-traced', 2500, NULL, 'ok_tia')" | tail -1)
wait_state "$T" completed 60
check "a payment made under coupon.trace_id keeps it, and so does each of its events" \
	"$(q "SELECT p.trace_id || ' ' || bool_and(e.trace_id = p.trace_id)
	        FROM coupon.payment p JOIN coupon.payment_event e ON e.payment_id = p.id
	       WHERE p.id = $T GROUP BY p.trace_id")" "trace-hostile-1 true"
check "the gateway got it with the confirm (X-Trace-Id)" \
	"$(curl -sS -f "$MOCKPG_URL/__mock/traces/trace-hostile-1" |
		python3 -c 'import json, sys; print(json.load(sys.stdin)["requests"])')" 1

saga_finish
