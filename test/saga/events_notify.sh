#!/usr/bin/env bash
# The NOTIFY fallback: without coupon.redis_url the relay sends each event
# as NOTIFY coupon_events with a small JSON payload, in the transaction that
# records its position, and a LISTEN client receives every event id; the
# audit trail's lookup rows, written in the same transactions, match the
# outbox.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<'CONF'
coupon.workers = 0
CONF
wait_for "the relay runs in notify mode" 60 \
	"SELECT state IN ('idle', 'publishing') AND mode = 'notify' FROM coupon.relay_status"
cc -O1 -o "$SAGA_DIR/listen" "$COUPON_ROOT/test/saga/listen.c" -I"$(pg_config --includedir)" \
	-L"$(pg_config --libdir)" -lpq
chown postgres:postgres "$SAGA_DIR/listen"
as_pg "$SAGA_DIR/listen" "host=$PGHOST port=$PGPORT dbname=$SAGA_DB" coupon_events 300 \
	>"$SAGA_DIR/notified.txt" 2>"$SAGA_DIR/listen.err" &
LISTENER=$!
SAGA_BG_PIDS+=("$LISTENER")
deadline=$(($(date +%s) + 30))
until grep -q '^ready$' "$SAGA_DIR/notified.txt" 2>/dev/null; do
	[ "$(date +%s)" -lt $deadline ] || { not_ok "the listener is listening"; false; }
	sleep 0.1
done
ok "the listener is listening"

M=$(q "SELECT id FROM coupon.create_merchant('notify shop')")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 500', 'fixed', 500, per_user_limit => NULL)")
SCRIPT=$(scratch_file issue.pgbench <<'PGB'
\set n random(1, 100000)
SELECT coupon.issue(:p, 'u' || :n);
PGB
)
if as_pg pgbench -n -c 4 -j 2 -t 1250 -D p="$P" -f "$SCRIPT" "$SAGA_DB" >"$SAGA_DIR/pgbench.log" 2>&1; then
	ok "pgbench: 5,000 coupons issued by 4 clients"
else
	not_ok "pgbench: 5,000 coupons issued by 4 clients"
fi
wait_relay_drained 120
# notifications arrive in commit order: this one after every event's
q "NOTIFY coupon_events, 'done'"
if wait "$LISTENER"; then ok "the listener got the final notification"; else not_ok "the listener got the final notification"; fi
outbox_ids "$SAGA_DIR/outbox.txt"
python3 - "$SAGA_DIR/notified.txt" >"$SAGA_DIR/notified-ids.txt" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if line in ("ready", "done"):
        continue
    e = json.loads(line)
    assert set(e) == {"event_id", "type", "aggregate", "aggregate_id"}, line
    print("x", e["event_id"])
PY
read -r missing dups unknown <<<"$(stream_vs_outbox "$SAGA_DIR/notified-ids.txt" "$SAGA_DIR/outbox.txt")"
check "events written: the merchant's policy and 5,000 issues" "$(wc -l <"$SAGA_DIR/outbox.txt")" 5001
check "the listener received every event id" "$missing" 0
check "each once (the notifications commit with the relay's position)" "$dups" 0
check "and no other" "$unknown" 0
check "payloads stay far below NOTIFY's 8000 bytes" \
	"$(awk '{ if (length($0) > m) m = length($0) } END { print (m < 500) }' "$SAGA_DIR/notified.txt")" 1
check_lookup "notify"

saga_finish
