#!/usr/bin/env bash
# reconcile(): the day's payments against the gateway's transaction list.
#
# 36 payments go through the real saga and the real mock gateway (every
# sixth declined by its paymentKey, half of them with a coupon), then 4 full
# refunds, 4 partial ones and 2 partial refunds followed by the rest.  On
# these clean books reconcile(current_date) finds nothing.  Then the books
# are damaged on both sides, one difference of each kind: a payment deleted
# from the database (missing_in_database), an approved amount altered
# (amount_mismatch), two approvals only the gateway saw, one with an orderId
# of ours and one not (missing_in_database), a declined payment made to
# look approved (missing_at_gateway), and a partial refund made at the
# gateway only (status_mismatch).  reconcile must find exactly these,
# store them in reconciliation_issue, replace them when run again for the
# day, leave other days alone, and, with the gateway down, raise 08006 and
# write nothing.  While it is down, two payments take the saga's roundabout
# paths (cancelled while authorizing; voided after a hold was released by
# hand): once it is back, both are charged and refunded at the gateway, and
# reconcile must find nothing new for them.
#
# The cluster runs in a fixed-offset time zone where it is about noon, so
# "today" is the same day from the first payment to the last check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<CONF
coupon.workers = 2
timezone = '$(noon_timezone)'
CONF

M=$(q "SELECT id FROM coupon.create_merchant('reconcile shop', 'KRW', 1000, 300)")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 1000', 'fixed', 1000, per_user_limit => NULL)")

# one finding per line: kind|order_id|payment_id|gateway_amount|database_amount
FINDING="concat_ws('|', kind, order_id, coalesce(payment_id::text, ''),
                   coalesce(gateway_amount::text, ''), coalesce(database_amount::text, ''))"
findings_of() {
	q "SELECT $FINDING FROM ($1) f" | LC_ALL=C sort
}
stored() {
	findings_of "SELECT * FROM coupon.reconciliation_issue WHERE day = current_date"
}

diag "--- 36 payments through the saga"
q "CREATE TABLE coupons AS SELECT g, (coupon.issue($P, 'u' || g)).id FROM generate_series(2, 36, 2) g"
q "SELECT count(*) FROM generate_series(1, 36) g LEFT JOIN coupons c USING (g),
     LATERAL coupon.pay($M, 'u' || g, 'r-' || g, 5000 + 250 * g, CASE WHEN c.id IS NOT NULL THEN ARRAY[c.id] END,
                        CASE WHEN g % 6 = 0 THEN 'decline_r' || g ELSE 'ok_r' || g END)" >/dev/null
wait_terminal 120
check "30 completed, 6 declined" \
	"$(q "SELECT count(*) FILTER (WHERE state = 'completed') || ' ' || count(*) FILTER (WHERE state = 'failed')
	        FROM coupon.payment")" "30 6"

mapfile -t C < <(q "SELECT id FROM coupon.payment WHERE state = 'completed' ORDER BY id")
for i in 0 1 2 3; do
	q "SELECT 1 FROM coupon.cancel_payment(${C[$i]}, 'full refund')" >/dev/null
done
for i in 4 5 6 7 8 9; do
	q "SELECT 1 FROM coupon.cancel_payment(${C[$i]}, 'partial refund', 700 + $i)" >/dev/null
done
wait_for "the partial refunds went through" 60 \
	"SELECT count(*) = 6 FROM coupon.payment WHERE id IN (${C[4]}, ${C[5]}, ${C[6]}, ${C[7]}, ${C[8]}, ${C[9]})
	    AND state = 'partially_refunded'"
for i in 8 9; do
	q "SELECT 1 FROM coupon.cancel_payment(${C[$i]}, 'the rest')" >/dev/null
done
wait_terminal 60
check "refunds: 6 refunded (4 at once, 2 after a partial refund), 4 partially refunded" \
	"$(q "SELECT count(*) FILTER (WHERE state = 'refunded') || ' ' || count(*) FILTER (WHERE state = 'partially_refunded')
	        FROM coupon.payment")" "6 4"
check "the refund ledger has 12 refunds" "$(q "SELECT count(*) FROM coupon.payment_refund")" 12
check_books

diag "--- clean books"
# what reconcile compares: the day's transactions at the gateway, and ours
check "the gateway lists the day's 30 approvals and 12 cancels" \
	"$(q "SELECT count(*) FROM coupon.gateway_transactions(current_date::timestamptz,
	                            (current_date + 1)::timestamptz - interval '1 microsecond')")" 42
check "reconcile(current_date) on clean books finds nothing" \
	"$(q "SELECT count(*) FROM coupon.reconcile(current_date)")" 0
check "and stores nothing" "$(q "SELECT count(*) FROM coupon.reconciliation_issue")" 0

diag "--- damage on both sides"
X=${C[10]}
Y=${C[11]}
W=${C[12]}
W_KEY=$(q "SELECT payment_key FROM coupon.payment WHERE id = $W")
Z=$(q "SELECT min(id) FROM coupon.payment WHERE state = 'failed'")
X_AMOUNT=$(q "SELECT approved_amount FROM coupon.payment WHERE id = $X")
Y_AMOUNT=$(q "SELECT approved_amount FROM coupon.payment WHERE id = $Y")
Z_AMOUNT=$(q "SELECT amount - discount FROM coupon.payment WHERE id = $Z")
# (1) the database lost a payment (its events and reservations stay)
check "(1) payment $X deleted from the database" \
	"$(q "WITH d AS (DELETE FROM coupon.payment WHERE id = $X RETURNING 1) SELECT count(*) FROM d")" 1
# (2) the database has another amount
check "(2) payment $Y's approved amount lowered by 100" \
	"$(q "WITH u AS (UPDATE coupon.payment SET approved_amount = approved_amount - 100 WHERE id = $Y RETURNING 1)
	      SELECT count(*) FROM u")" 1
# (3) approvals only the gateway saw: one with an orderId of ours, one not
confirm_at_gateway() {
	curl -sS -f -u "$SAGA_SECRET:" -H 'Content-Type: application/json' \
		-d "{\"paymentKey\":\"$1\",\"orderId\":\"$2\",\"amount\":$3}" \
		"$MOCKPG_URL/v1/payments/confirm" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'
}
check "(3) the gateway approves orderId cp-999999 directly" "$(confirm_at_gateway stray_cp cp-999999 4321)" DONE
check "(3) the gateway approves orderId stray-1 directly" "$(confirm_at_gateway stray_1 stray-1 1234)" DONE
# (4) a declined payment made to look approved and completed
check "(4) declined payment $Z made to look approved for $Z_AMOUNT" \
	"$(q "WITH u AS (UPDATE coupon.payment SET state = 'completed', approved_amount = amount - discount,
	                        approved_at = now(), completed_at = now(), failed_at = NULL, last_error = NULL
	                  WHERE id = $Z AND state = 'failed' RETURNING 1)
	      SELECT count(*) FROM u")" 1
# (5) a refund only the gateway made
check "(5) the gateway refunds 500 of payment $W directly" \
	"$(curl -sS -f -u "$SAGA_SECRET:" -H 'Content-Type: application/json' \
		-d '{"cancelReason":"refunded by phone","cancelAmount":500}' "$MOCKPG_URL/v1/payments/$W_KEY/cancel" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')" PARTIAL_CANCELED

WANT=$(LC_ALL=C sort <<EOF
missing_in_database|cp-$X|$X|$X_AMOUNT|
amount_mismatch|cp-$Y|$Y|$Y_AMOUNT|$((Y_AMOUNT - 100))
missing_in_database|cp-999999|999999|4321|
missing_in_database|stray-1||1234|
missing_at_gateway|cp-$Z|$Z||$Z_AMOUNT
status_mismatch|cp-$W|$W|500|0
EOF
)

diag "--- reconcile finds each difference, and nothing else"
q "CREATE TABLE run1 AS SELECT * FROM coupon.reconcile(current_date)"
check "reconcile returns the 6 differences" "$(findings_of "SELECT * FROM run1")" "$WANT"
check "every finding has a one-sentence detail and the day" \
	"$(q "SELECT count(*) FROM run1 WHERE length(detail) > 20 AND day = current_date")" 6
q "SELECT format('#   %s', detail) FROM run1 ORDER BY order_id"
check "reconciliation_issue stores the same 6" "$(stored)" "$WANT"
check "reconciliation_issue holds the rows reconcile returned" \
	"$(q "SELECT count(*) FROM coupon.reconciliation_issue r JOIN run1 USING (id)")" 6

# the gateway's list read in pages of 3 (many pages, the last one short or
# empty) is the list read in one page, and reconciles to the same findings
check "the transaction list in pages of 3 is the list in one page" \
	"$(q "SET coupon.reconcile_page_size = 3;
	      CREATE TEMP TABLE paged AS SELECT * FROM coupon.gateway_transactions(current_date, current_date + 1);
	      SET coupon.reconcile_page_size = 10000;
	      CREATE TEMP TABLE whole AS SELECT * FROM coupon.gateway_transactions(current_date, current_date + 1);
	      SELECT count(*) > 6 AND count(*) = (SELECT count(*) FROM whole)
	             AND count(DISTINCT transaction_key) = count(*)
	             AND NOT EXISTS (SELECT * FROM paged EXCEPT ALL SELECT * FROM whole)
	        FROM paged")" t
check "reconcile reading pages of 3 finds the same 6 differences" \
	"$(q "SET coupon.reconcile_page_size = 3;
	      CREATE TEMP TABLE run_paged AS SELECT * FROM coupon.reconcile(current_date);
	      SELECT string_agg(kind || ':' || order_id, ',' ORDER BY kind, order_id) FROM run_paged")" \
	"$(q "SELECT string_agg(kind || ':' || order_id, ',' ORDER BY kind, order_id) FROM run1")"
q "CREATE TABLE run2 AS SELECT * FROM coupon.reconcile(current_date)"
check "run again for the day: the same 6 differences" "$(findings_of "SELECT * FROM run2")" "$WANT"
check "run again: the day's findings are replaced (6 rows, all new, no duplicates)" \
	"$(q "SELECT count(*) || ' ' || count(DISTINCT (kind, order_id)) || ' '
	             || bool_and(id > (SELECT max(id) FROM run1))
	        FROM coupon.reconciliation_issue")" "6 6 true"
check "reconcile of another day (yesterday) finds nothing there" \
	"$(q "SELECT count(*) FROM coupon.reconcile(current_date - 1)")" 0
check "and leaves today's findings alone" "$(stored)" "$WANT"
check "coupon_admin may run reconcile and read the findings" \
	"$(q "SET ROLE coupon_admin; SELECT count(*) FROM coupon.reconcile(current_date);
	      SELECT count(*) FROM coupon.reconciliation_issue")" "6
6"

diag "--- the gateway down"
BEFORE=$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM coupon.reconciliation_issue")
saga_mockpg_kill
out=$(q "SELECT try_full('SELECT coupon.reconcile(current_date)')")
diag "  $out"
check_match "reconcile with the gateway down raises 08006, saying the gateway did not answer and nothing was written" \
	"$out" '^08006 \| the payment gateway did not answer: .+ \| .*nothing was written'
check "reconciliation_issue is unchanged" \
	"$(q "SELECT string_agg(id::text, ',' ORDER BY id) FROM coupon.reconciliation_issue")" "$BEFORE"
check_match "reconcile of another day raises 08006 too" \
	"$(q "SELECT try_full('SELECT coupon.reconcile(current_date - 1)')")" '^08006 \| '

# meanwhile two payments take the saga's roundabout paths, both charged and
# refunded at the gateway: one cancelled while its authorization is
# pending, one voided because its coupon hold was released by hand before
# the approval came back (the spend fails, the charge is cancelled)
C_A=$(q "SELECT id FROM coupon.issue($P, 'ua')")
C_V=$(q "SELECT id FROM coupon.issue($P, 'uv')")
# (in one transaction, so that the worker claims both before failures open
# the circuit breaker)
read -r A V <<<"$(q "SELECT (coupon.pay($M, 'ua', 'r-a', 8000, ARRAY[$C_A], 'ok_ra')).id || ' ' ||
                          (coupon.pay($M, 'uv', 'r-v', 8000, ARRAY[$C_V], 'ok_rv')).id")"
wait_for "down: both new payments sent their confirm and wait (authorizing)" 60 \
	"SELECT count(*) = 2 FROM coupon.payment WHERE id IN ($A, $V) AND state = 'authorizing' AND authorized_at IS NOT NULL"
check "down: payment $A cancelled while authorizing (the refund is recorded for later)" \
	"$(q "SELECT state FROM coupon.cancel_payment($A, 'changed my mind')")" authorizing
check "down: payment $V's coupon hold released by hand" \
	"$(q "WITH u AS (UPDATE coupon.reservation SET status = 'released' WHERE payment_id = $V RETURNING 1)
	      SELECT count(*) FROM u")" 1
saga_mockpg_restart
wait_state "$A" refunded 60
wait_state "$V" failed 60
check "cancelled while authorizing: charged, then refunded in full" "$(gw_order "cp-$A")" "APPROVE 7000 ok_ra, CANCEL 7000 ok_ra"
check "voided: charged, then the charge cancelled" "$(gw_order "cp-$V")" "APPROVE 7000 ok_rv, CANCEL 7000 ok_rv"
# the charge given back by the void counts as refunded, as check_amounts in
# lib.bash expects of every failed payment; reconcile reads it from the
# refund ledger (payment_refund), which follows refunded_amount
check "voided: the database says what the gateway says, refunded_amount = approved_amount" \
	"$(q "SELECT approved_amount || '/' || refunded_amount FROM coupon.payment WHERE id = $V")" "7000/7000"

q "CREATE TABLE run3 AS SELECT * FROM coupon.reconcile(current_date)"
check "once the gateway is back (journal kept), reconcile finds the same 6 again" \
	"$(findings_of "SELECT * FROM run3 WHERE payment_id IS NULL OR payment_id NOT IN ($A, $V)")" "$WANT"
check "nothing for the payment cancelled while authorizing" \
	"$(findings_of "SELECT * FROM run3 WHERE payment_id = $A")" ""
check "nothing for the voided payment" "$(findings_of "SELECT * FROM run3 WHERE payment_id = $V")" ""
check "and they replaced the earlier ones" \
	"$(q "SELECT (count(*) = (SELECT count(*) FROM run3)) || ' ' || bool_and(id > (SELECT max(id) FROM run2))
	        FROM coupon.reconciliation_issue")" "true true"

saga_finish
