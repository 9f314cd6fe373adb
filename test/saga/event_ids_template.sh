#!/usr/bin/env bash
# Event ids in databases copied from one template.  Their outbox sequences
# have the same id, and the block of ids kept in shared memory is named by
# the database as well as the sequence: a database must never take ids
# from another's block, which its own sequence never reserved.  Database a
# writes 1,500 events (two blocks of its sequence), then b writes ten; after
# a restart (shared memory lost) b's next ids must still rise above its
# earlier ones, and stay unique.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<'CONF'
coupon.workers = 0
coupon.relay = off
CONF

# one query on database $1
qdb() {
	as_pg psql -X -q -v ON_ERROR_STOP=1 -At -d "$1" -c "$2"
}

as_pg psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE ev_tpl"
qdb ev_tpl "CREATE EXTENSION coupon" >/dev/null
qdb ev_tpl "SELECT coupon.create_merchant('template shop')" >/dev/null
qdb ev_tpl "SELECT coupon.create_policy(1, 'template policy', 'fixed', 500, per_user_limit => NULL)" >/dev/null
as_pg psql -X -q -v ON_ERROR_STOP=1 -d postgres \
	-c "CREATE DATABASE ev_a TEMPLATE ev_tpl" -c "CREATE DATABASE ev_b TEMPLATE ev_tpl"
SEQ="SELECT 'coupon.outbox_event_id_seq'::regclass::oid"
check "the copies' event id sequences have one id" "$(qdb ev_a "$SEQ")" "$(qdb ev_b "$SEQ")"

qdb ev_a "SELECT count(coupon.issue(1, 'a' || g)) FROM generate_series(1, 1500) g" >/dev/null
for i in $(seq 1 10); do
	qdb ev_b "SELECT coupon.issue(1, 'b$i')" >/dev/null
done
BEFORE=$(qdb ev_b "SELECT max(event_id) FROM coupon.outbox WHERE user_id LIKE 'b%'")
diag "a's last id $(qdb ev_a "SELECT max(event_id) FROM coupon.outbox"), b's $BEFORE"

if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$SAGA_DIR/data" -l "$SAGA_DIR/server.log" -w -t 120 \
	-m fast restart >/dev/null; then
	ok "the cluster restarts"
else
	not_ok "the cluster restarts"
	false
fi
for i in $(seq 11 20); do
	qdb ev_b "SELECT coupon.issue(1, 'b$i')" >/dev/null
done
check "b: every id written after the restart is above those before it" \
	"$(qdb ev_b "SELECT min(event_id) > $BEFORE FROM coupon.outbox
	              WHERE user_id LIKE 'b%' AND substr(user_id, 2)::int > 10")" t
check "b: its event ids are unique" \
	"$(qdb ev_b "SELECT count(*) = count(DISTINCT event_id) FROM coupon.outbox")" t
check "a: its event ids are unique" \
	"$(qdb ev_a "SELECT count(*) = count(DISTINCT event_id) FROM coupon.outbox")" t

as_pg psql -X -q -d postgres -c "DROP DATABASE ev_a" -c "DROP DATABASE ev_b" -c "DROP DATABASE ev_tpl" >/dev/null
saga_finish
