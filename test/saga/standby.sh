#!/usr/bin/env bash
# The saga workers and a hot standby: none runs there (they start when
# recovery has finished; no writes, no gateway calls) and worker_status
# says 'standby'; after promotion they start and drive the payments the old
# primary left behind and new ones.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start </dev/null
PRIMARY_HOST=$PGHOST PRIMARY_PORT=$PGPORT

q "SELECT coupon.create_merchant('standby shop')" >/dev/null
id=$(q "SELECT id FROM coupon.pay((SELECT min(id) FROM coupon.merchant), 'sam', 'before', 5000, NULL, 'ok_before')")
wait_state "$id" completed 60

# the worker shows itself in pg_stat_activity, and sweeps holds that lapsed
check "pg_stat_activity shows the saga worker" \
	"$(q "SELECT string_agg(backend_type || '/' || application_name, ',') FROM pg_stat_activity
	      WHERE backend_type = 'coupon saga worker'")" "coupon saga worker/coupon saga worker 1"
q "SELECT coupon.create_policy((SELECT min(id) FROM coupon.merchant), 'ten', 'fixed', 1000)" >/dev/null
q "SELECT coupon.issue((SELECT min(id) FROM coupon.policy), 'sam')" >/dev/null
hold=$(q "SELECT id FROM coupon.reserve((SELECT min(id) FROM coupon.coupon), 'sam', (SELECT min(id) FROM coupon.merchant),
	'cart-1', 5000, interval '1 second')")
wait_for "the worker expires a lapsed hold (no payment owns it)" 30 \
	"SELECT status = 'expired' FROM coupon.reservation WHERE id = $hold"

# a payment the old primary never gets to: due only in a day
left=$(q "BEGIN;
	SELECT id FROM coupon.pay((SELECT min(id) FROM coupon.merchant), 'sam', 'left-behind', 7000, NULL, 'ok_left');
	UPDATE coupon.payment SET next_attempt_at = now() + interval '1 day' WHERE order_id = 'left-behind';
	COMMIT;" | head -1)

# a streaming standby of it, socket only, in a directory of its own
STANDBY="$SAGA_DIR/standby"
mkdir -p "$STANDBY/sock" && chown -R postgres:postgres "$STANDBY"
runuser -u postgres -- "$PGBIN/pg_basebackup" -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres \
	-D "$STANDBY/data" -R -X stream -c fast >"$STANDBY/basebackup.log" 2>&1
STANDBY_PORT=$(free_port)
cat >>"$STANDBY/data/postgresql.conf" <<CONF
port = $STANDBY_PORT
unix_socket_directories = '$STANDBY/sock'
hot_standby = on
CONF
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STANDBY/data" -l "$STANDBY/server.log" -w -t 60 start >/dev/null
stop_standby() {
	[ -f "$STANDBY/data/postmaster.pid" ] &&
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STANDBY/data" -m fast -w stop >/dev/null 2>&1 || true
}
trap 'rc=$?; stop_standby; (exit $rc); saga_cleanup' EXIT

on_standby() {
	PGHOST="$STANDBY/sock" PGPORT=$STANDBY_PORT "$@"
}
check "the standby is in recovery" "$(on_standby q "SELECT pg_is_in_recovery()")" "t"
check "worker_status on the standby says standby" \
	"$(on_standby q "SELECT bool_and(state = 'standby') FROM coupon.worker_status")" "t"
check "no saga worker runs on the standby" \
	"$(on_standby q "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'coupon saga worker'")" "0"
check "the standby has the left-behind payment, still pending" \
	"$(on_standby q "SELECT state FROM coupon.payment WHERE id = $left")" "pending"
check "the standby's worker did nothing" "$(on_standby q "SELECT sum(done) FROM coupon.worker_status")" "0"

# the old primary goes away for good; the standby takes over
cluster_stop "$SAGA_DIR"
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$STANDBY/data" -w promote >/dev/null
check "the promoted server is out of recovery" "$(on_standby q "SELECT pg_is_in_recovery()")" "f"
on_standby wait_for "after promotion the worker resumes" 60 \
	"SELECT bool_and(state IN ('idle', 'working')) FROM coupon.worker_status"
on_standby q "UPDATE coupon.payment SET next_attempt_at = now() WHERE id = $left" >/dev/null
PGHOST="$STANDBY/sock" PGPORT=$STANDBY_PORT wait_state "$left" completed 60
new=$(on_standby q "SELECT id FROM coupon.pay((SELECT min(id) FROM coupon.merchant), 'sam', 'after', 3000, NULL, 'ok_after')")
PGHOST="$STANDBY/sock" PGPORT=$STANDBY_PORT wait_state "$new" completed 60
check "the gateway approved each payment once" \
	"$(gw_stat approvals)" "3"

saga_finish
