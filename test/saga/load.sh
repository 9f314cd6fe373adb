#!/usr/bin/env bash
# Payment saga under load: about 1,000 payments from 32 concurrent pgbench
# clients, two saga workers, and a gateway that declines 10 % of confirms
# and stalls the answer of 5 % past coupon.gateway_timeout_ms.
#
# Users are drawn at random from 200 who hold 3 coupons each; half the
# payments take one of the user's free coupons (FOR UPDATE SKIP LOCKED, so
# two clients never pick the same one), half none.  Checks: every pay()
# succeeded, every payment terminal (completed or failed, none stuck), the
# declines are exactly the failed payments and gave their coupons back, the
# timed-out ones completed through the order lookup, and the books, the
# coupons and the event log of the whole run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

CLIENTS=32
PER_CLIENT=32 # 1,024 payments
USERS=200

saga_start <<'CONF'
coupon.workers = 2
coupon.gateway_timeout_ms = 500
CONF
gw_faults '{"decline_rate":0.1,"timeout_rate":0.05,"stall_ms":1500}'

M=$(q "SELECT id FROM coupon.create_merchant('saga load shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 1000', 'fixed', 1000, per_user_limit => NULL)")
psql_saga >/dev/null <<SQL
SELECT count(coupon.issue($P, 'u' || u)) FROM generate_series(1, $USERS) u, generate_series(1, 3) k;
CREATE SEQUENCE load_seq;
CREATE TABLE load_outcome (n bigint, outcome text NOT NULL);
-- payment n for user u, with one of u's free coupons when c = 1; every
-- error is recorded, so no client aborts
CREATE FUNCTION load_pay(m bigint, u int, c int) RETURNS void
LANGUAGE plpgsql AS \$f\$
DECLARE
	n bigint := nextval('load_seq');
	cid bigint;
	st text; det text; msg text;
BEGIN
	IF c = 1 THEN
		SELECT id INTO cid FROM coupon.coupon
		 WHERE user_id = 'u' || u AND status = 'issued'
		 ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
	END IF;
	PERFORM coupon.pay(m, 'u' || u, 'load-' || n, 10000 + n,
		CASE WHEN cid IS NULL THEN NULL ELSE ARRAY[cid] END, 'ok_' || n);
	INSERT INTO load_outcome VALUES (n, 'ok');
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
	INSERT INTO load_outcome VALUES (n, st || ' ' || msg || coalesce(' ' || det, ''));
END
\$f\$;
SQL
SCRIPT=$(scratch_file load.pgbench <<'PGB'
\set u random(1, :users)
\set c random(0, 1)
SELECT load_pay(:m, :u, :c);
PGB
)

LOG="$SAGA_DIR/pgbench.log"
if as_pg pgbench -n -c "$CLIENTS" -j 4 -t "$PER_CLIENT" -D m="$M" -D users="$USERS" \
	-f "$SCRIPT" "$SAGA_DB" >"$LOG" 2>&1; then
	ok "pgbench: $CLIENTS clients without aborts"
	grep -E '^(number of transactions actually processed|tps)' "$LOG" | sed 's/^/#   /' || true
else
	not_ok "pgbench: $CLIENTS clients without aborts"
	tail -20 "$LOG" | sed 's/^/#   /'
fi
N=$((CLIENTS * PER_CLIENT))
check "every pay() succeeded" \
	"$(q "SELECT count(*) FILTER (WHERE outcome = 'ok') || '/' || count(*) FROM load_outcome")" "$N/$N"
q "SELECT '#   ' || outcome || ' x' || count(*) FROM load_outcome WHERE outcome <> 'ok' GROUP BY outcome LIMIT 5"
diag "$(q "SELECT count(*) FROM coupon.payment WHERE cardinality(coupon_ids) > 0") of $N payments with a coupon"

wait_terminal 180 || true
diag "states: $(q "SELECT string_agg(state || '=' || n, ', ' ORDER BY state)
	FROM (SELECT state, count(*) n FROM coupon.payment GROUP BY 1) s")"
check "every payment completed or failed" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE state NOT IN ('completed', 'failed')")" 0
# declined: the confirm's answer said so, or (that answer lost to the call
# timeout on a loaded machine) the lookup found the attempt ABORTED
DECLINED="SELECT DISTINCT payment_id FROM coupon.payment_event
           WHERE (step = 'confirm' AND http_status = 403 AND gateway_code = 'REJECT_CARD_PAYMENT')
              OR (step = 'lookup' AND http_status = 200 AND gateway_code = 'ABORTED')"
FAILED=$(q "SELECT count(*) FROM coupon.payment WHERE state = 'failed'")
check_match "some payments were declined (10 % of $N, got $FAILED)" "$FAILED" '^[1-9][0-9]*$'
check "the failed payments are exactly the declined ones" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE (state = 'failed') <> (id IN ($DECLINED))")" 0
check "the gateway declined as many as failed" "$(gw_stat declines)" "$FAILED"
check "declined payments released their coupons" \
	"$(q "SELECT count(*) FROM coupon.reservation WHERE payment_id IN ($DECLINED) AND status <> 'released'")" 0
TIMEOUTS=$(gw_stat timeouts)
check_match "some confirms timed out at the gateway (5 %, got $TIMEOUTS)" "$TIMEOUTS" '^[1-9][0-9]*$'
# a confirm without an answer is a timeout fault (approved, answered late)
# or, on a loaded machine, a decline that came after coupon.gateway_timeout_ms
# (the lookup then finds it ABORTED): either way the payment ends as the
# gateway decided, so every such payment the gateway did not decline completed
check "payments whose confirm got no answer and were not declined completed" \
	"$(q "SELECT count(*) FILTER (WHERE p.state = 'completed') || '/' || count(*) FROM coupon.payment p
	       WHERE p.id IN (SELECT payment_id FROM coupon.payment_event
	                       WHERE step = 'confirm' AND coalesce(http_status, 0) = 0)
	         AND p.id NOT IN ($DECLINED)")" \
	"$(q "SELECT count(DISTINCT payment_id) || '/' || count(DISTINCT payment_id) FROM coupon.payment_event
	       WHERE step = 'confirm' AND coalesce(http_status, 0) = 0 AND payment_id NOT IN ($DECLINED)")"
check "both workers took part" \
	"$(q "SELECT count(*) FROM coupon.worker_status WHERE done > 0")" 2
check_invariants
saga_finish
