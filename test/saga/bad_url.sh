#!/usr/bin/env bash
# A misconfigured gateway URL never stops the saga workers.  The cluster
# starts with coupon.gateway_url = 'ftp://...' in postgresql.conf: the
# setting is refused (a WARNING, the empty default stays), the workers run,
# do their local steps (a lapsed hold is expired) and leave a payment
# pending, calling nothing.  ALTER SYSTEM with another bad URL is refused
# and changes nothing; with the gateway's URL and a reload, the same
# workers pick the payment up and complete it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<'CONF'
coupon.gateway_url = 'ftp://gateway.example/'
CONF

check "the bad URL in postgresql.conf was refused at start, the empty default stands" \
	"$(q "SHOW coupon.gateway_url")" ""
check "the server says why" \
	"$(grep -c 'invalid value for parameter "coupon.gateway_url"' "$SAGA_DIR/server.log")" 1

M=$(q "SELECT id FROM coupon.create_merchant('bad url shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'ten', 'fixed', 1000, per_user_limit => NULL)")
C=$(q "SELECT id FROM coupon.issue($P, 'bea')")
HOLD=$(q "SELECT id FROM coupon.reserve($C, 'bea', $M, 'cart-1', 5000, interval '1 second')")
PAY=$(q "SELECT id FROM coupon.pay($M, 'bea', 'o-1', 5000, NULL, 'ok_bea')")
wait_for "the workers still do their local steps: the lapsed hold is expired" 30 \
	"SELECT status = 'expired' FROM coupon.reservation WHERE id = $HOLD"
check "the payment waits, nothing was sent" \
	"$(q "SELECT state || ' ' || (SELECT count(*) FROM coupon.payment_event e
	                               WHERE e.payment_id = p.id AND e.http_status IS NOT NULL)
	      FROM coupon.payment p WHERE id = $PAY")" "pending 0"
check "every worker is alive, shown in worker_status as having no gateway" \
	"$(q "SELECT count(*) FROM coupon.worker_status WHERE state = 'no_gateway'")" \
	"$(q "SHOW coupon.workers")"
check_match "ALTER SYSTEM with another bad URL is refused" \
	"$(q "ALTER SYSTEM SET coupon.gateway_url = 'gopher://x'" 2>&1 || true)" \
	'invalid value for parameter "coupon.gateway_url"'
check "and leaves postgresql.auto.conf without it" \
	"$(grep -c gateway_url "$SAGA_DIR/data/postgresql.auto.conf" || true)" 0
saga_conf coupon.gateway_url "$MOCKPG_URL"
wait_state "$PAY" completed 60
check "with the gateway's URL the same workers complete it" \
	"$(q "SELECT approved_amount FROM coupon.payment WHERE id = $PAY")" 5000

saga_finish
