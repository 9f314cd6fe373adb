#!/usr/bin/env bash
# scripts/demo.sh: the end-to-end demo, on a fresh Debian 12 machine, as root.
#
# Installs what it needs, builds and installs the extension, starts a private
# cluster (postgres user, own directory and socket), runs a small shop
# scenario (two merchants, policies of each kind, a first-come-first-served
# rush of 64 concurrent clients, codes, holds confirmed and released), then
# a payment rush through the saga worker and the mock payment gateway over
# loopback (declines, a late answer resolved by the order lookup, refunds),
# prints what happened and the books, schedules the nightly jobs with
# pg_cron, settles the payments (a statement per shop), reconciles the day
# with the gateway's transaction list, and stops everything it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

prepare_run demo
PORT=${COUPON_DEMO_PORT:-$(free_port)}
trap 'mockpg_stop; cluster_stop "$WORK"; rm -rf "$WORK"' EXIT

log "starting the mock payment gateway (HTTP on loopback) and a private cluster in $WORK"
mockpg_start "$WORK" demo_sk
echo "  gateway at $MOCKPG_URL; cluster on a socket only, port $PORT"
# the saga worker connects to the shop database and calls the gateway; a
# confirm that takes longer than 1 s counts as an unknown outcome; pg_cron
# runs its jobs in the shop database
cluster_start "$WORK" "$PORT" <<CONF
coupon.database = 'shop'
cron.database_name = 'shop'
coupon.gateway_url = '$MOCKPG_URL'
coupon.gateway_secret = 'demo_sk'
coupon.gateway_timeout_ms = 1000
CONF
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

gw() {
	curl -s -u demo_sk: -H 'Content-Type: application/json' "$@"
}
log "payment rush: 300 checkouts with coupons from 32 concurrent clients"
echo "  225 at the cafe (its welcome coupon), 75 at the bookshop (reading week, half funded by the platform)"
echo "  the gateway declines 10% of cards and holds back one answer (order 7) for 3 s"
gw -X POST -d '{"decline_rate":0.1,"stall_ms":3000}' "$MOCKPG_URL/__mock/faults" >/dev/null
pg -d shop -f "$WORK/demo/payments.sql" >/dev/null
runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
	"$PGBIN/pgbench" -n -c 32 -j 2 -t 9 -f "$WORK/demo/pay.pgbench" shop 2>&1 |
	grep -E "^(tps|number of transactions actually)" | sed 's/^/  /'
pg -d shop -At -c "SELECT public.demo_pay() FROM generate_series(1, 12)" >/dev/null
wait_for_payments() {
	for _ in $(seq 1 600); do
		[ "$(pg -d shop -At -c "SELECT count(*) FROM coupon.payment
			WHERE state NOT IN ('completed', 'failed', 'refunded', 'partially_refunded', 'needs_attention')")" = 0 ] && return 0
		sleep 0.1
	done
	echo "  payments still moving after 60 s" >&2
	return 1
}
wait_for_payments
pg -d shop -At -c "SELECT format('  %s payments: %s completed, %s declined (coupons given back); the saga took %s ms from first pay() to last completion',
		count(*), count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'failed'),
		round(extract(epoch FROM max(coalesce(completed_at, failed_at)) - min(created_at)) * 1000))
	  FROM coupon.payment"

log "refunds through the saga: one full (the coupon comes back), one partial"
pg -d shop -At -c "SELECT format('  payment %s: full refund requested, state %s', id, state)
	  FROM coupon.cancel_payment((SELECT min(id) FROM coupon.payment WHERE state = 'completed'), 'customer changed their mind')"
pg -d shop -At -c "SELECT format('  payment %s: refund of 1,000 (of %s charged) requested, state %s', id, approved_amount, state)
	  FROM coupon.cancel_payment((SELECT max(id) FROM coupon.payment WHERE state = 'completed'), 'one item missing', 1000)"
wait_for_payments
pg -d shop -At -c "SELECT format('  payment %s is %s; its coupon %s is %s again', p.id, p.state, c.id, c.status)
	  FROM coupon.payment p JOIN coupon.coupon c ON c.id = p.coupon_ids[1] WHERE p.state = 'refunded'"
pg -d shop -f "$WORK/demo/books.sql"

log "the books: the gateway's own transactions against the database"
gateway_net=$(gw "$MOCKPG_URL/v1/transactions?startDate=2000-01-01&endDate=2100-01-01" |
	python3 -c 'import json,sys; t=json.load(sys.stdin); print(sum(x["amount"] if x["type"] == "APPROVE" else -x["amount"] for x in t))')
db_net=$(pg -d shop -At -c "SELECT sum(approved_amount - refunded_amount) FROM coupon.payment")
echo "  gateway: approved minus cancelled = $gateway_net"
echo "  database: approved minus refunded = $db_net"
if [ "$gateway_net" = "$db_net" ]; then
	echo "  the books match"
else
	echo "  THE BOOKS DO NOT MATCH" >&2
	exit 1
fi

log "pg_cron: the nightly settlement and the housekeeping, scheduled with coupon.schedule_jobs()"
pg -d shop -f "$WORK/demo/jobs.sql"

log "settlement: what each shop is paid"
echo "  both shops are paid T+1 (settlement_delay_days 1): the coupon-settlement job (00:10 every night)"
echo "  settles what happened before the previous midnight, so today's payments would wait for the"
echo "  night after next. A cutoff may not lie in the future (a batch is final), so the demo makes"
echo "  both shops T+0 and runs coupon.run_settlement(until => now()): every sale and refund made"
echo "  before this moment."
pg -d shop -At -f "$WORK/demo/settlement.sql"
settled=$(pg -d shop -At -c "SELECT coalesce(sum(charged), 0) FROM coupon.settlement")
echo
echo "  customers paid through the gateway, as settled: $settled; the gateway's net: $gateway_net"
if [ "$settled" != "$gateway_net" ]; then
	echo "  THE SETTLEMENT DOES NOT MATCH THE GATEWAY" >&2
	exit 1
fi

log "reconciliation: the gateway's transaction list against the database, day by day"
pg -d shop -At -c "SELECT format('  reconcile(%s): %s', d, CASE WHEN n = 0
		THEN 'the gateway''s transaction list and the database agree: 0 differences'
		ELSE n || ' differences' END)
	  FROM (SELECT d::date AS d, count(r.id) AS n
	          FROM generate_series((SELECT min(created_at) FROM coupon.payment)::date, current_date,
	                               interval '1 day') d
	          LEFT JOIN LATERAL coupon.reconcile(d::date) r ON true
	         GROUP BY 1) x ORDER BY d"
differences=$(pg -d shop -At -c "SELECT count(*) FROM coupon.reconciliation_issue")
if [ "$differences" != 0 ]; then
	pg -d shop -At -c "SELECT format('  %s %s: %s', day, kind, detail) FROM coupon.reconciliation_issue ORDER BY id"
	echo "  RECONCILIATION FOUND DIFFERENCES" >&2
	exit 1
fi
mockpg_stop

log "demo finished; stopping the cluster"
