#!/usr/bin/env bash
# The HTTP front: PostgREST's statement sequence replayed over libpq, as
# the login role scripts/postgrest_roles.sql makes (PostgREST itself cannot
# be installed here).  Each request is one transaction: the role, the JWT
# claims and the request headers as settings, then coupon.pre_request(),
# then the call, then the response headers read back.
#
# Client credentials: issued, used, rotated with a grace period, revoked,
# throttled; a wrong secret and an unknown client id answer alike; the
# secret is never stored nor logged.  Trace ids: X-Trace-Id or traceparent
# is returned and kept on the payment and its events.  The Idempotency-Key
# header: honoured when the argument is absent, per merchant and per
# acting client.  The anonymous role reaches nothing but pre_request(); the
# monitoring role reads the workers, stuck payments and statistics only.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

DB=load_postgrest
AUTH=coupon_test_authenticator
create_db "$DB"
psql_db "$DB" -v authenticator=$AUTH -v password="'test only'" <"$ROOT/scripts/postgrest_roles.sql" >/dev/null
check "the authenticator logs in, inherits nothing, and may become the web roles" \
	"$(query "$DB" "SELECT rolcanlogin || ' ' || rolinherit || ' ' ||
	                       (SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m
	                          JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid)
	                  FROM pg_roles r WHERE rolname = '$AUTH'")" \
	"true false coupon_anonymous,coupon_customer,coupon_merchant"

# rest ROLE CLAIMS HEADERS CALL: one request; prints the call's result and
# the response headers ("ERROR: <SQLSTATE>" when it failed)
rest() {
	local role=$1 claims=$2 headers=$3 call=$4 out
	out=$(as_pg psql -X -q -At -U "$AUTH" -d "$DB" -v ON_ERROR_STOP=1 -v VERBOSITY=sqlstate \
		-v role="$role" -v claims="$claims" -v headers="$headers" 2>&1 <<SQL
\set VERBOSITY sqlstate
BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE;
SELECT FROM set_config('search_path', 'coupon', true) a, set_config('role', :'role', true) b,
       set_config('request.jwt.claims', :'claims', true) c, set_config('request.method', 'POST', true) d,
       set_config('request.path', '/rpc/call', true) e, set_config('request.headers', :'headers', true) f;
SELECT FROM coupon.pre_request();
$call;
SELECT current_setting('response.headers', true);
COMMIT;
SQL
	) || true
	if grep -q '^ERROR:' <<<"$out"; then
		grep -m1 '^ERROR:' <<<"$out" | sed 's/^ERROR:  *\([0-9A-Z]*\).*/ERROR: \1/'
	else
		echo "$out"
	fi
}

M=$(query "$DB" "SELECT id FROM coupon.create_merchant('rest shop')")
M2=$(query "$DB" "SELECT id FROM coupon.create_merchant('other shop')")
P=$(query "$DB" "SELECT id FROM coupon.create_policy($M, 'five hundred', 'fixed', 500, per_user_limit => NULL)")
# a merchant's web session signed in with a JWT
JWT="{\"role\": \"coupon_merchant\", \"merchant_id\": $M}"

diag "--- client credentials"
IFS='|' read -r CID SECRET UNTIL <<<"$(query "$DB" "SELECT client_id, client_secret, previous_valid_until FROM coupon.merchant_credentials($M)")"
check_match "merchant_credentials() gives a client id and a 256-bit secret" "$CID $SECRET" '^ci_[0-9a-f]{24} cs_[0-9a-f]{64}$'
check "the first issue has no previous secret" "${UNTIL:-none}" "none"
check "only the secret's SHA-256 is stored" \
	"$(query "$DB" "SELECT count(*) FROM coupon.merchant m
	                 WHERE m.client_secret_hash = encode(sha256(convert_to('$SECRET', 'UTF8')), 'hex')
	                   AND NOT (to_jsonb(m)::text LIKE '%$SECRET%')")" 1
HDR="{\"x-client-id\": \"$CID\", \"x-client-secret\": \"$SECRET\"}"
check "with client credentials the request acts as coupon_merchant for that merchant" \
	"$(rest coupon_anonymous '' "$HDR" "SELECT current_user, current_setting('request.jwt.claims')::jsonb ->> 'merchant_id'" | sed -n 1p)" \
	"coupon_merchant|$M"
check "and may issue a coupon of its own policy" \
	"$(rest coupon_anonymous '' "$HDR" "SELECT status FROM coupon.issue($P, 'rest-u1')" | sed -n 1p)" "issued"
check "but not act for another merchant" \
	"$(rest coupon_anonymous '' "$HDR" "SELECT coupon.create_policy($M2, 'x', 'fixed', 1)")" "ERROR: PT403"
check "a wrong secret is PT401" \
	"$(rest coupon_anonymous '' "{\"x-client-id\": \"$CID\", \"x-client-secret\": \"cs_wrong\"}" "SELECT 1")" "ERROR: PT401"
check "an unknown client id is the same PT401" \
	"$(rest coupon_anonymous '' "{\"x-client-id\": \"ci_nobody_$$_$RANDOM\", \"x-client-secret\": \"cs_wrong\"}" "SELECT 1")" "ERROR: PT401"
check "a secret without a client id is PT401" \
	"$(rest coupon_anonymous '' "{\"x-client-secret\": \"$SECRET\"}" "SELECT 1")" "ERROR: PT401"
check "client credentials and a JWT together are PT401" \
	"$(rest coupon_merchant "{\"role\": \"coupon_merchant\", \"merchant_id\": $M2}" "$HDR" "SELECT 1")" "ERROR: PT401"

# rotation: the old secret works for the grace period only
IFS='|' read -r CID2 SECRET2 UNTIL2 <<<"$(query "$DB" "SELECT * FROM coupon.merchant_credentials($M, '1 hour')")"
check "rotating keeps the client id" "$CID2" "$CID"
check "the new secret works" \
	"$(rest coupon_anonymous '' "{\"x-client-id\": \"$CID\", \"x-client-secret\": \"$SECRET2\"}" "SELECT 'in'" | sed -n 1p)" "in"
check "the old one too, during the grace period" "$(rest coupon_anonymous '' "$HDR" "SELECT 'in'" | sed -n 1p)" "in"
IFS='|' read -r _ SECRET3 UNTIL3 <<<"$(query "$DB" "SELECT * FROM coupon.merchant_credentials($M, '0')")"
check "rotating with no grace ends the previous secret at once" \
	"$(rest coupon_anonymous '' "{\"x-client-id\": \"$CID\", \"x-client-secret\": \"$SECRET2\"}" "SELECT 'in'")" "ERROR: PT401"
check "a grace period over 7 days is PT400 invalid_grace" \
	"$(query "$DB" "SELECT coupon.merchant_credentials($M, '8 days')" 2>&1 | grep -c 'invalid_grace')" 1
check "a merchant session may rotate its own credentials, not another's" \
	"$(rest coupon_merchant "{\"role\": \"coupon_merchant\", \"merchant_id\": $M2}" '{}' "SELECT count(*) FROM coupon.merchant_credentials($M)")" \
	"ERROR: PT403"
check "revoking: true, and the current secret stops working" \
	"$(query "$DB" "SELECT coupon.revoke_merchant_credentials($M)") $(rest coupon_anonymous '' "{\"x-client-id\": \"$CID\", \"x-client-secret\": \"$SECRET3\"}" "SELECT 'in'")" \
	"t ERROR: PT401"

# failures of one client id are throttled (coupon.code_max_failures, 5)
IFS='|' read -r CID4 SECRET4 _ <<<"$(query "$DB" "SELECT * FROM coupon.merchant_credentials($M2)")"
for i in 1 2 3 4 5; do
	rest coupon_anonymous '' "{\"x-client-id\": \"$CID4\", \"x-client-secret\": \"cs_guess$i\"}" "SELECT 1" >/dev/null
done
check "after 5 wrong secrets the client id is refused with PT429, even with the right secret" \
	"$(rest coupon_anonymous '' "{\"x-client-id\": \"$CID4\", \"x-client-secret\": \"$SECRET4\"}" "SELECT 1")" "ERROR: PT429"
if [ -n "${COUPON_SERVER_LOG:-}" ] && [ -f "$COUPON_SERVER_LOG" ]; then
	check "no secret reached the server log" \
		"$(grep -c -e "$SECRET" -e "$SECRET2" -e "$SECRET3" -e "$SECRET4" "$COUPON_SERVER_LOG" || true)" 0
fi

diag "--- trace ids"
check_match "a request without one gets a new trace id in the X-Trace-Id response header" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT 1" | tail -1)" '^\[\{"X-Trace-Id": "[0-9a-f]{32}"\}\]$'
check "X-Trace-Id is returned as sent" \
	"$(rest coupon_merchant "$JWT" '{"x-trace-id": "req-42.a_b"}' "SELECT 1" | tail -1)" '[{"X-Trace-Id": "req-42.a_b"}]'
check "traceparent gives its trace-id" \
	"$(rest coupon_merchant "$JWT" '{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}' "SELECT 1" | tail -1)" \
	'[{"X-Trace-Id": "4bf92f3577b34da6a3ce929d0e0e4736"}]'
check_match "an X-Trace-Id with other characters is replaced by a new one" \
	"$(rest coupon_merchant "$JWT" '{"x-trace-id": "a b\"c"}' "SELECT 1" | tail -1)" '^\[\{"X-Trace-Id": "[0-9a-f]{32}"\}\]$'
Y=$(rest coupon_merchant "$JWT" '{"x-trace-id": "trace-pay-1"}' "SELECT id FROM coupon.pay($M, 'rest-u2', 'rest-o1', 5000)" | sed -n 1p)
check "a payment keeps the request's trace id, and so do its events" \
	"$(query "$DB" "SELECT p.trace_id || ' ' || bool_and(e.trace_id = p.trace_id)
	                  FROM coupon.payment p JOIN coupon.payment_event e ON e.payment_id = p.id
	                 WHERE p.id = $Y GROUP BY p.trace_id")" "trace-pay-1 true"
check "SET coupon.trace_id refuses other characters" \
	"$(query "$DB" "SET coupon.trace_id = 'a b'" 2>&1 | grep -c 'invalid value')" 1

diag "--- the Idempotency-Key header"
IFS='|' read -r CID5 SECRET5 _ <<<"$(query "$DB" "SELECT * FROM coupon.merchant_credentials($M)")"
H5="{\"x-client-id\": \"$CID5\", \"x-client-secret\": \"$SECRET5\", \"idempotency-key\": \"order-7\"}"
A=$(rest coupon_anonymous '' "$H5" "SELECT id FROM coupon.pay($M, 'rest-u3', 'rest-o7', 5000)" | sed -n 1p)
B=$(rest coupon_anonymous '' "$H5" "SELECT id FROM coupon.pay($M, 'rest-u3', 'rest-o7', 5000)" | sed -n 1p)
check "the same request with the same header answers with the same payment" "$B" "$A"
check "the same header with another request is PT422" \
	"$(rest coupon_anonymous '' "$H5" "SELECT id FROM coupon.pay($M, 'rest-u3', 'rest-o8', 5000)")" "ERROR: PT422"
check "another actor of the merchant (a JWT session) has keys of its own" \
	"$(rest coupon_merchant "$JWT" '{"idempotency-key": "order-7"}' "SELECT id FROM coupon.pay($M, 'rest-u3', 'rest-o9', 5000)" | sed -n 1p | grep -c '^[0-9]')" 1
check "an argument wins over the header" \
	"$(rest coupon_anonymous '' "$H5" "SELECT id FROM coupon.pay($M, 'rest-u3', 'rest-o10', 5000, idempotency_key => 'other')" | sed -n 1p | grep -c '^[0-9]')" 1
PK=$(query "$DB" "SELECT id FROM coupon.create_policy($M, 'keyed codes', 'fixed', 100, issue_method => 'code', per_user_limit => NULL)")
read -r K1 K2 <<<"$(query "$DB" "SELECT string_agg(c, ' ') FROM coupon.generate_codes($PK, 2) c")"
HK='{"idempotency-key": "redeem-1"}'
CUST='{"role": "coupon_customer", "sub": "key-user"}'
R1=$(rest coupon_customer "$CUST" "$HK" "SELECT id FROM coupon.redeem_code('$K1', 'key-user')" | sed -n 1p)
check "redeem_code: the same code again under the header answers with the same coupon" \
	"$(rest coupon_customer "$CUST" "$HK" "SELECT id FROM coupon.redeem_code('$K1', 'key-user')" | sed -n 1p)" "$R1"
check "and another code under the same header is PT422" \
	"$(rest coupon_customer "$CUST" "$HK" "SELECT id FROM coupon.redeem_code('$K2', 'key-user')")" "ERROR: PT422"
YC=$(query "$DB" "SELECT id FROM coupon.pay($M, 'key-user', 'key-o1', 5000)")
HC='{"idempotency-key": "cancel-1"}'
check "cancel_payment: the same cancel again under the header answers as the first" \
	"$(rest coupon_merchant "$JWT" "$HC" "SELECT refund_amount FROM coupon.cancel_payment($YC, 'once')" | sed -n 1p) $(rest coupon_merchant "$JWT" "$HC" "SELECT refund_amount FROM coupon.cancel_payment($YC, 'once')" | sed -n 1p)" \
	"$(query "$DB" "SELECT refund_amount || ' ' || refund_amount FROM coupon.payment WHERE id = $YC")"
check "an empty header is PT400" \
	"$(rest coupon_merchant "$JWT" '{"idempotency-key": ""}' "SELECT coupon.issue($P, 'rest-u4')")" "ERROR: PT400"

diag "--- the merchant's own reads and administration"
JWT2="{\"role\": \"coupon_merchant\", \"merchant_id\": $M2}"
C1=$(query "$DB" "SELECT id FROM coupon.issue($P, 'adm-u1')")
check "a merchant revokes its own coupon: cancelled" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT status FROM coupon.revoke_coupon($C1, 'sent by mistake')" | sed -n 1p)" "cancelled"
check "validate() then answers coupon_cancelled" \
	"$(query "$DB" "SELECT reason FROM coupon.validate($C1, 'adm-u1', $M, 5000)")" "coupon_cancelled"
check "revoking it again answers the same" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT status FROM coupon.revoke_coupon($C1)" | sed -n 1p)" "cancelled"
C2=$(query "$DB" "SELECT id FROM coupon.issue($P, 'adm-u2')")
query "$DB" "SELECT coupon.confirm((coupon.reserve($C2, 'adm-u2', $M, 'adm-o2', 5000)).id)" >/dev/null
check "a used coupon cannot be revoked (PT409)" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT status FROM coupon.revoke_coupon($C2)")" "ERROR: PT409"
C3=$(query "$DB" "SELECT id FROM coupon.issue($P, 'adm-u3')")
check "another merchant cannot revoke it (PT403)" \
	"$(rest coupon_merchant "$JWT2" '{}' "SELECT status FROM coupon.revoke_coupon($C3)")" "ERROR: PT403"
check "a merchant reads its policy's coupons" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT count(*) FROM coupon.policy_coupons($P)" | sed -n 1p)" \
	"$(query "$DB" "SELECT count(*) FROM coupon.coupon WHERE policy_id = $P")"
check "but not another merchant's (PT403)" \
	"$(rest coupon_merchant "$JWT2" '{}' "SELECT count(*) FROM coupon.policy_coupons($P)")" "ERROR: PT403"
check "find_payment: the payment of an order, with its coupons" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT (p ->> 'order_id') || ' ' || jsonb_array_length(p -> 'coupons')
	                                       FROM coupon.find_payment($M, 'rest-o1') p" | sed -n 1p)" "rest-o1 0"
check "an order without a payment is PT404, another merchant's order PT403" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT coupon.find_payment($M, 'no-such-order')") $(rest coupon_merchant "$JWT2" '{}' "SELECT coupon.find_payment($M, 'rest-o1')")" \
	"ERROR: PT404 ERROR: PT403"
check "a merchant's session sees no gateway internals or last_error in payment_status" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT (s ? 'last_error') OR EXISTS (SELECT 1 FROM jsonb_array_elements(s -> 'events') e
	                                              WHERE e ?| array['error', 'gateway_code', 'http_status', 'idempotency_key'])
	                                       FROM coupon.payment_status($Y) s" | sed -n 1p)" "f"
check "merchant_stats and policy_stats show a merchant only its own rows" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT (SELECT string_agg(DISTINCT merchant_id::text, ',') FROM coupon.merchant_stats) || ' ' ||
	                                              (SELECT string_agg(DISTINCT merchant_id::text, ',') FROM coupon.policy_stats)" | sed -n 1p)" \
	"$M $M"
check "merchant_stats counts the coupon used today and who funds its discount" \
	"$(query "$DB" "SELECT coupons_used || ' ' || discount_merchant || ' ' || discount_platform FROM coupon.merchant_stats
	                 WHERE merchant_id = $M AND day = current_date")" "1 500 0"
F=$(query "$DB" "SELECT id FROM coupon.create_policy($M, 'two left', 'fixed', 100, issue_method => 'fcfs',
                                                     total_quantity => 2, per_user_limit => NULL)")
query "$DB" "SELECT coupon.issue($F, 'fc-' || g) FROM generate_series(1, 2) g" >/dev/null
check "update_policy: a merchant renames its sold-out fcfs policy and gives it 3 more units" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT name || ' ' || total_quantity FROM coupon.update_policy($F, name => 'five in all', total_quantity => 5)" | sed -n 1p)" \
	"five in all 5"
check "the 3 new units are issued, then it is sold out again" \
	"$(query "$DB" "SELECT count(*) FROM (SELECT coupon.issue($F, 'fc-more-' || g) FROM generate_series(1, 3) g) z") $(rest coupon_merchant "$JWT" '{}' "SELECT coupon.issue($F, 'fc-late')")" \
	"3 ERROR: PT409"
check "a quantity may not shrink, and a bad change changes nothing (PT400)" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT coupon.update_policy($F, name => 'renamed', total_quantity => 4)") $(query "$DB" "SELECT name FROM coupon.policy WHERE id = $F")" \
	"ERROR: PT400 five in all"
check "another merchant cannot change it (PT403)" \
	"$(rest coupon_merchant "$JWT2" '{}' "SELECT coupon.update_policy($F, name => 'mine')")" "ERROR: PT403"
PC=$(query "$DB" "SELECT id FROM coupon.create_policy($M, 'by code', 'fixed', 100, issue_method => 'code', per_user_limit => NULL)")
CODE=$(query "$DB" "SELECT coupon.generate_codes($PC, 1)")
check "a customer who redeems a code gets its coupon without the code's HMAC" \
	"$(rest coupon_customer '{"role": "coupon_customer", "sub": "adm-u9"}' '{}' "SELECT status || ' ' || (code_hash IS NULL) FROM coupon.redeem_code('$CODE', 'adm-u9')" | sed -n 1p)" \
	"issued true"
check "the platform sees it" \
	"$(query "$DB" "SELECT code_hash IS NOT NULL FROM coupon.coupon WHERE user_id = 'adm-u9'")" "t"
YE=$(query "$DB" "SELECT id FROM coupon.pay($M, 'adm-u10', 'adm-o10', 5000)")
query "$DB" "UPDATE coupon.payment SET last_error = 'PROVIDER_ERROR: upstream said something' WHERE id = $YE" >/dev/null
check "a merchant's session gets payments back without the gateway's error text" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT last_error IS NULL FROM coupon.cancel_payment($YE, 'no')" | sed -n 1p) $(query "$DB" "SELECT last_error IS NOT NULL FROM coupon.payment WHERE id = $YE")" \
	"t t"
check "a merchant cannot suspend merchants" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT * FROM coupon.set_merchant_status($M2, 'suspended')")" "ERROR: 42501"
check "the platform suspends one: it can take no payment" \
	"$(query "$DB" "SELECT current_status FROM coupon.set_merchant_status($M2, 'suspended')") $(rest coupon_merchant "$JWT2" '{}' "SELECT coupon.pay($M2, 'adm-u4', 'adm-o4', 5000)")" \
	"suspended ERROR: PT422"
check "and resumes it" \
	"$(query "$DB" "SELECT current_status FROM coupon.set_merchant_status($M2, 'active')") $(rest coupon_merchant "$JWT2" '{}' "SELECT state FROM coupon.pay($M2, 'adm-u4', 'adm-o4', 5000)" | sed -n 1p)" \
	"active pending"

diag "--- requests per minute"
M3=$(query "$DB" "SELECT id FROM coupon.create_merchant('limited shop')")
JWT3="{\"role\": \"coupon_merchant\", \"merchant_id\": $M3}"
query "$DB" "SELECT coupon.set_rate_limit($M3, 2)" >/dev/null
IFS='|' read -r CID6 SECRET6 _ <<<"$(query "$DB" "SELECT * FROM coupon.merchant_credentials($M3)")"
H6="{\"x-client-id\": \"$CID6\", \"x-client-secret\": \"$SECRET6\"}"
# (2 a minute: a burst of 2, then one every 30 s; the test takes far less)
check "a client of a merchant limited to 2 a minute makes 2 requests at once" \
	"$(rest coupon_anonymous '' "$H6" "SELECT 'in'" | sed -n 1p) $(rest coupon_anonymous '' "$H6" "SELECT 'in'" | sed -n 1p)" "in in"
RAISED=$(as_pg psql -X -q -At -U "$AUTH" -d "$DB" -v ON_ERROR_STOP=1 -v headers="$H6" 2>&1 <<'SQL' || true
\set VERBOSITY verbose
BEGIN;
SELECT FROM set_config('role', 'coupon_anonymous', true) a, set_config('request.headers', :'headers', true) b;
SELECT coupon.pre_request();
SQL
)
check_match "the third is refused the way PostgREST turns into HTTP 429 rate_limited with Retry-After" \
	"$(echo $RAISED)" 'PGRST: \{"code": "PT429".*rate_limited.*DETAIL: \{"status": 429, "headers": \{"X-Trace-Id": "[0-9a-f]{32}", "Retry-After": "([1-2][0-9]|30)"\}\}'
check "another client of the same merchant (its web sessions) has a bucket of its own" \
	"$(rest coupon_merchant "$JWT3" '{}' "SELECT 'in'" | sed -n 1p)" "in"
check "a merchant without a limit is not counted" \
	"$(for i in 1 2 3 4; do rest coupon_merchant "$JWT" '{}' "SELECT 'in'" | sed -n 1p; done | sort -u)" "in"
check "nobody draws on another merchant's buckets" \
	"$(rest coupon_merchant "$JWT" '{}' "SELECT coupon.take_request_token($M3, 'client:$CID6')")" "ERROR: PT403"
check "only the platform sets limits" \
	"$(rest coupon_merchant "$JWT3" '{}' "SELECT coupon.set_rate_limit($M3, NULL)")" "ERROR: 42501"

diag "--- roles"
check "the anonymous role reaches no API function" \
	"$(rest coupon_anonymous '' '{}' "SELECT coupon.issue($P, 'rest-u5')")" "ERROR: 42501"
check "the monitoring role reads the workers, stuck payments and statistics" \
	"$(query "$DB" "SET ROLE coupon_monitor; SELECT (SELECT count(*) >= 0 FROM coupon.worker_status)
	                   AND (SELECT count(*) >= 0 FROM coupon.stuck_payments)
	                   AND (SELECT count(*) > 0 FROM coupon.policy_stats)")" "t"
check "and nothing else" \
	"$(query "$DB" "SET ROLE coupon_monitor; SELECT count(*) FROM coupon.payment" 2>&1 | grep -c 'permission denied')" 1

psql_db "$DB" -c "DROP OWNED BY $AUTH" -c "DROP ROLE $AUTH" >/dev/null
load_finish
