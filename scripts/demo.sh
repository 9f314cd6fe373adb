#!/usr/bin/env bash
# scripts/demo.sh: the end-to-end demo, on a fresh Debian 12 machine, as root.
#
# Installs what it needs, builds and installs the extension, starts a private
# cluster (postgres user, own directory and socket), runs a small shop
# scenario (two merchants, policies of each kind, a first-come-first-served
# rush of 64 concurrent clients, codes, holds confirmed and released), shows
# the mock payment gateway answering over loopback, prints what happened and
# stops everything it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prepare_run demo
PORT=${COUPON_DEMO_PORT:-$(free_port)}
trap 'mockpg_stop; cluster_stop "$WORK"; rm -rf "$WORK"' EXIT

log "starting a private cluster in $WORK (socket only, port $PORT)"
cluster_start "$WORK" "$PORT" </dev/null
pg -d postgres -c "CREATE DATABASE shop"
cp -a "$COUPON_ROOT/demo" "$WORK/demo" && chown -R postgres:postgres "$WORK/demo"

log "two shops, four policies (fixed, percent fcfs, code, balance)"
pg -d shop -f "$WORK/demo/setup.sql" >/dev/null
pg -d shop -At -c "SELECT format('  %-24s %-8s %-7s %s', name, discount_type, issue_method,
		coalesce('total ' || total_quantity, 'unlimited')) FROM coupon.policy ORDER BY id"

flash=$(pg -d shop -At -c "SELECT id FROM public.demo_ids WHERE name = 'flash'")
clients=64
per_client=20
log "flash sale: $clients concurrent clients, $((clients * per_client)) attempts by 400 customers for 100 coupons"
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
	"$PGBIN/pgbench" -n -M prepared -c $clients -j 2 -t $per_client -D flash="$flash" \
	-f "$WORK/demo/rush.pgbench" shop 2>&1 | grep -E "^(tps|latency average|number of transactions actually)" | sed 's/^/  /'
pg -d shop -At -c "SELECT format('  issued %s of %s; stock left %s; customers holding two: %s',
		(SELECT count(*) FROM coupon.coupon WHERE policy_id = $flash),
		(SELECT total_quantity FROM coupon.policy WHERE id = $flash),
		(SELECT sum(remaining) FROM coupon.policy_stock WHERE policy_id = $flash),
		(SELECT count(*) FROM (SELECT user_id FROM coupon.coupon WHERE policy_id = $flash
							   GROUP BY user_id HAVING count(*) > 1) t))"

log "codes, checkout holds, confirmations and a release"
pg -d shop -f "$WORK/demo/checkout.sql"
pg -d shop -f "$WORK/demo/report.sql"

log "the mock payment gateway the payment saga will call (HTTP on loopback)"
mockpg_start "$WORK" demo_sk
echo "  listening at $MOCKPG_URL"
gw() {
	curl -s -u demo_sk: -H 'Content-Type: application/json' "$@"
}
# order-1001 above: 12,000 with a 2,000 coupon, so 10,000 is charged
echo "  confirm order-1001 (10,000 charged):"
gw -d '{"paymentKey":"pk_order_1001","orderId":"order-1001","amount":10000}' \
	"$MOCKPG_URL/v1/payments/confirm" | python3 -c 'import json,sys; p=json.load(sys.stdin); print("    status %s, approved %s at %s" % (p["status"], p["totalAmount"], p["approvedAt"]))'
echo "  a card the issuer refuses:"
gw -d '{"paymentKey":"decline_card","orderId":"order-3001","amount":5000}' \
	"$MOCKPG_URL/v1/payments/confirm" | python3 -c 'import json,sys; p=json.load(sys.stdin); print("    %s: %s" % (p["code"], p["message"]))'
echo "  a partial refund of 3,000:"
gw -d '{"cancelReason":"one item returned","cancelAmount":3000}' \
	"$MOCKPG_URL/v1/payments/pk_order_1001/cancel" | python3 -c 'import json,sys; p=json.load(sys.stdin); print("    status %s, balance %s" % (p["status"], p["balanceAmount"]))'
echo "  the gateway's counters:"
curl -s "$MOCKPG_URL/__mock/stats" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("    " + ", ".join("%s %s" % (k, s[k]) for k in ("confirms", "approvals", "declines", "cancels", "total_approved_amount", "total_canceled_amount")))'
mockpg_stop

log "demo finished; stopping the cluster"
