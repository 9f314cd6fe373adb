# test/saga/lib.bash: shared by the payment saga tests in this directory
# (sourced, not run: scripts/test.sh runs only *.sh).
#
# Each test starts its own world: the real mock gateway (mockpg/coupon-mockpg,
# loopback only, with a journal) and a private cluster (socket only) whose
# saga workers call it, in a directory of its own under $WORK (or a fresh
# one).  Everything started here is stopped by the EXIT trap.
#
# Nothing is decided by timing: waits poll until a condition holds, and a
# deadline that passes is a failure.  Results are TAP lines (test/lib.bash);
# the script exits non-zero when any check failed.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../lib.bash"

SAGA_START=$(date +%s)
SAGA_DB=saga
SAGA_SECRET="test_sk_saga_$$"
SAGA_BG_PIDS=()
SAGA_FINISHED=0
SAGA_TERMINAL="'completed', 'failed', 'refunded', 'partially_refunded', 'needs_attention'"
MOCKPG_PID=
MOCKPG_URL=
REDIS_PID=
REDIS_PORT=
MOCKPG_PORT=

[ "$(id -u)" = 0 ] || { echo "Bail out! run as root (clusters run as the postgres user)"; exit 2; }
for tool in curl python3 pgbench; do
	command -v "$tool" >/dev/null || { echo "Bail out! $tool is not installed"; exit 2; }
done
# the mock gateway is not part of the extension's build: make it (a no-op
# when it is current)
make -s -C "$COUPON_ROOT" mockpg >/dev/null ||
	{ echo "Bail out! mockpg/coupon-mockpg does not build (make mockpg)"; exit 2; }
PGBIN=${PGBIN:-$(pg_config --bindir)}

if [ -n "${WORK:-}" ]; then
	SAGA_DIR=$(mktemp -d "$WORK/saga-$TAP_NAME.XXXXXX")
	chmod 755 "$SAGA_DIR"
	chown postgres:postgres "$SAGA_DIR"
else
	SAGA_DIR=$(make_workdir "saga-$TAP_NAME")
fi
# programs run as postgres inherit the working directory
cd "$SAGA_DIR"

# ------------------------------------------------------------ clients

# psql on the saga database, stop on error; extra arguments follow
psql_saga() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -d "$SAGA_DB" "$@"
}

# try SQL: 'ok' or '<SQLSTATE> <reason>' of one statement (saga_try)
try() {
	q "SELECT saga_try(\$q\$$1\$q\$)"
}

# the result of one query on the saga database, unaligned
q() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$SAGA_DB" -c "$1"
}

# the same, but an error (server restarting, ...) gives an empty answer
q_quiet() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$SAGA_DB" -c "$1" 2>/dev/null || true
}

# a file in the test directory, readable by postgres
scratch_file() {
	local f="$SAGA_DIR/$1"
	cat >"$f"
	chown postgres:postgres "$f"
	echo "$f"
}

# ------------------------------------------------------------ waiting
# wait_for DESC SECONDS SQL: poll SQL (a boolean) until it is true; a
# deadline that passes is a failure (not_ok with DESC), and returns 1: under
# set -e the script then stops there (later steps would only wait in vain);
# "|| true" goes on to the remaining checks instead
wait_for() {
	local desc=$1 secs=$2 sql=$3
	local deadline=$(($(date +%s) + secs))
	while :; do
		if [ "$(q_quiet "$sql")" = t ]; then
			ok "$desc"
			return 0
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			not_ok "$desc (not within $secs s)"
			return 1
		fi
		sleep 0.2
	done
}

# wait_state ID STATE SECONDS: payment ID reaches STATE
wait_state() {
	local id=$1 state=$2 secs=${3:-60}
	if ! wait_for "payment $id reaches $state" "$secs" \
		"SELECT state = '$state' FROM coupon.payment WHERE id = $id"; then
		diag "  payment $id: $(q_quiet "SELECT format('state %s, resume %s, attempts %s, last_error %s',
			state, resume_state, attempts, last_error) FROM coupon.payment WHERE id = $id")"
		show_events "$id"
		return 1
	fi
}

# wait_terminal SECONDS: every payment reaches a terminal state
wait_terminal() {
	local secs=${1:-180}
	if ! wait_for "every payment reaches a terminal state" "$secs" \
		"SELECT count(*) = 0 FROM coupon.payment WHERE state NOT IN ($SAGA_TERMINAL)"; then
		diag "  not terminal: $(q_quiet "SELECT string_agg(format('%s=%s', state, n), ', ')
			FROM (SELECT state, count(*) n FROM coupon.payment
			       WHERE state NOT IN ($SAGA_TERMINAL) GROUP BY 1) s")"
		q_quiet "SELECT format('#   payment %s %s attempts %s next %s lease %s: %s', id, state, attempts,
			next_attempt_at, lease_until, last_error)
			FROM coupon.payment WHERE state NOT IN ($SAGA_TERMINAL) ORDER BY id LIMIT 10"
		show_workers
		return 1
	fi
}

show_events() {
	q_quiet "SELECT format('#   event %s %s: %s -> %s http %s %s key %s %s', id, step, from_state,
		to_state, http_status, gateway_code, idempotency_key, error)
		FROM coupon.payment_event WHERE payment_id = $1 ORDER BY id"
}

show_workers() {
	q_quiet "SELECT format('#   worker %s pid %s %s in_flight %s done %s errors %s circuit %s failures %s',
		worker, pid, state, in_flight, done, errors, circuit, consecutive_failures)
		FROM coupon.worker_status ORDER BY worker"
}

# ------------------------------------------------------------ the gateway
# start the mock gateway on a free port (journal in the test directory)
saga_mockpg_start() {
	mockpg_start "$SAGA_DIR" "$SAGA_SECRET"
	MOCKPG_PORT=${MOCKPG_URL##*:}
}

# kill -9 the mock gateway (a crash: its journal keeps what it answered)
saga_mockpg_kill() {
	kill -KILL "$MOCKPG_PID"
	{ wait "$MOCKPG_PID"; } 2>/dev/null || true
}

# start it again on the same port with the same journal
saga_mockpg_restart() {
	local port
	for _ in 1 2 3 4 5; do
		: >"$SAGA_DIR/mockpg.out"
		"$COUPON_ROOT/mockpg/coupon-mockpg" --port "$MOCKPG_PORT" --secret "$SAGA_SECRET" \
			--journal "$SAGA_DIR/mockpg.journal" >"$SAGA_DIR/mockpg.out" 2>>"$SAGA_DIR/mockpg.err" &
		MOCKPG_PID=$!
		for _ in $(seq 1 100); do
			port=$(sed -n 's/^coupon-mockpg listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$SAGA_DIR/mockpg.out")
			[ -n "$port" ] && return 0
			kill -0 "$MOCKPG_PID" 2>/dev/null || break
			sleep 0.1
		done
		{ wait "$MOCKPG_PID"; } 2>/dev/null || true
		sleep 1
	done
	tail -5 "$SAGA_DIR/mockpg.err" >&2
	return 1
}

# gw_faults JSON: set the mock's faults at run time
gw_faults() {
	curl -sS -f -X POST -d "$1" "$MOCKPG_URL/__mock/faults" >/dev/null
}

# gw_stat NAME: one counter of GET /__mock/stats
gw_stat() {
	curl -sS -f "$MOCKPG_URL/__mock/stats" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# the gateway's transaction list into FILE: the days from yesterday to
# tomorrow (UTC dates, which the gateway reads as days in Korea, +09:00: the
# range still holds now)
gw_transactions() {
	curl -sS -f -u "$SAGA_SECRET:" -o "$1" \
		"$MOCKPG_URL/v1/transactions?startDate=$(date -u -d '-1 day' +%F)&endDate=$(date -u -d '+1 day' +%F)"
}

# gw_order ORDER_ID: "APPROVE amount paymentKey, CANCEL amount paymentKey,
# ..." for one orderId, oldest first
gw_order() {
	local f="$SAGA_DIR/tx.json"
	gw_transactions "$f"
	python3 - "$f" "$1" <<'PY'
import json, sys
tx = json.load(open(sys.argv[1]))
print(", ".join("%s %d %s" % (t["type"], t["amount"], t["paymentKey"])
                for t in tx if t["orderId"] == sys.argv[2]))
PY
}

# gw_net PAYMENT_ID...: the gateway's net charge (APPROVE - CANCEL) over
# the orders cp-<id> of these payments
gw_net() {
	local f="$SAGA_DIR/tx.json"
	gw_transactions "$f"
	python3 - "$f" "$@" <<'PY'
import json, sys
tx = json.load(open(sys.argv[1]))
orders = {"cp-" + i for i in sys.argv[2:]}
print(sum(t["amount"] * (1 if t["type"] == "APPROVE" else -1) for t in tx if t["orderId"] in orders))
PY
}

# a fixed-offset time zone (Etc/GMT...) in which it is about noon now, for
# tests that reason about "today": in it the test cannot cross midnight
noon_timezone() {
	local off=$((12 - 10#$(date -u +%H)))
	if [ "$off" -gt 0 ]; then
		echo "Etc/GMT-$off"
	elif [ "$off" -lt 0 ]; then
		echo "Etc/GMT+$((-off))"
	else
		echo "Etc/GMT"
	fi
}

# ------------------------------------------------------------ Redis
# start a real redis-server on 127.0.0.1 (free port, or REDIS_PORT again),
# its append-only file fsynced before each reply: a write Redis has
# acknowledged survives its kill -9
redis_start() {
	mkdir -p "$SAGA_DIR/redis"
	[ -n "$REDIS_PORT" ] || REDIS_PORT=$(free_port)
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$SAGA_DIR/redis" \
		--appendonly yes --appendfsync always --save '' --daemonize no \
		--logfile "$SAGA_DIR/redis/redis.log" &
	REDIS_PID=$!
	for _ in $(seq 1 100); do
		[ "$(redis-cli -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ] && return 0
		sleep 0.1
	done
	tail -5 "$SAGA_DIR/redis/redis.log" >&2
	return 1
}

# kill -9 Redis (what it acknowledged is in its fsynced append-only file)
redis_kill() {
	kill -KILL "$REDIS_PID"
	{ wait "$REDIS_PID"; } 2>/dev/null || true
	REDIS_PID=
}

# stop Redis if it runs
redis_stop() {
	[ -n "$REDIS_PID" ] || return 0
	kill "$REDIS_PID" 2>/dev/null || true
	{ wait "$REDIS_PID"; } 2>/dev/null || true
	REDIS_PID=
}

# relay_start: a real Redis, then a cluster whose relay publishes to it (no
# saga workers; extra postgresql.conf lines on stdin), the relay connected
relay_start() {
	local extra
	extra=$(cat)
	redis_start
	saga_start <<CONF
coupon.workers = 0
coupon.redis_url = 'redis://127.0.0.1:$REDIS_PORT'
$extra
CONF
	wait_for "the relay publishes to Redis" 60 \
		"SELECT state IN ('idle', 'publishing') AND mode = 'redis' AND connected FROM coupon.relay_status"
}

# the event stream, one line per entry (test/saga/redis_stream.py), into FILE
stream_dump() {
	python3 "$COUPON_ROOT/test/saga/redis_stream.py" "$REDIS_PORT" stream coupon:events >"$1"
}

# STREAM (stream_dump) against OUTBOX (outbox_ids): "missing duplicated
# unknown": outbox events not in the stream, stream entries that repeat an
# event, and entries of events the outbox does not have
stream_vs_outbox() {
	python3 - "$1" "$2" <<'PY'
import collections, sys
sent = collections.Counter(line.split()[1] for line in open(sys.argv[1]))
want = set(line.strip() for line in open(sys.argv[2]) if line.strip())
print(len(want - set(sent)), sum(n - 1 for n in sent.values()), len(set(sent) - want))
PY
}

# wait until the relay has published every committed event
wait_relay_drained() {
	if ! wait_for "${2:-the relay publishes every committed event}" "$1" \
		"SELECT backlog = 0 FROM coupon.relay_status"; then
		diag "  relay: $(q_quiet "SELECT format('state %s mode %s backlog %s published %s error %s',
			state, mode, backlog, published, last_error) FROM coupon.relay_status")"
		return 1
	fi
}

# the audit trail's lookup once the relay has caught up: every published
# event has its row (the relay adds them with each batch it records),
# no row names a missing event, and events() gives each of up to 300
# aggregates exactly its outbox events
check_lookup() {
	check "$1: every published event has its lookup row" \
		"$(q "SELECT count(*) FROM coupon.outbox o, coupon.relay_state r
		       WHERE pg_visible_in_snapshot(o.xid, r.published_through)
		         AND NOT EXISTS (SELECT FROM coupon.outbox_lookup l WHERE l.aggregate_id = o.aggregate_id
		                           AND l.event_id = o.event_id AND l.xid = o.xid)")" 0
	check "$1: every lookup row names an event" \
		"$(q "SELECT count(*) FROM coupon.outbox_lookup l
		       WHERE NOT EXISTS (SELECT FROM coupon.outbox o WHERE o.xid = l.xid AND o.event_id = l.event_id
		                           AND o.aggregate_id = l.aggregate_id)")" 0
	check "$1: events() gives each aggregate its events, each once" \
		"$(q "SELECT count(*) FROM (SELECT DISTINCT aggregate, aggregate_id FROM coupon.outbox
		                            ORDER BY aggregate, aggregate_id LIMIT 300) a
		       WHERE (SELECT array_agg(e.event_id ORDER BY e.event_id) FROM coupon.events(a.aggregate, a.aggregate_id) e)
		             IS DISTINCT FROM
		             (SELECT array_agg(o.event_id ORDER BY o.event_id) FROM coupon.outbox o
		               WHERE o.aggregate = a.aggregate AND o.aggregate_id = a.aggregate_id)")" 0
}

# the outbox's event ids since FROM (exclusive), sorted, into FILE
outbox_ids() {
	q "SELECT event_id FROM coupon.outbox WHERE event_id > ${2:-0} ORDER BY event_id" >"$1"
}

# ------------------------------------------------------------ the cluster
# saga_start: the mock gateway, then a cluster whose saga workers call it
# (extra postgresql.conf lines on stdin override the defaults here), the
# database $SAGA_DB with the extension, and the workers ready
saga_start() {
	local extra
	extra=$(cat)
	saga_mockpg_start
	SAGA_PORT=$(free_port)
	cluster_start "$SAGA_DIR" "$SAGA_PORT" <<CONF
fsync = off
full_page_writes = off
coupon.database = '$SAGA_DB'
coupon.gateway_url = '$MOCKPG_URL'
coupon.gateway_secret = '$SAGA_SECRET'
coupon.naptime_ms = 200
coupon.retry_base_ms = 100
coupon.retry_max_ms = 1000
coupon.circuit_cooldown_ms = 1000
$extra
CONF
	as_pg psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $SAGA_DB"
	psql_saga <<'SQL'
CREATE EXTENSION coupon;
-- 'ok' or '<SQLSTATE> <reason>' (the DETAIL's JSON reason, else the message)
CREATE FUNCTION saga_try(sql text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; det text; msg text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, det = PG_EXCEPTION_DETAIL, msg = MESSAGE_TEXT;
	BEGIN
		RETURN st || ' ' || coalesce(nullif(det, '')::jsonb ->> 'reason', msg);
	EXCEPTION WHEN OTHERS THEN
		RETURN st || ' ' || msg;
	END;
END
$f$;
-- '<SQLSTATE> | <message> | <hint>' of an error, or 'ok'
CREATE FUNCTION try_full(sql text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; hint text;
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
	RETURN concat_ws(' | ', st, msg, hint);
END
$f$;
SQL
	local workers
	workers=$(q "SELECT current_setting('coupon.workers')")
	if [ "$workers" -gt 0 ]; then
		if ! wait_for "$workers saga worker(s) running against database $SAGA_DB" 60 \
			"SELECT count(*) = $workers FROM coupon.worker_status WHERE state IN ('idle', 'working', 'no_gateway')"; then
			show_workers
			return 1
		fi
	fi
}

# postmaster_kill LABEL: kill -9 the postmaster, then wait (60 s at most)
# until it and every child it had are gone
postmaster_kill() {
	local pmpid children alive deadline pid
	pmpid=$(head -1 "$SAGA_DIR/data/postmaster.pid")
	children=$(pgrep -P "$pmpid" | tr '\n' ' ')
	kill -KILL "$pmpid"
	deadline=$(($(date +%s) + 60))
	while :; do
		alive=0
		for pid in $pmpid $children; do
			kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
		done
		[ $alive -eq 0 ] && break
		if [ "$(date +%s)" -ge $deadline ]; then
			not_ok "$1 the postmaster's children exit after it died ($alive left)"
			false
		fi
		sleep 0.1
	done
	ok "$1 the postmaster and its children are gone"
}

# crash_restart LABEL: start the cluster postmaster_kill left (crash recovery)
crash_restart() {
	if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$SAGA_DIR/data" -l "$SAGA_DIR/server.log" -w -t 120 start >/dev/null; then
		ok "$1 pg_ctl start after the kill (crash recovery)"
	else
		not_ok "$1 pg_ctl start after the kill (crash recovery)"
		false
	fi
}

saga_conf() {
	q "ALTER SYSTEM SET $1 = '$2'" && q "SELECT pg_reload_conf()" >/dev/null
}

# ------------------------------------------------------------ invariants
# the gateway's books against the database's, order by order: net charged
# (APPROVE minus CANCEL amounts) equals approved_amount - refunded_amount,
# totals too; at most one APPROVE per orderId; no order unknown to the
# database
check_books() {
	local tx="$SAGA_DIR/books-tx.json" db="$SAGA_DIR/books-db.tsv" out
	if ! gw_transactions "$tx"; then
		not_ok "books: GET /v1/transactions answered"
		return
	fi
	q "COPY (SELECT id, approved_amount, refunded_amount, state FROM coupon.payment) TO STDOUT" >"$db"
	out=$(python3 - "$tx" "$db" <<'PY'
import collections, json, sys
tx = json.load(open(sys.argv[1]))
db = {}
for line in open(sys.argv[2]):
    pid, approved, refunded, state = line.rstrip("\n").split("\t")
    db["cp-" + pid] = (int(approved) - int(refunded), state)
net = collections.Counter()
approves = collections.Counter()
for t in tx:
    if t["type"] == "APPROVE":
        net[t["orderId"]] += t["amount"]
        approves[t["orderId"]] += 1
    elif t["type"] == "CANCEL":
        net[t["orderId"]] -= t["amount"]
    else:
        raise SystemExit("unknown transaction type %r" % t["type"])
orders = set(net) | set(db)
bad = sorted(o for o in orders if net.get(o, 0) != db.get(o, (0, None))[0])
multi = sorted(o for o, n in approves.items() if n > 1)
unknown = sorted(o for o in net if o not in db)
print(sum(net.values()), sum(v[0] for v in db.values()), len(bad), len(multi), len(unknown), len(tx))
for o in bad[:10]:
    print("#   order %s: gateway net %d, database net %s (%s)"
          % (o, net.get(o, 0), db.get(o, (None,))[0], db.get(o, (None, "no payment"))[1]))
for o in multi[:10]:
    print("#   order %s: %d APPROVE transactions" % (o, approves[o]))
PY
	) || { not_ok "books: transaction list parsed"; return; }
	local gw_net db_net bad multi unknown ntx
	read -r gw_net db_net bad multi unknown ntx <<<"$(head -1 <<<"$out")"
	diag "books: $ntx gateway transactions, gateway net $gw_net, database net $db_net"
	check "books: gateway net = sum(approved_amount - refunded_amount)" "$gw_net" "$db_net"
	check "books: every order's gateway net equals its payment's net" "$bad" 0
	check "books: at most one APPROVE per orderId" "$multi" 0
	check "books: the gateway knows no order the database does not" "$unknown" 0
	tail -n +2 <<<"$out"
}

# the coupons follow their payments: nothing spent or held through a failed
# payment, every completed payment's coupons spent, refunded ones given back
check_coupons() {
	# another live payment holds or spent coupon c (it was given back, then reused)
	local other="EXISTS (SELECT 1 FROM coupon.reservation r2 JOIN coupon.payment p2 ON p2.id = r2.payment_id
	                     WHERE r2.coupon_id = c.id AND p2.id <> p.id AND r2.status IN ('held', 'confirmed')
	                       AND p2.state NOT IN ('failed', 'refunded'))"
	local spend="coupon.payment p CROSS JOIN LATERAL unnest(p.coupon_ids) AS u(coupon_id)
	             JOIN coupon.coupon c ON c.id = u.coupon_id JOIN coupon.policy po ON po.id = c.policy_id"
	check "coupons: no failed payment holds or spent a reservation" \
		"$(q "SELECT count(*) FROM coupon.reservation r JOIN coupon.payment p ON p.id = r.payment_id
		       WHERE p.state = 'failed' AND r.status IN ('held', 'confirmed')")" 0
	check "coupons: no coupon is used or reserved through a failed payment" \
		"$(q "SELECT count(*) FROM $spend WHERE p.state = 'failed'
		       AND c.status IN ('used', 'reserved') AND NOT $other")" 0
	check "coupons: every completed payment's coupons are spent (reservation confirmed, coupon used)" \
		"$(q "SELECT count(*) FROM $spend WHERE p.state IN ('completed', 'partially_refunded')
		       AND (NOT EXISTS (SELECT 1 FROM coupon.reservation r WHERE r.payment_id = p.id
		                         AND r.coupon_id = c.id AND r.status = 'confirmed')
		            OR (po.discount_type <> 'balance' AND c.status <> 'used'))")" 0
	check "coupons: fully refunded payments gave their coupons back" \
		"$(q "SELECT count(*) FROM $spend WHERE p.state = 'refunded'
		       AND po.discount_type <> 'balance' AND c.status NOT IN ('issued', 'expired') AND NOT $other")" 0
	check "coupons: every used coupon was spent by a completed payment" \
		"$(q "SELECT count(*) FROM coupon.coupon c WHERE c.status = 'used'
		       AND NOT EXISTS (SELECT 1 FROM coupon.reservation r JOIN coupon.payment p ON p.id = r.payment_id
		                        WHERE r.coupon_id = c.id AND r.status = 'confirmed'
		                          AND p.state IN ('completed', 'partially_refunded'))")" 0
	check "coupons: none left reserved (except by payments in needs_attention)" \
		"$(q "SELECT count(*) FROM coupon.coupon c WHERE c.status = 'reserved'
		       AND NOT EXISTS (SELECT 1 FROM coupon.reservation r JOIN coupon.payment p ON p.id = r.payment_id
		                        WHERE r.coupon_id = c.id AND r.status = 'held' AND p.state = 'needs_attention')")" 0
	check "coupons: each payment owns one reservation per coupon" \
		"$(q "SELECT count(*) FROM coupon.payment p WHERE cardinality(p.coupon_ids) <>
		       (SELECT count(*) FROM coupon.reservation r WHERE r.payment_id = p.id)")" 0
}

# the payments' own amounts agree with their states
check_amounts() {
	local bad
	bad=$(q "SELECT count(*) FROM coupon.payment WHERE NOT CASE state
		WHEN 'completed' THEN approved_amount = amount - discount AND refunded_amount = 0
		WHEN 'partially_refunded' THEN approved_amount = amount - discount
		                               AND refunded_amount > 0 AND refunded_amount < approved_amount
		WHEN 'refunded' THEN refunded_amount = approved_amount
		WHEN 'failed' THEN approved_amount = refunded_amount
		WHEN 'needs_attention' THEN true
		ELSE false END")
	check "amounts: approved/refunded amounts agree with each payment's state" "$bad" 0
	[ "$bad" = 0 ] || q "SELECT format('#   payment %s %s: amount %s discount %s approved %s refunded %s',
		id, state, amount, discount, approved_amount, refunded_amount) FROM coupon.payment
		WHERE state NOT IN ('completed', 'partially_refunded', 'refunded', 'failed', 'needs_attention')
		   OR (state = 'completed' AND (approved_amount <> amount - discount OR refunded_amount <> 0))
		   OR (state = 'refunded' AND refunded_amount <> approved_amount)
		   OR (state = 'failed' AND approved_amount <> refunded_amount) LIMIT 10"
}

# the event log: gateway calls carry '<id>-confirm|void|refund-<n>' keys,
# steps are the documented ones, and each payment's last transition ends in
# its state
check_events() {
	check "events: every Idempotency-Key is <payment id>-confirm, -void or -refund-<n>" \
		"$(q "SELECT count(*) FROM coupon.payment_event
		       WHERE idempotency_key IS NOT NULL
		         AND idempotency_key !~ ('^' || payment_id || '-(confirm|void|refund-[0-9]+)\$')")" 0
	check "events: every step is one the COMMENT on payment_event.step names" \
		"$(q "SELECT coalesce(string_agg(DISTINCT e.step, ','), '') FROM coupon.payment_event e
		       WHERE col_description('coupon.payment_event'::regclass,
		                             (SELECT attnum FROM pg_attribute WHERE attname = 'step'
		                                 AND attrelid = 'coupon.payment_event'::regclass))
		             !~ ('\m' || e.step || '\M')")" ""
	check "events: every payment has events, the last transition ending in its state" \
		"$(q "SELECT count(*) FROM coupon.payment p
		       WHERE p.state IS DISTINCT FROM (SELECT e.to_state FROM coupon.payment_event e
		                                        WHERE e.payment_id = p.id AND e.to_state IS NOT NULL
		                                        ORDER BY e.id DESC LIMIT 1)")" 0
}

# all four
check_invariants() {
	check_books
	check_coupons
	check_amounts
	check_events
}

# ------------------------------------------------------------ the end
saga_cleanup() {
	local rc=$?
	local pid
	if [ "$SAGA_FINISHED" != 1 ]; then
		[ $rc -ne 0 ] || rc=1
		echo "Bail out! $TAP_NAME stopped early (exit $rc) after $TAP_TESTS checks, $TAP_FAILED failed"
	fi
	for pid in "${SAGA_BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	mockpg_stop
	redis_stop
	cluster_stop "$SAGA_DIR"
	if [ $rc -ne 0 ] || [ "$TAP_FAILED" -ne 0 ]; then
		diag "server log (last 30 lines):"
		tail -30 "$SAGA_DIR/server.log" 2>/dev/null | sed 's/^/#   /'
		if [ -s "$SAGA_DIR/mockpg.err" ]; then
			diag "mockpg stderr (last 10 lines):"
			tail -10 "$SAGA_DIR/mockpg.err" | sed 's/^/#   /'
		fi
	fi
	if [ "${KEEP_WORK:-0}" = 1 ]; then
		diag "kept $SAGA_DIR"
	else
		rm -rf "$SAGA_DIR"
	fi
	exit $rc
}
trap saga_cleanup EXIT

# the summary line and the exit status
saga_finish() {
	SAGA_FINISHED=1
	echo "1..$TAP_TESTS"
	diag "$TAP_NAME: $((TAP_TESTS - TAP_FAILED))/$TAP_TESTS passed in $(($(date +%s) - SAGA_START)) s"
	[ "$TAP_FAILED" -eq 0 ]
}
