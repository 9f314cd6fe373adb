#!/usr/bin/env bash
# ALTER EXTENSION coupon UPDATE from 0.1 gives the same extension as a fresh
# install of the newest version, and keeps the data of 0.1 working.
#
# The fresh install runs src/sql/coupon.sql, the current version written
# out; the update runs src/sql/coupon--0.1.sql and every upgrade script
# after it.  Two scripts of one schema: this test keeps them in step.  The
# catalog of the extension (its schema, relations, column order, defaults,
# constraints, indexes, sequences, types and domains, triggers, row-level
# security policies, functions with their bodies and settings, views,
# comments on each of these, privileges and the initial privileges pg_dump
# reads, the tables pg_dump saves, the extension's members, and the roles it
# makes) is described by one query in both databases and the descriptions
# must be equal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

OLD=load_upgrade_old
NEW=load_upgrade_new
for db in $OLD $NEW; do
	psql_db postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
	LOAD_DBS+=("$db")
done
psql_db "$OLD" -c "CREATE EXTENSION coupon VERSION '0.1'"
psql_db "$NEW" -c "CREATE EXTENSION coupon"

# a database of its own with the extension installed at an old version
old_version_db() {
	psql_db postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null
	LOAD_DBS+=("$1")
	psql_db "$1" -c "CREATE EXTENSION coupon VERSION '$2'" >/dev/null
}

# The roles are the cluster's, shared by both databases: their comments are
# cleared before each script sets them, so each description shows only
# what its own script set.  (Their attributes are whatever the first script
# that created them gave; NOLOGIN in both.)
ROLES="SELECT a.grantee::regrole::text FROM pg_namespace n, aclexplode(n.nspacl) a
        WHERE n.nspname = 'coupon' AND a.grantee <> n.nspowner ORDER BY 1"
clear_role_comments() {
	local r
	for r in $(query "$NEW" "$ROLES"); do
		psql_db postgres -c "COMMENT ON ROLE $r IS NULL"
	done
}
# one line per fact of the cluster's roles that schema coupon is granted to
describe_roles() {
	query "$1" "
	SELECT 'role ' || r.rolname || ' login=' || r.rolcanlogin || ' super=' || r.rolsuper
		   || ' inherit=' || r.rolinherit || ' createrole=' || r.rolcreaterole || ' createdb=' || r.rolcreatedb
		   || ' replication=' || r.rolreplication || ' bypassrls=' || r.rolbypassrls
		   || ' connlimit=' || r.rolconnlimit
		   || ' comment=' || coalesce(shobj_description(r.oid, 'pg_authid'), '')
	  FROM pg_roles r WHERE r.rolname IN ($ROLES) ORDER BY 1"
}
clear_role_comments
psql_db "$NEW" -c "DROP EXTENSION coupon" -c "CREATE EXTENSION coupon"
describe_roles "$NEW" >"$LOAD_DIR/roles_new.txt"
clear_role_comments

# data made under 0.1: a merchant, a policy, coupons, a confirmed and a held reservation
psql_db "$OLD" >/dev/null <<'SQL'
SELECT id AS m FROM coupon.create_merchant('upgrade shop') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'ten', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT coupon.issue(:p, 'ulla') FROM generate_series(1, 3);
SELECT coupon.confirm((coupon.reserve(min(id), 'ulla', :m, 'old-order-1', 5000)).id) FROM coupon.coupon;
SELECT coupon.reserve(max(id), 'ulla', :m, 'old-order-2', 5000) FROM coupon.coupon;
SQL
check "0.1 is installed before the update" "$(query "$OLD" "SELECT extversion FROM pg_extension WHERE extname = 'coupon'")" "0.1"
if psql_db "$OLD" -c "ALTER EXTENSION coupon UPDATE" >"$LOAD_DIR/update.log" 2>&1; then
	ok "ALTER EXTENSION coupon UPDATE runs"
else
	not_ok "ALTER EXTENSION coupon UPDATE runs"
	sed 's/^/#   /' "$LOAD_DIR/update.log"
fi
check "the update reaches the default version" \
	"$(query "$OLD" "SELECT extversion FROM pg_extension WHERE extname = 'coupon'")" \
	"$(query "$NEW" "SELECT extversion FROM pg_extension WHERE extname = 'coupon'")"
describe_roles "$OLD" >"$LOAD_DIR/roles_old.txt"

# a privilege list (aclitem[]) as a sorted list of grantee:privilege:grantable
acl() {
	echo "array_to_string(ARRAY(SELECT a.grantee::regrole::text || ':' || a.privilege_type || ':' || a.is_grantable
	                              FROM aclexplode($1) a ORDER BY 1), ',')"
}

# One line per catalog fact of the extension, ids and oids left out (text
# that spans lines is kept on one, with \n).  Privileges are compared as
# sets (an ACL's order means nothing), with a missing ACL read as the
# default it stands for.  Columns are numbered in order, dropped ones
# skipped; a table's unique indexes are numbered in the order a row is
# checked against them, which decides the error a row that breaks two of
# them meets.
describe() {
	query "$1" "
	WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'coupon'),
	ext AS (SELECT oid FROM pg_extension WHERE extname = 'coupon'),
	rel AS (SELECT c.* FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM ns)),
	facts AS (
		SELECT 'schema ' || n.nspname || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '')
			   || ' acl=' || $(acl "coalesce(n.nspacl, acldefault('n', n.nspowner))") AS f
		  FROM pg_namespace n WHERE n.oid = (SELECT oid FROM ns)
		UNION ALL
		SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' persistence=' || c.relpersistence::text
			   || ' rls=' || c.relrowsecurity || ' forcerls=' || c.relforcerowsecurity
			   || ' replident=' || c.relreplident::text
			   || ' opts=' || coalesce(array_to_string(c.reloptions, ','), '')
			   || ' comment=' || coalesce(obj_description(c.oid, 'pg_class'), '')
			   || ' acl=' || $(acl "coalesce(c.relacl, CASE WHEN c.relkind = 'S' THEN acldefault('s', c.relowner)
														ELSE acldefault('r', c.relowner) END)")
		  FROM rel c
		UNION ALL
		SELECT 'col ' || c.relname || '.' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum)
			   || ' ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
			   || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
			   || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
			   || ' collation=' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '')
			   || ' comment=' || coalesce(col_description(c.oid, a.attnum), '')
			   || ' acl=' || coalesce(array_to_string(ARRAY(SELECT x::text FROM unnest(a.attacl) x ORDER BY 1), ','), '')
		  FROM rel c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
		UNION ALL
		SELECT 'seq ' || s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, NULL)
			   || ' start=' || s.seqstart || ' increment=' || s.seqincrement || ' min=' || s.seqmin
			   || ' max=' || s.seqmax || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
			   || ' owned_by=' || coalesce((SELECT d.refobjid::regclass::text || '.' || a.attname || ' ' || d.deptype::text
											  FROM pg_depend d JOIN pg_attribute a
												ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
											 WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
											   AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')), '')
		  FROM pg_sequence s JOIN rel c ON c.oid = s.seqrelid
		UNION ALL
		SELECT 'type ' || t.typname || ' ' || t.typtype::text
			   || ' base=' || coalesce(format_type(nullif(t.typbasetype, 0), t.typtypmod), '')
			   || ' notnull=' || t.typnotnull || ' default=' || coalesce(t.typdefault, '')
			   || ' comment=' || coalesce(obj_description(t.oid, 'pg_type'), '')
			   || ' acl=' || $(acl "coalesce(t.typacl, acldefault('T', t.typowner))")
		  FROM pg_type t
		 WHERE t.typnamespace = (SELECT oid FROM ns) AND t.typtype IN ('b', 'c', 'd', 'e', 'm', 'r')
		   AND (t.typrelid = 0 OR (SELECT relkind FROM pg_class WHERE oid = t.typrelid) = 'c')
		UNION ALL
		SELECT 'con ' || coalesce(nullif(conrelid, 0)::regclass::text, contypid::regtype::text) || ' ' || conname
			   || ' ' || pg_get_constraintdef(oid) || ' validated=' || convalidated
			   || ' comment=' || coalesce(obj_description(oid, 'pg_constraint'), '')
		  FROM pg_constraint WHERE connamespace = (SELECT oid FROM ns)
		UNION ALL
		SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
			   || CASE WHEN i.indisunique
					   THEN ' unique #' || row_number() OVER (PARTITION BY i.indrelid, i.indisunique ORDER BY i.indexrelid)
					   ELSE '' END
		  FROM pg_index i JOIN rel c ON c.oid = i.indrelid
		UNION ALL
		SELECT 'trg ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
			   || ' comment=' || coalesce(obj_description(t.oid, 'pg_trigger'), '')
		  FROM pg_trigger t JOIN rel c ON c.oid = t.tgrelid
		 WHERE NOT t.tgisinternal
		UNION ALL
		SELECT 'pol ' || c.relname || ' ' || p.polname || ' ' || p.polcmd::text || ' permissive=' || p.polpermissive
			   || ' roles=' || array_to_string(ARRAY(SELECT x::regrole::text FROM unnest(p.polroles) x ORDER BY 1), ',')
			   || ' using=' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
			   || ' check=' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
			   || ' comment=' || coalesce(obj_description(p.oid, 'pg_policy'), '')
		  FROM pg_policy p JOIN rel c ON c.oid = p.polrelid
		UNION ALL
		SELECT 'fn ' || p.oid::regprocedure::text || ' ' || pg_get_function_result(p.oid)
			   || ' args=' || pg_get_function_arguments(p.oid) || ' vol=' || p.provolatile::text
			   || ' secdef=' || p.prosecdef || ' config=' || coalesce(array_to_string(p.proconfig, ','), '')
			   || ' def=' || replace(pg_get_functiondef(p.oid), E'\n', '\n')
			   || ' comment=' || coalesce(obj_description(p.oid, 'pg_proc'), '')
			   || ' acl=' || $(acl "coalesce(p.proacl, acldefault('f', p.proowner))")
		  FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM ns)
		UNION ALL
		SELECT 'view ' || c.relname || ' ' || replace(pg_get_viewdef(c.oid), E'\n', '\n')
		  FROM rel c WHERE c.relkind IN ('v', 'm')
		UNION ALL
		SELECT 'dump ' || x.rel::regclass::text || ' where=' || coalesce(e.extcondition[x.n], '')
		  FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY x(rel, n) WHERE e.extname = 'coupon'
		UNION ALL
		SELECT 'ext ' || e.extname || ' ' || e.extversion || ' schema=' || e.extnamespace::regnamespace::text
			   || ' relocatable=' || e.extrelocatable
		  FROM pg_extension e WHERE e.oid = (SELECT oid FROM ext)
		UNION ALL
		-- the privileges the scripts gave, which pg_dump leaves out of a dump
		SELECT 'initpriv ' || pg_describe_object(i.classoid, i.objoid, i.objsubid) || ' ' || i.privtype::text
			   || ' ' || array_to_string(ARRAY(SELECT x::text FROM unnest(i.initprivs) x ORDER BY 1), ',')
		  FROM pg_init_privs i
		 WHERE i.objoid = (SELECT oid FROM ns)
			OR (i.classoid, i.objoid) IN (SELECT d.classid, d.objid FROM pg_depend d
										   WHERE d.refclassid = 'pg_extension'::regclass
											 AND d.refobjid = (SELECT oid FROM ext) AND d.deptype = 'e')
		UNION ALL
		SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
		  FROM pg_depend d
		 WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = (SELECT oid FROM ext) AND d.deptype = 'e')
	SELECT f FROM facts ORDER BY f"
}
describe "$OLD" >"$LOAD_DIR/old.txt"
describe "$NEW" >"$LOAD_DIR/new.txt"
cat "$LOAD_DIR/roles_new.txt" >>"$LOAD_DIR/new.txt"
cat "$LOAD_DIR/roles_old.txt" >>"$LOAD_DIR/old.txt"
if diff "$LOAD_DIR/new.txt" "$LOAD_DIR/old.txt" >"$LOAD_DIR/diff.txt"; then
	ok "the updated schema equals a fresh install ($(wc -l <"$LOAD_DIR/new.txt") catalog facts compared)"
else
	not_ok "the updated schema equals a fresh install (< src/sql/coupon.sql, > the upgrade chain)"
	sed 's/^/#   /' "$LOAD_DIR/diff.txt" | head -40
fi

# the 0.1 data keeps working, and the new functions work on it
check "a hold made under 0.1 is released after the update" \
	"$(query "$OLD" "SELECT (coupon.release(id)).status FROM coupon.reservation WHERE order_id = 'old-order-2'")" "released"
check "a coupon issued under 0.1 pays under 0.2" \
	"$(query "$OLD" "SELECT state || ' ' || discount FROM coupon.pay((SELECT id FROM coupon.merchant), 'ulla', 'new-order',
	                 5000, ARRAY[(SELECT max(id) FROM coupon.coupon)])")" "pending 1000"
check "the payment holds its coupon" \
	"$(query "$OLD" "SELECT status FROM coupon.coupon WHERE id = (SELECT max(id) FROM coupon.coupon)")" "reserved"

# refunds made under 0.2 reach the refund ledger that 0.3 settles from
MID=load_upgrade_mid
old_version_db "$MID" 0.2
psql_db "$MID" >/dev/null <<'SQL'
SELECT id AS m FROM coupon.create_merchant('mid shop') \gset
SELECT coupon.pay(:m, 'rita', 'r-' || g, 5000) FROM generate_series(1, 3) g;
-- as the saga would have left them: one refunded in full, one in part, one not at all
-- (two days ago: a cutoff may not lie in the future, and the delay is one day)
UPDATE coupon.payment SET state = 'refunded', approved_amount = 5000, refunded_amount = 5000,
       completed_at = now() - interval '2 days', refunded_at = now() - interval '2 days' WHERE order_id = 'r-1';
UPDATE coupon.payment SET state = 'partially_refunded', approved_amount = 5000, refunded_amount = 1200,
       completed_at = now() - interval '2 days', refunded_at = now() - interval '2 days' WHERE order_id = 'r-2';
UPDATE coupon.payment SET state = 'completed', approved_amount = 5000, completed_at = now() - interval '2 days'
 WHERE order_id = 'r-3';
SQL
psql_db "$MID" -c "ALTER EXTENSION coupon UPDATE" >/dev/null
check "refunds made under 0.2 are in the refund ledger after the update" \
	"$(query "$MID" "SELECT string_agg(p.order_id || ':' || f.amount || ':' || f.full_refund, ',' ORDER BY p.order_id)
	                  FROM coupon.payment_refund f JOIN coupon.payment p ON p.id = f.payment_id")" \
	"r-1:5000:true,r-2:1200:false"
check "settlement then nets them out: 5000 + 3800 charged after refunds" \
	"$(query "$MID" "SELECT sum(charged) FROM coupon.run_settlement(now())")" "8800"

# the 0.5 code (row locks taken in C) checks out a coupon issued under 0.1,
# and coupons, which lost the reservations' foreign key in 0.5, stay put
check "a coupon issued under 0.1 is reserved and confirmed after the update" \
	"$(query "$OLD" "SELECT (coupon.confirm((coupon.reserve(c.id, 'ulla', m.id, 'late-order', 5000)).id)).status
	                 FROM coupon.coupon c, coupon.merchant m WHERE c.status = 'issued'")" "confirmed"
check "a coupon cannot be deleted after the update" \
	"$(query "$OLD" "DO \$\$ BEGIN DELETE FROM coupon.coupon; EXCEPTION WHEN restrict_violation THEN RAISE NOTICE 'refused'; END \$\$; SELECT count(*) FROM coupon.coupon")" "3"

# batches settled under 0.3 read the same after the update, and the next run
# adds only what is new (0.4 drops the items' foreign key and one index)
S03=load_upgrade_03
old_version_db "$S03" 0.3
psql_db "$S03" >/dev/null <<'SQL'
SELECT id AS m FROM coupon.create_merchant('settled shop', commission_bp => 1000, settlement_delay_days => 0) \gset
SELECT coupon.pay(:m, 'sam', 's-' || g, 1000 * g) FROM generate_series(1, 3) g;
UPDATE coupon.payment SET state = 'completed', approved_amount = amount, completed_at = now() - interval '1 hour';
SELECT count(*) FROM coupon.run_settlement(now());
-- coupons in three states, for policy_stats and the status domain
SELECT id AS p FROM coupon.create_policy(:m, 'ten', 'fixed', 1000, per_user_limit => NULL) \gset
SELECT coupon.issue(:p, 'sam') FROM generate_series(1, 3);
SELECT coupon.confirm((coupon.reserve(min(id), 'sam', :m, 'c-1', 5000)).id) FROM coupon.coupon;
SELECT coupon.reserve(max(id), 'sam', :m, 'c-2', 5000) FROM coupon.coupon;
SQL
report="SELECT string_agg(concat_ws(':', sales, sales_gross, refunds, refunds_gross, commission, payout), ',')
        FROM coupon.settlement_report((SELECT id FROM coupon.merchant), current_date - 1, current_date + 1)"
before=$(query "$S03" "$report")
stats="SELECT string_agg(concat_ws(':', policy_id, issued, available, used), ',' ORDER BY policy_id) FROM coupon.policy_stats"
stats_before=$(query "$S03" "$stats")
psql_db "$S03" -c "ALTER EXTENSION coupon UPDATE" >/dev/null
check "a report over batches made under 0.3 is the same after the update" "$(query "$S03" "$report")" "$before"
check "policy_stats reads the same after coupon.status became a domain" "$(query "$S03" "$stats")" "$stats_before"
check "a status outside the domain is refused after the update" \
	"$(query "$S03" "DO \$\$ BEGIN UPDATE coupon.coupon SET status = 'lost'; EXCEPTION WHEN check_violation THEN RAISE NOTICE 'refused'; END \$\$; SELECT count(*) FROM coupon.coupon WHERE status = 'lost'")" "0"
psql_db "$S03" -c "UPDATE coupon.payment SET state = 'partially_refunded', refunded_amount = 500, refunds = 1,
                   refunded_at = now() - interval '1 minute' WHERE order_id = 's-2'" >/dev/null
check "the next run settles only the new refund, as an adjustment" \
	"$(query "$S03" "SELECT string_agg(concat_ws(':', sales, refunds, gross), ',') FROM coupon.run_settlement(now())")" \
	"0:1:-500"
check "and each sale is still settled once" \
	"$(query "$S03" "SELECT count(*) || ' ' || count(DISTINCT payment_id) FROM coupon.settlement_item WHERE kind = 'sale'")" "3 3"

# a 0.5 database under the 0.6 module: validate() keeps no copies there (the
# triggers that would drop them are missing), so a committed pause shows at
# once in the same session; after the update it answers coupon.validation
S05=load_upgrade_05
old_version_db "$S05" 0.5
session=$(psql_db "$S05" -At <<'SQL'
SELECT id AS m FROM coupon.create_merchant('shop of 0.5') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'five', 'fixed', 500) \gset
SELECT id AS c FROM coupon.issue(:p, 'vera') \gset
SELECT reason FROM coupon.validate(:c, 'vera', :m, 5000);
SELECT status FROM coupon.set_policy_status(:p, 'paused');
SELECT reason FROM coupon.validate(:c, 'vera', :m, 5000);
SQL
)
check "0.5 under the 0.6 module: a pause shows in the next validate()" "$(echo $session)" "ok paused policy_inactive"
psql_db "$S05" -c "ALTER EXTENSION coupon UPDATE" >/dev/null
check "after the update validate() answers coupon.validation, with the same columns" \
	"$(query "$S05" "SELECT pg_typeof(v)::text || ' ' || v.reason FROM coupon.validate((SELECT max(id) FROM coupon.coupon), 'vera', (SELECT max(id) FROM coupon.merchant), 5000) v")" \
	"coupon.validation policy_inactive"

# a 0.6 policy that names a merchant of another currency stops the update to
# 0.7, which says which; once the policy is put right the update goes on
S06=load_upgrade_06
old_version_db "$S06" 0.6
psql_db "$S06" >/dev/null <<'SQL'
SELECT id AS krw FROM coupon.create_merchant('won shop', 'KRW') \gset
SELECT id AS usd FROM coupon.create_merchant('dollar shop', 'USD') \gset
-- (as 0.6 made it; the 0.7 module refuses to, so the list is set by hand)
SELECT id AS p FROM coupon.create_policy(:krw, 'both currencies', 'fixed', 10000) \gset
UPDATE coupon.policy SET allowed_merchants = ARRAY[:krw, :usd] WHERE id = :p;
SQL
check_match "the update to 0.7 stops at a policy that mixes currencies, naming it" \
	"$(psql_db "$S06" -c "ALTER EXTENSION coupon UPDATE TO '0.7'" 2>&1 || true)" \
	'policies [0-9]+ name merchants of another currency'
check "and changes nothing" \
	"$(query "$S06" "SELECT extversion FROM pg_extension WHERE extname = 'coupon'")" "0.6"
psql_db "$S06" -c "UPDATE coupon.policy SET allowed_merchants = NULL" >/dev/null
psql_db "$S06" -c "ALTER EXTENSION coupon UPDATE TO '0.7'" >/dev/null
check "once the policy is put right, the update goes through" \
	"$(query "$S06" "SELECT extversion FROM pg_extension WHERE extname = 'coupon'")" "0.7"

# a 0.7 database under the 0.8 module: reconcile() (whose list became rows
# in 0.8) says to update, and works once updated
check_match "0.7 under the 0.8 module: reconcile() says to run ALTER EXTENSION coupon UPDATE" \
	"$(psql_db "$S06" -c "SELECT coupon.reconcile(current_date)" 2>&1 || true)" \
	'before 0.8 cannot run under the 0.8 module.*ALTER EXTENSION coupon UPDATE'
psql_db "$S06" -c "ALTER EXTENSION coupon UPDATE TO '0.8'" >/dev/null
check_match "after the update reconcile() reaches the gateway (here: no coupon.gateway_url)" \
	"$(psql_db "$S06" -c "SELECT coupon.reconcile(current_date)" 2>&1 || true)" \
	'coupon.gateway_url is not set'

# a 0.11 outbox, part published: the update to 0.12 gives the published
# events their audit-trail lookup rows, and only those (the relay adds the
# others as it publishes them); events() reads both kinds
S11=load_upgrade_11
old_version_db "$S11" 0.11
psql_db "$S11" >/dev/null <<'SQL'
SELECT id AS m FROM coupon.create_merchant('shop of 0.11') \gset
SELECT id AS p FROM coupon.create_policy(:m, 'eleven', 'fixed', 500) \gset
SELECT id AS c FROM coupon.issue(:p, 'wanda') \gset
SELECT coupon.relay_skip();
SELECT coupon.reserve(:c, 'wanda', :m, 'order-11', 5000);
SELECT coupon.issue(:p, 'xena');
SQL
psql_db "$S11" -c "ALTER EXTENSION coupon UPDATE TO '0.12'" >/dev/null
check "0.11 to 0.12: the published events, and only those, get lookup rows" \
	"$(query "$S11" "SELECT string_agg(o.event_type, ' ' ORDER BY o.event_id) FROM coupon.outbox_lookup l
	                  JOIN coupon.outbox o ON o.xid = l.xid AND o.event_id = l.event_id")" \
	"policy.created coupon.issued"
check "0.11 to 0.12: events() gives the coupon's published and unpublished events" \
	"$(query "$S11" "SELECT string_agg(event_type, ' ' ORDER BY event_id)
	                  FROM coupon.events('coupon', (SELECT min(id) FROM coupon.coupon))")" \
	"coupon.issued coupon.reserved"

# and on to 0.13: the outbox keeps its events, the queue starts empty,
# events() reads as before
psql_db "$S11" -c "ALTER EXTENSION coupon UPDATE TO '0.13'" >/dev/null
check "0.12 to 0.13: the queue is there, empty; the outbox keeps its events" \
	"$(query "$S11" "SELECT (SELECT count(*) FROM coupon.outbox_queue) || ' ' || (SELECT count(*) FROM coupon.outbox)")" \
	"0 4"
check "0.12 to 0.13: events() gives the coupon's events as before" \
	"$(query "$S11" "SELECT string_agg(event_type, ' ' ORDER BY event_id)
	                  FROM coupon.events('coupon', (SELECT min(id) FROM coupon.coupon))")" \
	"coupon.issued coupon.reserved"

load_finish
