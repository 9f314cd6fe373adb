#!/usr/bin/env bash
# The metrics of scripts/exporter_queries.yaml, through the real exporter.
#
# Starts Debian's prometheus-postgres-exporter on 127.0.0.1 (a free port,
# never the packaged service) against this cluster's socket, as a login role
# that is a member of coupon_monitor and nothing else, with the queries
# file; makes data whose figures are known (payments in flight and stuck,
# stock taken, wrong codes and client secrets throttled); scrapes /metrics
# with curl and checks that every metric is there and equals what SQL on
# the tables says.  A query that read the wrong view, column or filter
# gives another number; one the role may not run gives no metric at all.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

EXPORTER=${COUPON_EXPORTER:-/usr/bin/prometheus-postgres-exporter}
QUERIES="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/exporter_queries.yaml"
DB=load_exporter
ROLE="load_exporter_$$"
EXPORTER_PID=
# the throttle counts live in shared memory for the whole cluster: our own names
ATTACKER="exporter-attacker-$$-$(date +%s%N)"
CLIENT="ci_exporter_$$_$(date +%s%N)"

[ -x "$EXPORTER" ] || { echo "Bail out! $EXPORTER is not installed (apt-get install prometheus-postgres-exporter)"; exit 2; }

# stop what this script started, drop its role, then the usual cleanup
exporter_cleanup() {
	local rc=$?
	if [ -n "$EXPORTER_PID" ]; then
		kill "$EXPORTER_PID" 2>/dev/null || true
		wait "$EXPORTER_PID" 2>/dev/null || true
	fi
	for db in "${LOAD_DBS[@]}"; do
		psql_db postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	done
	psql_db postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
	(exit $rc)
	load_cleanup
}
trap exporter_cleanup EXIT

create_db "$DB"
psql_db "$DB" -c "CREATE ROLE $ROLE LOGIN IN ROLE coupon_monitor"
check "the exporter's role is a member of coupon_monitor only, and no superuser" \
	"$(query "$DB" "SELECT string_agg(m.roleid::regrole::text, ','), bool_or(r.rolsuper)
	                  FROM pg_roles r JOIN pg_auth_members m ON m.member = r.oid
	                 WHERE r.rolname = '$ROLE' GROUP BY r.rolname")" "coupon_monitor|f"

# ------------------------------------------------------------ known figures
psql_db "$DB" >/dev/null <<SQL
SELECT id AS m FROM coupon.create_merchant('exporter shop') \gset
-- limited policies: stock taken from two, a retired one and an unlimited one not reported
SELECT id AS pf FROM coupon.create_policy(:m, 'flash', 'fixed', 500, issue_method => 'fcfs',
	total_quantity => 10, per_user_limit => NULL) \gset
SELECT id AS pd FROM coupon.create_policy(:m, 'direct five', 'fixed', 300, total_quantity => 5) \gset
SELECT id AS pr FROM coupon.create_policy(:m, 'retired', 'fixed', 300, total_quantity => 5) \gset
SELECT id AS pu FROM coupon.create_policy(:m, 'unlimited', 'fixed', 300, per_user_limit => NULL) \gset
SELECT coupon.issue(:pf, 'u' || g) FROM generate_series(1, 3) g;
SELECT coupon.issue(:pd, 'u1');
SELECT coupon.issue(:pu, 'u1');
SELECT coupon.set_policy_status(:pr, 'retired');
-- a code redeemed by its owner, that an attacker then tries
SELECT id AS pc FROM coupon.create_policy(:m, 'codes', 'fixed', 1000, issue_method => 'code',
	total_quantity => 1, per_user_limit => NULL) \gset
CREATE TABLE the_code AS SELECT coupon.generate_codes(:pc, 1) AS code;
SELECT count(*) FROM the_code, coupon.redeem_code(the_code.code, 'owner');
-- payments: 3 pending just now, 2 authorizing for 10 minutes (stuck), 1 in
-- needs_attention for an hour, 40 completed (no backlog)
INSERT INTO coupon.payment (merchant_id, user_id, order_id, amount, payment_key, state, resume_state, updated_at)
SELECT :m, 'payer', 'exp-' || g, 1000, 'exp-k' || g,
	   CASE WHEN g <= 3 THEN 'pending' WHEN g <= 5 THEN 'authorizing' WHEN g = 6 THEN 'needs_attention'
			ELSE 'completed' END,
	   CASE WHEN g = 6 THEN 'authorizing' END,
	   CASE WHEN g <= 3 THEN now() WHEN g <= 5 THEN now() - interval '10 minutes'
			WHEN g = 6 THEN now() - interval '1 hour' ELSE now() - interval '1 day' END
  FROM generate_series(1, 46) g;
SQL

# wrong codes and wrong client secrets past the limit: the blocked ones count
MAX=$(query "$DB" "SHOW coupon.code_max_failures")
EXTRA=3
before_code=$(query "$DB" "SELECT blocked FROM coupon.throttle_status() WHERE kind = 'code'")
before_client=$(query "$DB" "SELECT blocked FROM coupon.throttle_status() WHERE kind = 'client'")
CODE=$(query "$DB" "SELECT code FROM the_code")
codes_429=0
clients_429=0
for _ in $(seq 1 $((MAX + EXTRA))); do
	out=$(query "$DB" "SELECT coupon.redeem_code('$CODE', '$ATTACKER')" 2>&1 || true)
	[[ $out == *"too many wrong codes"* ]] && codes_429=$((codes_429 + 1))
	out=$(query "$DB" "SELECT coupon.authenticate_client('$CLIENT', 'cs_wrong')" 2>&1 || true)
	[[ $out == *"too many failed attempts"* ]] && clients_429=$((clients_429 + 1))
done
check "the attacker's last $EXTRA codes and client secrets were refused by the throttle" \
	"$codes_429 $clients_429" "$EXTRA $EXTRA"
check "throttle_status() counted them (code, client)" \
	"$(query "$DB" "SELECT string_agg(blocked::text, ' ' ORDER BY kind DESC) FROM coupon.throttle_status()")" \
	"$((before_code + EXTRA)) $((before_client + EXTRA))"

# ------------------------------------------------------------ the exporter
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp "$QUERIES" "$LOAD_DIR/queries.yaml"
DATA_SOURCE_NAME="host=$PGHOST port=$PGPORT user=$ROLE dbname=$DB sslmode=disable" \
	"$EXPORTER" --web.listen-address="127.0.0.1:$PORT" \
	--extend.query-path="$LOAD_DIR/queries.yaml" >"$LOAD_DIR/exporter.log" 2>&1 &
EXPORTER_PID=$!
SCRAPE="$LOAD_DIR/metrics.txt"
up=no
for _ in $(seq 1 100); do
	if curl -sS -f -o "$SCRAPE" "http://127.0.0.1:$PORT/metrics" 2>/dev/null && grep -q '^pg_up 1' "$SCRAPE"; then
		up=yes
		break
	fi
	kill -0 "$EXPORTER_PID" 2>/dev/null || break
	sleep 0.2
done
check "the exporter answers /metrics on 127.0.0.1:$PORT and reaches the database (pg_up 1)" "$up" yes
[ "$up" = yes ] || { sed 's/^/#   /' "$LOAD_DIR/exporter.log" | tail -20; load_finish; exit 1; }
# a fresh scrape, now that everything is in place; the SQL below reads the same moment
curl -sS -f -o "$SCRAPE" "http://127.0.0.1:$PORT/metrics"
check "the scrape had no query error (pg_exporter_last_scrape_error 0)" \
	"$(sed -n 's/^pg_exporter_last_scrape_error \(.*\)$/\1/p' "$SCRAPE")" 0
check "the exporter logged no error" "$(grep -c 'level=error' "$LOAD_DIR/exporter.log" || true)" 0

# metric NAME [LABELS]: the sample's value (labels as k="v",... sorted, server
# left out), integers without exponent; "absent" when there is none
metric() {
	python3 - "$SCRAPE" "$1" "${2:-}" <<'PY'
import re, sys
path, name, want = sys.argv[1], sys.argv[2], sys.argv[3]
for line in open(path):
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line.strip())
    if not m or m.group(1) != name:
        continue
    labels = sorted(l for l in re.findall(r'[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"', m.group(2) or "")
                    if not l.startswith("server="))
    if ",".join(labels) == want:
        v = float(m.group(3))
        print(int(v) if v == int(v) else round(v, 1))
        break
else:
    print("absent")
PY
}

# every metric of the file is there
for name in coupon_saga_workers_count coupon_saga_worker_in_flight coupon_saga_worker_done \
	coupon_saga_worker_errors coupon_saga_worker_last_loop_age_seconds coupon_gateway_circuit_closed \
	coupon_gateway_circuit_half_open coupon_gateway_circuit_open coupon_gateway_circuit_consecutive_failures \
	coupon_payment_backlog_payments coupon_payment_backlog_oldest_age_seconds coupon_stuck_payments_count \
	coupon_stuck_payments_needs_attention coupon_stuck_payments_max_stuck_seconds \
	coupon_policy_stock_remaining coupon_policy_stock_total coupon_throttle_blocked \
	coupon_relay_backlog coupon_relay_lag_seconds coupon_relay_published coupon_relay_reconnects \
	coupon_relay_queued coupon_relay_queue_full; do
	check_match "metric $name is scraped" "$(grep -c "^$name[{ ]" "$SCRAPE" || true)" '^[1-9][0-9]*$'
done

# saga workers: as many per state as worker_status says (the cluster's
# workers serve another database: their state is whatever it is, but the
# same), and the circuit as it says
while IFS='|' read -r state n; do
	check "coupon_saga_workers_count{state=$state} = worker_status" \
		"$(metric coupon_saga_workers_count "state=\"$state\"")" "$n"
done < <(query "$DB" "SELECT s, count(w.worker) FROM unnest('{starting,idle,working,standby,no_extension,no_gateway,stopped}'::text[]) s
                       LEFT JOIN coupon.worker_status w ON w.state = s GROUP BY s ORDER BY s")
check "one coupon_saga_worker_errors per worker" \
	"$(grep -c '^coupon_saga_worker_errors{' "$SCRAPE")" "$(query "$DB" "SELECT count(*) FROM coupon.worker_status")"
check "coupon_saga_worker_in_flight{worker=1} = worker_status" \
	"$(metric coupon_saga_worker_in_flight 'worker="1"')" \
	"$(query "$DB" "SELECT in_flight FROM coupon.worker_status WHERE worker = 1")"
check "the circuit is closed, as worker_status says (closed, half_open, open, failures)" \
	"$(metric coupon_gateway_circuit_closed) $(metric coupon_gateway_circuit_half_open) $(metric coupon_gateway_circuit_open) $(metric coupon_gateway_circuit_consecutive_failures)" \
	"$(query "$DB" "SELECT format('%s %s %s %s', (circuit = 'closed')::int, (circuit = 'half_open')::int,
	                                  (circuit = 'open')::int, consecutive_failures) FROM coupon.worker_status LIMIT 1")"

# payment backlog: per state, what counting the table says; final states are not in it
while IFS='|' read -r state n; do
	check "coupon_payment_backlog_payments{state=$state} = count(*) of coupon.payment" \
		"$(metric coupon_payment_backlog_payments "state=\"$state\"")" "$n"
done < <(query "$DB" "SELECT s, count(p.id) FROM unnest('{pending,authorizing,approved,voiding,releasing,refunding,needs_attention}'::text[]) s
                       LEFT JOIN coupon.payment p ON p.state = s GROUP BY s ORDER BY s")
check "final states are no backlog" "$(metric coupon_payment_backlog_payments 'state="completed"')" absent
check_match "the oldest authorizing payment last changed about 600 s ago" \
	"$(metric coupon_payment_backlog_oldest_age_seconds 'state="authorizing"')" '^6[0-9][0-9](\.[0-9])?$'
check "an empty state's oldest age is 0" "$(metric coupon_payment_backlog_oldest_age_seconds 'state="voiding"')" 0

# stuck payments: the 2 authorizing for 10 minutes and the needs_attention one
check "coupon_stuck_payments_count and _needs_attention = the table's" \
	"$(metric coupon_stuck_payments_count) $(metric coupon_stuck_payments_needs_attention)" \
	"$(query "$DB" "SELECT format('%s %s', count(*), count(*) FILTER (WHERE state = 'needs_attention'))
	                  FROM coupon.payment WHERE state = 'needs_attention'
	                     OR (state NOT IN ('completed', 'failed', 'refunded', 'partially_refunded')
	                         AND updated_at < now() - interval '1 minute')")"
check "... which are 3, 1 of them needing attention" \
	"$(metric coupon_stuck_payments_count) $(metric coupon_stuck_payments_needs_attention)" "3 1"
check_match "coupon_stuck_payments_max_stuck_seconds is about an hour" \
	"$(metric coupon_stuck_payments_max_stuck_seconds)" '^36[0-9][0-9](\.[0-9])?$'

# stock: exactly the limited policies that are not retired, with what the shards hold
check "coupon_policy_stock reports the limited policies that are not retired" \
	"$(grep '^coupon_policy_stock_remaining{' "$SCRAPE" | sed -n 's/.*policy_id="\([0-9]*\)".*/\1/p' | sort -n | tr '\n' ' ')" \
	"$(query "$DB" "SELECT string_agg(id::text, ' ' ORDER BY id) || ' ' FROM coupon.policy
	                 WHERE id IN (SELECT policy_id FROM coupon.policy_stock) AND status <> 'retired'")"
while IFS='|' read -r pid mid method left total; do
	check "coupon_policy_stock_remaining{policy_id=$pid} = sum(policy_stock.remaining) ($left)" \
		"$(metric coupon_policy_stock_remaining "issue_method=\"$method\",merchant_id=\"$mid\",policy_id=\"$pid\"")" "$left"
	check "coupon_policy_stock_total{policy_id=$pid} = total_quantity" \
		"$(metric coupon_policy_stock_total "issue_method=\"$method\",merchant_id=\"$mid\",policy_id=\"$pid\"")" "$total"
done < <(query "$DB" "SELECT p.id, p.merchant_id, p.issue_method, sum(s.remaining), p.total_quantity
                       FROM coupon.policy p JOIN coupon.policy_stock s ON s.policy_id = p.id
                      WHERE p.status <> 'retired' GROUP BY p.id ORDER BY p.id")
check "stock taken: 10 - 3 and 5 - 1 left" \
	"$(grep '^coupon_policy_stock_remaining{' "$SCRAPE" | awk '{print $2}' | sort -n | tr '\n' ' ')" "4 7 "

# throttle: the counters throttle_status() reads
check "coupon_throttle_blocked{kind=code} and {kind=client} = throttle_status()" \
	"$(metric coupon_throttle_blocked 'kind="code"') $(metric coupon_throttle_blocked 'kind="client"')" \
	"$((before_code + EXTRA)) $((before_client + EXTRA))"

# the relay: its backlog and count as relay_status says (this database's
# events wait: the cluster's relay serves another database)
read -r rstate rmode rbacklog rpublished <<<"$(query "$DB" "SELECT state, mode, backlog, published FROM coupon.relay_status" | tr '|' ' ')"
check "coupon_relay_backlog and _published = relay_status (state $rstate, mode $rmode)" \
	"$(metric coupon_relay_backlog "mode=\"$rmode\",state=\"$rstate\"") $(metric coupon_relay_published "mode=\"$rmode\",state=\"$rstate\"")" \
	"$rbacklog $rpublished"
check "... and this test's events are in that backlog" "$((rbacklog > 0))" 1

# the role reads nothing else: the tables stay closed to it
check "the exporter's role may not read coupon.payment itself" \
	"$(query "$DB" "SET ROLE $ROLE; SELECT count(*) FROM coupon.payment" 2>&1 | grep -c 'permission denied' || true)" 1

load_finish
