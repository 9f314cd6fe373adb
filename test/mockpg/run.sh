#!/bin/bash
# test/mockpg/run.sh: drives coupon-mockpg with curl and checks every
# endpoint, error, idempotency rule, fault switch, magic key, the journal
# across restarts (clean and kill -9), bad requests, and one run under
# valgrind.  Output is TAP; the exit status is non-zero on any failure.
#
# Run from anywhere (it runs `make mockpg` first):  test/mockpg/run.sh
# Needs: bash, curl, valgrind (set MOCKPG_SKIP_VALGRIND=1 to skip that part).
# Servers listen on 127.0.0.1 only, on ports the kernel picks (--port 0).
#
# No assertion depends on timing: a stalled answer is detected by curl's
# --max-time being far below --stall-ms, then the outcome is read with GET.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${MOCKPG_BIN:-$ROOT/mockpg/coupon-mockpg}
SECRET=test_sk_mockpg_secret
TMP=$(mktemp -d "${TMPDIR:-/tmp}/mockpg-test.XXXXXX")
PIDS=()

# Kill whatever we started and remove our files, however the script ends.
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
		fi
	done
	rm -rf "$TMP"
}
trap cleanup EXIT

# the mock is not part of the extension's build: make it here (a no-op when
# it is current), unless MOCKPG_BIN names a binary built elsewhere
if [ -z "${MOCKPG_BIN:-}" ] && ! make -s -C "$ROOT" mockpg >/dev/null; then
	echo "Bail out! make mockpg failed"
	exit 1
fi
if [ ! -x "$BIN" ]; then
	echo "Bail out! $BIN not built; run: make mockpg"
	exit 1
fi
if ! command -v curl >/dev/null; then
	echo "Bail out! curl is not installed (Debian package: curl)"
	exit 1
fi
if [ "${MOCKPG_SKIP_VALGRIND:-0}" != 1 ] && ! command -v valgrind >/dev/null; then
	echo "Bail out! valgrind is not installed (Debian package: valgrind; MOCKPG_SKIP_VALGRIND=1 skips that part)"
	exit 1
fi

# ---------------------------------------------------------------- TAP helpers
n=0
failed=0

pass() { n=$((n + 1)); echo "ok $n - $1"; }

fail() {
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	echo "#   code: ${CODE:-} body: $(printf '%s' "${BODY:-}" | head -c 400)"
}

# check DESC COMMAND...: pass if the command succeeds.
check() {
	local desc=$1
	shift
	if "$@"; then pass "$desc"; else fail "$desc"; fi
}

# has TEXT: the last answer's body contains TEXT literally.
has() { grep -qF -- "$1" <<<"$BODY"; }

# lacks TEXT: the last answer's body does not contain TEXT.
lacks() { ! grep -qF -- "$1" <<<"$BODY"; }

# field NAME: the value of a number or string member of the last body.
field() {
	sed -n "s/.*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p" <<<"$BODY" | head -n 1
}

# js EXPR: the Python expression EXPR holds of the last body, parsed as d.
js() {
	python3 -c 'import json, sys; d = json.loads(sys.stdin.read()); sys.exit(0 if eval(sys.argv[1]) else 1)' \
		"$1" <<<"$BODY" 2>/dev/null
}

# shape KIND [STATUS]: the last body has Toss's shape, member by member
# (test/mockpg/toss_shape.py: payment STATUS, transactions or error); the
# problems it finds are printed as TAP comments.
shape() {
	local out
	if out=$(python3 "$ROOT/test/mockpg/toss_shape.py" "$@" <<<"$BODY" 2>&1); then
		return 0
	fi
	printf '%s\n' "$out" | head -n 20 | sed 's/^/#   /'
	return 1
}

# count TEXT: how many times TEXT occurs in the last body.
count() { grep -oF -- "$1" <<<"$BODY" | wc -l | tr -d ' '; }

# expect DESC STATUS [ERROR_CODE]: the last answer had this status (and code).
expect() {
	local desc=$1 status=$2 code=${3:-}
	if [ "$CODE" = "$status" ] &&
		{ [ -z "$code" ] || { has "\"code\":\"$code\"" && has '"message":"'; }; }; then
		pass "$desc"
	else
		fail "$desc (wanted $status${code:+ $code})"
	fi
}

# ------------------------------------------------------------- HTTP helpers
CURL=(curl -s --max-time 30)

# req METHOD PATH [BODY [CURL_ARGS...]]: authenticated request; sets CODE, BODY.
req() {
	local method=$1 path=$2 body=${3:-}
	shift $(($# < 3 ? $# : 3))
	local args=(-o "$TMP/body" -w '%{http_code}' -X "$method" -u "$SECRET:")
	if [ -n "$body" ]; then
		args+=(-H 'Content-Type: application/json' --data-binary "$body")
	fi
	CURL_RC=0
	CODE=$("${CURL[@]}" "${args[@]}" "$@" "$BASE$path") || CURL_RC=$?
	BODY=$(cat "$TMP/body" 2>/dev/null || true)
	rm -f "$TMP/body"
}

# raw PATH CURL_ARGS...: a request with full control over curl's arguments.
raw() {
	local path=$1
	shift
	CURL_RC=0
	CODE=$("${CURL[@]}" -o "$TMP/body" -w '%{http_code}' "$@" "$BASE$path") || CURL_RC=$?
	BODY=$(cat "$TMP/body" 2>/dev/null || true)
	rm -f "$TMP/body"
}

# confirm KEY ORDER AMOUNT [CURL_ARGS...]
confirm() {
	local key=$1 order=$2 amount=$3
	shift 3
	req POST /v1/payments/confirm "{\"paymentKey\":\"$key\",\"orderId\":\"$order\",\"amount\":$amount}" "$@"
}

# set_faults JSON: change the fault switches at run time.
set_faults() { req POST /__mock/faults "$1"; }

# ------------------------------------------------------------ server helpers
# start_server NAME [FLAGS...]: start a server on a free port; sets PORT,
# BASE and SPID.  Waits for the "listening" line (or the process's death).
start_server() {
	local name=$1
	shift
	start_cmd "$name" "$BIN" --port 0 --secret "$SECRET" --pid-file "$TMP/$name.pid" "$@"
}

# start_cmd NAME COMMAND...: like start_server, for a full command line.
start_cmd() {
	local name=$1
	shift
	: >"$TMP/$name.out"
	"$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
	SPID=$!
	PIDS+=("$SPID")
	local i
	for i in $(seq 1 1200); do
		if grep -q '^coupon-mockpg listening on ' "$TMP/$name.out"; then
			PORT=$(sed -n 's/^coupon-mockpg listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$TMP/$name.out")
			BASE="http://127.0.0.1:$PORT"
			return 0
		fi
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	echo "Bail out! server $name did not start:"
	sed 's/^/#   /' "$TMP/$name.err"
	exit 1
}

# stop_server [SIGNAL]: stop the current server; its exit status goes to STOP_RC.
stop_server() {
	local sig=${1:-TERM}
	STOP_RC=0
	kill "-$sig" "$SPID"
	wait "$SPID" 2>/dev/null || STOP_RC=$?
}

# exits_within SECONDS PID: a generous liveness cap, never a measurement.
exits_within() {
	local i
	for i in $(seq 1 $(($1 * 10))); do
		kill -0 "$2" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# a bare date in /v1/transactions is a day in Korea (+09:00), as at Toss
today=$(date -u -d '+9 hours' +%Y-%m-%d)

# ================================================================ command line
echo "# command line"
rc=0; "$BIN" --help >"$TMP/help" 2>&1 || rc=$?
check "--help exits 0 and shows usage" test "$rc" = 0 -a -n "$(grep -F 'Usage: coupon-mockpg --port N --secret KEY' "$TMP/help")"

bad_cli() {
	local desc=$1 want=$2
	shift 2
	local rc=0
	"$BIN" "$@" >"$TMP/cli.out" 2>"$TMP/cli.err" </dev/null || rc=$?
	if [ "$rc" = 2 ] && grep -qF -- "$want" "$TMP/cli.err"; then
		pass "$desc"
	else
		fail "$desc (rc=$rc: $(head -c 200 "$TMP/cli.err"))"
	fi
}
bad_cli "missing --port is refused" "--port is required" --secret x
bad_cli "missing --secret is refused" "--secret is required" --port 0
bad_cli "non-numeric --port is refused" 'invalid value "abc" for --port' --port abc --secret x
bad_cli "out-of-range --port is refused" 'invalid value "70000" for --port' --port 70000 --secret x
bad_cli "--decline-rate above 1 is refused" 'invalid value "1.5" for --decline-rate' --port 0 --secret x --decline-rate 1.5
bad_cli "negative --latency-ms is refused" 'invalid value "-1" for --latency-ms' --port 0 --secret x --latency-ms -1
bad_cli "unknown flag is refused" 'unknown option "--frobnicate"' --port 0 --secret x --frobnicate
bad_cli "flag without value is refused" "--secret needs a value" --port 0 --secret

rc=0; "$BIN" --port 0 --secret x --bind not-an-address >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a non-numeric --bind address is refused" test "$rc" = 1 -a -n "$(grep -F 'not a numeric IPv4 or IPv6 address' "$TMP/cli.err")"

# ================================================================ main server
echo "# main server"
start_server main --stall-ms 600000 --seed 1
MAIN_PID=$SPID
check "--port 0 prints the chosen port" test -n "$PORT"
check "--pid-file holds the server's pid" test "$(cat "$TMP/main.pid")" = "$SPID"

rc=0; "$BIN" --port "$PORT" --secret x >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a port already in use is reported" test "$rc" = 1 -a -n "$(grep -F 'cannot bind 127.0.0.1 port' "$TMP/cli.err")"

raw /__mock/health
expect "GET /__mock/health answers without auth" 200
check "health says UP" has '"status":"UP"'

# ------------------------------------------------------------------ auth
echo "# auth"
body='{"paymentKey":"pk_auth","orderId":"order_auth","amount":1000}'
raw /v1/payments/confirm -d "$body"
expect "no Authorization header -> 401 UNAUTHORIZED_KEY" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -u "wrong_key:" -d "$body"
expect "wrong secret -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -u "$SECRET:x" -d "$body"
expect "secret with a password -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -H "Authorization: Basic $(printf '%s' "$SECRET" | base64 -w0)" -d "$body"
expect "secret without the trailing colon -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -H "Authorization: Bearer $SECRET" -d "$body"
expect "Bearer scheme -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -H "Authorization: Basic %%%not-base64" -d "$body"
expect "malformed base64 -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/pk_auth -u "wrong_key:"
expect "GET with a wrong secret -> 401" 401 UNAUTHORIZED_KEY
raw /v1/payments/confirm -H "Authorization: basic $(printf '%s:' "$SECRET" | base64 -w0)" \
	-H 'Content-Type: application/json' -d "$body"
expect "the right secret (scheme in any case) is accepted" 200

# ------------------------------------------------------------------ confirm
echo "# confirm"
confirm pk_1 order_1 15000
expect "confirm -> 200" 200
check "confirm: status DONE" has '"status":"DONE"'
check "confirm: paymentKey and orderId echoed" js 'd["paymentKey"] == "pk_1" and d["orderId"] == "order_1"'
check "confirm: totalAmount and balanceAmount" has '"totalAmount":15000,"balanceAmount":15000'
check "confirm: approvedAt is ISO 8601 in Korea's time (+09:00)" \
	grep -qE '"approvedAt":"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\+09:00"' <<<"$BODY"
check "confirm: method is Toss's Korean label 카드" has '"method":"카드"'
check "confirm: cancels is null before any cancel" has '"cancels":null'
check "confirm: the whole Payment object of Toss v1, DONE" shape payment DONE
check "confirm: suppliedAmount 13636 and vat 1364 of 15000 (Toss's own example)" \
	has '"suppliedAmount":13636,"vat":1364,"cultureExpense":false,"taxFreeAmount":0'
first_confirm=$BODY

confirm pk_1 order_1 15000
expect "confirming the same payment again -> 200" 200
check "re-confirm shows the same payment" test "$BODY" = "$first_confirm"
confirm pk_1 order_1 16000
expect "same orderId, other amount -> ALREADY_PROCESSED_PAYMENT" 400 ALREADY_PROCESSED_PAYMENT
confirm pk_other order_1 15000
expect "same orderId, other paymentKey -> ALREADY_PROCESSED_PAYMENT" 400 ALREADY_PROCESSED_PAYMENT
confirm pk_1 order_other 15000
expect "same paymentKey, other orderId -> ALREADY_PROCESSED_PAYMENT" 400 ALREADY_PROCESSED_PAYMENT
req GET /v1/payments/orders/order_other
expect "the refused confirm recorded nothing" 404 NOT_FOUND_PAYMENT

confirm pk_max order_max 1000000000000000
expect "amount of exactly 10^15 is accepted" 200

# ------------------------------------------------------------------ bad requests
echo "# bad requests"
bad_body() {
	local desc=$1 body=$2
	req POST /v1/payments/confirm "$body"
	expect "$desc -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
}
bad_body "malformed JSON" '{"paymentKey":"pk_bad","orderId":'
bad_body "trailing garbage" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":1} x'
bad_body "JSON array instead of object" '["pk_bad","o_bad",1]'
bad_body "JSON string instead of object" '"hello"'
bad_body "missing paymentKey" '{"orderId":"o_bad","amount":1000}'
bad_body "missing orderId" '{"paymentKey":"pk_bad","amount":1000}'
bad_body "missing amount" '{"paymentKey":"pk_bad","orderId":"o_bad"}'
bad_body "null amount" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":null}'
bad_body "amount as a string" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":"1000"}'
bad_body "amount as a float" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":1000.5}'
bad_body "amount in exponent form" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":1e3}'
bad_body "negative amount" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":-1000}'
bad_body "zero amount" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":0}'
bad_body "amount above 10^15" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":1000000000000001}'
bad_body "amount beyond 64 bits" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":123456789012345678901234567890}'
bad_body "paymentKey as a number" '{"paymentKey":42,"orderId":"o_bad","amount":1000}'
bad_body "orderId as an object" '{"paymentKey":"pk_bad","orderId":{"id":1},"amount":1000}'
bad_body "empty paymentKey" '{"paymentKey":"","orderId":"o_bad","amount":1000}'
bad_body "paymentKey with a slash" '{"paymentKey":"pk/bad","orderId":"o_bad","amount":1000}'
bad_body "paymentKey over 200 characters" "{\"paymentKey\":\"$(printf 'k%.0s' $(seq 1 201))\",\"orderId\":\"o_bad\",\"amount\":1000}"
bad_body "empty orderId" '{"paymentKey":"pk_bad","orderId":"","amount":1000}'
bad_body "orderId with a control character" '{"paymentKey":"pk_bad","orderId":"o\nbad","amount":1000}'
bad_body "orderId over 200 characters" "{\"paymentKey\":\"pk_bad\",\"orderId\":\"$(printf 'o%.0s' $(seq 1 201))\",\"amount\":1000}"
bad_body "duplicate member" '{"paymentKey":"pk_bad","orderId":"o_bad","amount":1,"amount":2}'
bad_body "NUL escape in a string" '{"paymentKey":"pk\u0000bad","orderId":"o_bad","amount":1000}'
req POST /v1/payments/confirm
expect "empty body -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
printf '\xff\xfe\x00\x01garbage' >"$TMP/binary"
raw /v1/payments/confirm -u "$SECRET:" --data-binary @"$TMP/binary"
expect "binary garbage -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
head -c 60000 /dev/zero | tr '\0' '[' >"$TMP/deep"
raw /v1/payments/confirm -u "$SECRET:" --data-binary @"$TMP/deep"
expect "60000 nested arrays -> 400, no crash" 400 INVALID_REQUEST
head -c 70000 /dev/zero | tr '\0' 'x' >"$TMP/big"
raw /v1/payments/confirm -u "$SECRET:" --data-binary @"$TMP/big"
expect "body over 64 KiB (Content-Length) -> 413" 413 INVALID_REQUEST
raw /v1/payments/confirm -u "$SECRET:" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big"
expect "body over 64 KiB (chunked) -> 413" 413 INVALID_REQUEST
head -c 5000000 /dev/zero | tr '\0' 'x' >"$TMP/huge"
raw /v1/payments/confirm -u "$SECRET:" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/huge"
expect "5 MB chunked body -> 413" 413 INVALID_REQUEST
{ printf '{"paymentKey":"pk_64k","orderId":"order_64k","amount":1000,"pad":"'
  head -c 65400 /dev/zero | tr '\0' 'p'; printf '"}'; } >"$TMP/64k"
raw /v1/payments/confirm -u "$SECRET:" --data-binary @"$TMP/64k"
expect "a valid body just under 64 KiB is accepted" 200
req GET /v1/nowhere
expect "unknown /v1 path -> 404 NOT_FOUND" 404 NOT_FOUND
raw /nowhere
expect "unknown path -> 404 NOT_FOUND" 404 NOT_FOUND
raw /__mock/nowhere
expect "unknown /__mock path -> 404 NOT_FOUND" 404 NOT_FOUND
req GET /v1/payments/confirm
expect "GET on confirm -> 405" 405 METHOD_NOT_ALLOWED
req DELETE /v1/payments/pk_1
expect "DELETE on a payment -> 405" 405 METHOD_NOT_ALLOWED
req GET /v1/payments/pk_1/cancel
expect "GET on cancel -> 405" 405 METHOD_NOT_ALLOWED
req POST /v1/transactions '{}'
expect "POST on transactions -> 405" 405 METHOD_NOT_ALLOWED
req GET /v1/payments/pk_1/refund
expect "unknown payment sub-path -> 404" 404 NOT_FOUND
raw /v1/payments/confirm -u "$SECRET:" -X POST -H 'Content-Type: application/json' \
	--data-binary '{"paymentKey":"pk_hdr","orderId":"order_hdr","amount":1}' \
	-H "X-Big: $(head -c 40000 /dev/zero | tr '\0' 'h')"
check "oversized headers are refused with 431" test "$CODE" = 431

# ------------------------------------------------------------------ lookups
echo "# lookups"
req GET /v1/payments/pk_1
expect "GET /v1/payments/{paymentKey} -> 200" 200
check "lookup by key returns the payment" test "$BODY" = "$first_confirm"
req GET /v1/payments/orders/order_1
expect "GET /v1/payments/orders/{orderId} -> 200" 200
check "lookup by order returns the payment" test "$BODY" = "$first_confirm"
req GET /v1/payments/pk_nope
expect "unknown paymentKey -> 404 NOT_FOUND_PAYMENT" 404 NOT_FOUND_PAYMENT
req GET /v1/payments/orders/order_nope
expect "unknown orderId -> 404 NOT_FOUND_PAYMENT" 404 NOT_FOUND_PAYMENT
confirm pk_utf8 '주문 1/2#x+y' 500
expect "orderId with UTF-8, space, slash, # and + is accepted" 200
req GET '/v1/payments/orders/%EC%A3%BC%EB%AC%B8%201%2F2%23x%2By'
expect "URL-encoded orderId is found" 200
check "URL-encoded lookup returns that payment" has '"paymentKey":"pk_utf8"'

# ------------------------------------------------------------------ cancel
echo "# cancel"
confirm pk_c order_c 1000
req POST /v1/payments/pk_c/cancel '{"cancelReason":"customer asked","cancelAmount":300}'
expect "partial cancel -> 200" 200
check "partial cancel: PARTIAL_CANCELED" has '"status":"PARTIAL_CANCELED"'
check "partial cancel: balanceAmount reduced" has '"totalAmount":1000,"balanceAmount":700'
check "partial cancel: cancels[] has the cancel" \
	js 'd["cancels"][0]["cancelReason"] == "customer asked" and d["cancels"][0]["cancelAmount"] == 300'
check "partial cancel: the whole Payment object, PARTIAL_CANCELED" shape payment PARTIAL_CANCELED
req POST /v1/payments/pk_c/cancel '{"cancelReason":"too much","cancelAmount":701}'
expect "cancel more than is left -> NOT_CANCELABLE_AMOUNT" 400 NOT_CANCELABLE_AMOUNT
req POST /v1/payments/pk_c/cancel '{"cancelReason":"zero","cancelAmount":0}'
expect "cancelAmount 0 -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel '{"cancelReason":"neg","cancelAmount":-5}'
expect "negative cancelAmount -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel '{"cancelReason":"str","cancelAmount":"5"}'
expect "cancelAmount as a string -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel '{"cancelAmount":5}'
expect "missing cancelReason -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel '{"cancelReason":""}'
expect "empty cancelReason -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel 'not json'
expect "malformed cancel body -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_c/cancel '{"cancelReason":"rest"}'
expect "cancel without amount cancels the rest -> 200" 200
check "full cancel: CANCELED with balance 0" has '"status":"CANCELED"'
check "full cancel: balanceAmount 0" has '"balanceAmount":0'
check "full cancel: two cancels listed" test "$(count '"cancelStatus":"DONE"')" = 2
check "full cancel: the whole Payment object, CANCELED (supplied amount and vat 0)" shape payment CANCELED
req POST /v1/payments/pk_c/cancel '{"cancelReason":"again"}'
expect "cancel of a fully canceled payment -> ALREADY_CANCELED_PAYMENT" 400 ALREADY_CANCELED_PAYMENT
req POST /v1/payments/pk_c/cancel '{"cancelReason":"again","cancelAmount":1}'
expect "any cancel of a fully canceled payment is refused" 400 ALREADY_CANCELED_PAYMENT
req POST /v1/payments/pk_missing/cancel '{"cancelReason":"x"}'
expect "cancel of an unknown payment -> 404 NOT_FOUND_PAYMENT" 404 NOT_FOUND_PAYMENT
req GET /v1/payments/orders/order_c
check "GET after cancels shows CANCELED and both cancels" \
	test "$(field status)" = CANCELED -a "$(count '"cancelStatus":"DONE"')" = 2

# ------------------------------------------------------------------ VAT
echo "# supplied amount, VAT and tax-free amounts"
# vat = (balance - taxFreeAmount) / 11 rounded half up; suppliedAmount the rest
amounts() { # amounts BALANCE SUPPLIED VAT TAXFREE: the last Payment says so
	js "(d['balanceAmount'], d['suppliedAmount'], d['vat'], d['taxFreeAmount']) == ($1, $2, $3, $4)"
}
confirm pk_vat1 order_vat1 9026
check "9026: supplied 8205, vat 821 (820.5 rounds up)" amounts 9026 8205 821 0
confirm pk_vat2 order_vat2 30000
check "30000: supplied 27273, vat 2727 (2727.27 rounds down)" amounts 30000 27273 2727 0
req POST /v1/payments/confirm '{"paymentKey":"pk_tf","orderId":"order_tf","amount":15000,"taxFreeAmount":4000}'
expect "confirm with taxFreeAmount -> 200" 200
check "15000 of which 4000 tax-free: supplied 10000, vat 1000" amounts 15000 10000 1000 4000
check "... and the whole Payment object" shape payment DONE
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"part","cancelAmount":9000}'
check "a cancel without taxFreeAmount takes the taxable part first: 6000 left, 4000 tax-free" \
	amounts 6000 1818 182 4000
check "... its cancel says taxFreeAmount 0" js 'd["cancels"][-1]["taxFreeAmount"] == 0'
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"free part","cancelAmount":3000,"taxFreeAmount":3000}'
check "a cancel of 3000, all tax-free: 3000 left, 1000 tax-free" amounts 3000 1818 182 1000
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"x","cancelAmount":100,"taxFreeAmount":200}'
expect "taxFreeAmount above cancelAmount -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"x","cancelAmount":2500,"taxFreeAmount":0}'
expect "more taxable than the taxable 2000 left -> NOT_CANCELABLE_AMOUNT" 400 NOT_CANCELABLE_AMOUNT
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"x","cancelAmount":1100,"taxFreeAmount":1100}'
expect "more tax-free than the 1000 left -> NOT_CANCELABLE_AMOUNT" 400 NOT_CANCELABLE_AMOUNT
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"part","cancelAmount":1500,"taxFreeAmount":0}'
check "1500 more, taxable: 1500 left of which 1000 tax-free: supplied 455, vat 45" amounts 1500 455 45 1000
req POST /v1/payments/pk_tf/cancel '{"cancelReason":"rest"}'
check "the rest: CANCELED, every amount 0" amounts 0 0 0 0
check "... the last cancel took the tax-free 1000" js 'd["cancels"][-1]["taxFreeAmount"] == 1000 and d["cancels"][-1]["cancelAmount"] == 1500'
check "... the whole Payment object, four cancels" shape payment CANCELED
req POST /v1/payments/confirm '{"paymentKey":"pk_tf2","orderId":"order_tf2","amount":500,"taxFreeAmount":500}'
check "all tax-free: supplied 0, vat 0" amounts 500 0 0 500
req POST /v1/payments/confirm '{"paymentKey":"pk_tf3","orderId":"order_tf3","amount":500,"taxFreeAmount":501}'
expect "taxFreeAmount above amount -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/confirm '{"paymentKey":"pk_tf3","orderId":"order_tf3","amount":500,"taxFreeAmount":-1}'
expect "negative taxFreeAmount -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/confirm '{"paymentKey":"pk_tf3","orderId":"order_tf3","amount":500,"taxFreeAmount":"100"}'
expect "taxFreeAmount as a string -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req POST /v1/payments/confirm '{"paymentKey":"pk_tf2","orderId":"order_tf2","amount":500}'
expect "the same order confirmed with another taxFreeAmount is refused" 400 ALREADY_PROCESSED_PAYMENT

# ------------------------------------------------------------------ errors
echo "# error envelope"
raw /v1/payments/confirm -d '{}'
check "401: exactly {code, message}" shape error
req POST /v1/payments/confirm 'nope'
check "400: exactly {code, message}" shape error
req GET /v1/payments/pk_nope
check "404: exactly {code, message}" shape error
req POST /v1/payments/pk_1/cancel '{"cancelReason":"x","cancelAmount":999999}'
check "400 NOT_CANCELABLE_AMOUNT: exactly {code, message}" shape error

# ------------------------------------------------------------------ transactions
echo "# transactions"
req GET "/v1/transactions?startDate=$today&endDate=$today"
expect "GET /v1/transactions for today -> 200" 200
check "transactions: a JSON array" grep -qE '^\[.*\]$' <<<"$BODY"
tx_of() { # tx_of KEY TYPE AMOUNT STATUS: the list has that transaction
	js "any(t['paymentKey'] == '$1' and t['orderId'] == 'order_c' and t['type'] == '$2' and t['amount'] == $3 and t['status'] == '$4' for t in d)"
}
check "transactions: the approval of pk_c" tx_of pk_c APPROVE 1000 DONE
check "transactions: the partial cancel of pk_c" tx_of pk_c CANCEL 300 PARTIAL_CANCELED
check "transactions: the final cancel of pk_c" tx_of pk_c CANCEL 700 CANCELED
check "transactions: every record has Toss's members (method 카드, +09:00), then type" shape transactions
check "transactions: each has transactionKey and transactionAt" \
	test "$(count '"transactionKey":"')" = "$(count '"transactionAt":"')" -a "$(count '"transactionKey":"')" -ge 3
req GET "/v1/transactions?startDate=2000-01-01&endDate=2000-12-31"
expect "transactions for a past year -> 200" 200
check "transactions for a past year are empty" test "$BODY" = "[]"
req GET "/v1/transactions?startDate=2000-01-01T00:00:00%2B09:00&endDate=2999-12-31T23:59:59Z"
check "full ISO timestamps with offsets are accepted" has '"paymentKey":"pk_c"'
req GET /v1/payments/pk_c
read -r c_kst c_utc <<<"$(python3 -c 'import datetime, json, sys
t = datetime.datetime.fromisoformat(json.loads(sys.argv[1])["approvedAt"])
print(t.strftime("%Y-%m-%dT%H:%M:%S"), t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))' "$BODY")"
req GET "/v1/transactions?startDate=${c_kst}&endDate=${c_kst}"
check "a time without an offset is Korea's time, as at Toss" has '"paymentKey":"pk_c"'
req GET "/v1/transactions?startDate=${c_utc}Z&endDate=${c_utc}Z"
check "... and the same instant with Z finds the same approval" has '"paymentKey":"pk_c"'
req GET "/v1/transactions?startDate=${c_utc}&endDate=${c_utc}"
check "... which its UTC wall time without an offset does not" lacks '"paymentKey":"pk_c"'
req GET "/v1/transactions?startDate=$today"
expect "missing endDate -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req GET "/v1/transactions?startDate=yesterday&endDate=$today"
expect "malformed startDate -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req GET "/v1/transactions?startDate=2026-02-30&endDate=2026-03-01"
expect "impossible date -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req GET "/v1/transactions?startDate=2026-02-01&endDate=2026-01-01"
expect "startDate after endDate -> 400 INVALID_REQUEST" 400 INVALID_REQUEST

# pages: limit and startingAfter walk the same list, page by page
req GET "/v1/transactions?startDate=$today&endDate=$today"
page_all=$BODY
page_keys=""
page_after=""
for _ in $(seq 1 50); do
	req GET "/v1/transactions?startDate=$today&endDate=$today&limit=2${page_after:+&startingAfter=$page_after}"
	page_n=$(python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' <<<"$BODY")
	page_keys="$page_keys$(python3 -c 'import json, sys; print(" ".join(t["transactionKey"] for t in json.load(sys.stdin)))' <<<"$BODY") "
	[ "$page_n" -eq 2 ] || break
	page_after=$(python3 -c 'import json, sys; print(json.load(sys.stdin)[-1]["transactionKey"])' <<<"$BODY")
done
check "pages of 2 (limit, startingAfter) hold the whole list, in order, once" \
	test "$(echo $page_keys)" = "$(python3 -c 'import json, sys; print(" ".join(t["transactionKey"] for t in json.load(sys.stdin)))' <<<"$page_all")"
req GET "/v1/transactions?startDate=$today&endDate=$today&limit=0"
expect "limit 0 -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req GET "/v1/transactions?startDate=$today&endDate=$today&limit=10001"
expect "limit 10001 -> 400 INVALID_REQUEST" 400 INVALID_REQUEST
req GET "/v1/transactions?startDate=$today&endDate=$today&startingAfter=txn_999999999999"
check "a page after the last transaction is empty" test "$BODY" = "[]"

# ------------------------------------------------------------------ idempotency
echo "# idempotency"
body='{"paymentKey":"pk_idem","orderId":"order_idem","amount":2500}'
req POST /v1/payments/confirm "$body" -H 'Idempotency-Key: idem-1'
expect "confirm with Idempotency-Key -> 200" 200
idem_first=$BODY
req GET /__mock/stats
replays_before=$(field idempotent_replays)
req POST /v1/payments/confirm "$body" -H 'Idempotency-Key: idem-1'
expect "same key, same request -> 200" 200
check "same key, same request replays byte for byte" test "$BODY" = "$idem_first"
req GET /__mock/stats
check "the replay is counted" test "$(field idempotent_replays)" = $((replays_before + 1))
req POST /v1/payments/confirm '{"paymentKey":"pk_idem","orderId":"order_idem","amount":2501}' -H 'Idempotency-Key: idem-1'
expect "same key, different body -> 422 INVALID_REQUEST" 422 INVALID_REQUEST
req POST /v1/payments/confirm '{"paymentKey":"pk_idem", "orderId":"order_idem","amount":2500}' -H 'Idempotency-Key: idem-1'
expect "same key, body differing only in spacing -> 422" 422 INVALID_REQUEST
req POST /v1/payments/pk_idem/cancel '{"cancelReason":"x"}' -H 'Idempotency-Key: idem-1'
expect "same key, different path -> 422 INVALID_REQUEST" 422 INVALID_REQUEST
req POST /v1/payments/confirm "$body" -H "Idempotency-Key: $(printf 'k%.0s' $(seq 1 301))"
expect "Idempotency-Key over 300 characters -> 400" 400 INVALID_REQUEST
req POST /v1/payments/confirm "$body" -H 'Idempotency-Key;'
expect "empty Idempotency-Key -> 400" 400 INVALID_REQUEST
confirm pk_idem300 order_idem300 1 -H "Idempotency-Key: $(printf 'k%.0s' $(seq 1 300))"
expect "Idempotency-Key of 300 characters is accepted" 200

req POST /v1/payments/pk_idem/cancel '{"cancelReason":"part","cancelAmount":500}' -H 'Idempotency-Key: idem-cancel'
expect "cancel with Idempotency-Key -> 200" 200
cancel_first=$BODY
req POST /v1/payments/pk_idem/cancel '{"cancelReason":"part","cancelAmount":500}' -H 'Idempotency-Key: idem-cancel'
check "cancel replay is byte for byte" test "$BODY" = "$cancel_first"
req GET /v1/payments/pk_idem
check "the replayed cancel was applied once" \
	test "$(field balanceAmount)" = 2000 -a "$(count '"cancelStatus":"DONE"')" = 1

confirm decline_idem order_decline_idem 1000 -H 'Idempotency-Key: idem-decline'
decline_first=$BODY
confirm decline_idem order_decline_idem 1000 -H 'Idempotency-Key: idem-decline'
check "a decline is replayed too" test "$CODE" = 403 -a "$BODY" = "$decline_first"

set_faults '{"error_rate":1}'
confirm pk_err_idem order_err_idem 1000 -H 'Idempotency-Key: idem-err'
expect "5xx fault with Idempotency-Key -> 500" 500 PROVIDER_ERROR
set_faults '{"error_rate":0}'
confirm pk_err_idem order_err_idem 1000 -H 'Idempotency-Key: idem-err'
expect "a 5xx is not remembered: the retry with the same key succeeds" 200
req POST /v1/payments/confirm 'broken' -H 'Idempotency-Key: idem-bad'
confirm pk_bad_idem order_bad_idem 1000 -H 'Idempotency-Key: idem-bad'
expect "a 400 is not remembered: the corrected request with the same key succeeds" 200

req GET /__mock/stats
approvals_before=$(field approvals)
body='{"paymentKey":"pk_race","orderId":"order_race","amount":777}'
racers=()
for i in $(seq 1 20); do
	"${CURL[@]}" -o "$TMP/race.$i" -u "$SECRET:" -H 'Idempotency-Key: idem-race' \
		-H 'Content-Type: application/json' --data-binary "$body" "$BASE/v1/payments/confirm" &
	racers+=($!)
done
wait_rc=0
for job in "${racers[@]}"; do
	wait "$job" || wait_rc=1
done
same=1
for i in $(seq 2 20); do cmp -s "$TMP/race.1" "$TMP/race.$i" || same=0; done
BODY=$(cat "$TMP/race.1")
check "20 concurrent requests with one key all get the same 200 answer" \
	test "$wait_rc" = 0 -a "$same" = 1 -a -n "$(has '"status":"DONE"' && echo y)"
req GET /__mock/stats
check "... and only one approval happened" test "$(field approvals)" = $((approvals_before + 1))

# ------------------------------------------------------------------ faults
echo "# faults and magic keys"
confirm decline_card1 order_decline1 1000
expect "decline_* -> 403 REJECT_CARD_PAYMENT" 403 REJECT_CARD_PAYMENT
check "the decline's error has exactly Toss's {code, message}" shape error
req GET /v1/payments/orders/order_decline1
expect "a declined payment is kept, as at Toss" 200
check "... ABORTED, with failure {REJECT_CARD_PAYMENT, message}, no approval, no card" shape payment ABORTED
req POST /v1/payments/decline_card1/cancel '{"cancelReason":"x"}'
expect "an ABORTED payment cannot be canceled" 400 NOT_CANCELABLE_PAYMENT
confirm pk_after_decline order_decline1 1000
expect "the order of an ABORTED attempt is confirmed with another paymentKey" 200
req GET /v1/payments/orders/order_decline1
check "... and its lookup by order now shows the approval" js 'd["status"] == "DONE" and d["paymentKey"] == "pk_after_decline"'
req GET /v1/payments/decline_card1
check "... while the declined paymentKey still shows the ABORTED attempt" shape payment ABORTED
confirm expire_card1 order_expire1 2000
expect "expire_* -> 404 NOT_FOUND_PAYMENT_SESSION (its time ran out before the confirm)" 404 NOT_FOUND_PAYMENT_SESSION
req GET /v1/payments/orders/order_expire1
expect "an expired payment is kept" 200
check "... EXPIRED, with failure EXPIRED_PAYMENT, method null, no approval" shape payment EXPIRED
check "... requested 30 minutes before it expired" \
	python3 -c 'import datetime, json, sys
d = json.loads(sys.argv[1])
now = datetime.datetime.now(datetime.timezone.utc)
sys.exit(0 if 1700 < (now - datetime.datetime.fromisoformat(d["requestedAt"])).total_seconds() < 3600 else 1)' "$BODY"
req POST /v1/payments/expire_card1/cancel '{"cancelReason":"x"}'
expect "an EXPIRED payment cannot be canceled" 400 NOT_CANCELABLE_PAYMENT
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "failed attempts are no transactions" js 'not any(t["orderId"] in ("order_expire1", "decline_card1") or t["paymentKey"] == "decline_card1" for t in d)'
confirm error_card1 order_error1 1000
expect "error_* -> 500 PROVIDER_ERROR" 500 PROVIDER_ERROR
confirm error_card1 order_error1 1000
expect "error_* fails every time" 500 PROVIDER_ERROR
req GET /v1/payments/orders/order_error1
expect "an error_* payment is not recorded" 404 NOT_FOUND_PAYMENT
confirm timeout_card1 order_timeout1 4200 --max-time 2
check "timeout_* answers later than the client waits (curl timed out)" test "$CURL_RC" = 28
req GET /v1/payments/orders/order_timeout1
expect "timeout_*: the payment was approved and recorded" 200
check "timeout_*: status DONE, amount kept" js 'd["status"] == "DONE" and d["currency"] == "KRW" and d["totalAmount"] == 4200'
confirm timeout_card1 order_timeout1 4200
expect "re-confirming a timed-out payment answers at once" 200
confirm badtotal_card1 order_badtotal1 3300
expect "badtotal_* -> 200, approved" 200
check "badtotal_*: DONE with a negative totalAmount (a hostile gateway)" \
	js 'd["status"] == "DONE" and d["currency"] == "KRW" and d["totalAmount"] == -3300'
req GET /v1/payments/orders/order_badtotal1
check "badtotal_*: the lookup says the same" has '"totalAmount":-3300'
req POST /v1/payments/confirm '{"paymentKey":"pk_usd1","orderId":"order_usd1","amount":1999,"currency":"USD"}'
expect "a confirm in USD -> 200" 200
check "the payment keeps the currency it was confirmed in" js 'd["currency"] == "USD" and d["totalAmount"] == 1999'
req POST /v1/payments/confirm '{"paymentKey":"pk_usd1","orderId":"order_usd1","amount":1999}'
expect "the same order confirmed in another currency is refused" 400 ALREADY_PROCESSED_PAYMENT
req POST /v1/payments/confirm '{"paymentKey":"pk_cur2","orderId":"order_cur2","amount":1999,"currency":"usd"}'
expect "a currency that is not an ISO 4217 code is refused" 400 INVALID_REQUEST
confirm badcurrency_card1 order_badcur1 2500
check "badcurrency_*: a KRW payment answered in USD (a hostile gateway)" js 'd["currency"] == "USD" and d["totalAmount"] == 2500'

req GET /__mock/faults
check "GET /__mock/faults shows the settings from the flags" \
	has '"decline_rate":0.0,"error_rate":0.0,"timeout_rate":0.0,"latency_ms":0,"stall_ms":600000'
set_faults '{"decline_rate":1}'
expect "POST /__mock/faults -> 200" 200
check "POST /__mock/faults returns the new settings" has '"decline_rate":1.0'
confirm pk_rate_d order_rate_d 1000
expect "decline_rate 1 declines an ordinary key" 403 REJECT_CARD_PAYMENT
set_faults '{"decline_rate":0,"error_rate":1}'
confirm pk_rate_d order_rate_d 1000
expect "error_rate 1 fails confirm with 500" 500 PROVIDER_ERROR
req POST /v1/payments/pk_1/cancel '{"cancelReason":"x","cancelAmount":1}'
expect "error_rate 1 fails cancel with 500" 500 PROVIDER_ERROR
req GET /v1/payments/pk_1
check "the failed cancel changed nothing" test "$(field balanceAmount)" = 15000
set_faults '{"error_rate":0,"timeout_rate":1}'
confirm pk_rate_t order_rate_t 1000 --max-time 2
check "timeout_rate 1: confirm stalls past the client's timeout" test "$CURL_RC" = 28
req GET /v1/payments/orders/order_rate_t
expect "timeout_rate 1: the payment was recorded" 200
req POST /v1/payments/pk_rate_t/cancel '{"cancelReason":"x","cancelAmount":100}' --max-time 2
check "timeout_rate 1: cancel stalls too" test "$CURL_RC" = 28
set_faults '{"timeout_rate":0}'
req GET /v1/payments/pk_rate_t
check "timeout_rate 1: the stalled cancel was recorded" test "$(field balanceAmount)" = 900
set_faults '{"latency_ms":600000}'
confirm pk_lat order_lat 1000 --max-time 2
check "latency_ms holds requests back (curl timed out)" test "$CURL_RC" = 28
set_faults '{"latency_ms":0}'
req GET /__mock/stats
expect "a delayed request does not block others" 200
set_faults '{"latency_ms":50}'
confirm pk_lat2 order_lat2 1000
expect "a short latency still answers" 200
set_faults '{"latency_ms":0}'
set_faults '{"decline_rate":2}'
expect "a rate above 1 is refused" 400 INVALID_REQUEST
set_faults '{"error_rate":"0.5"}'
expect "a rate as a string is refused" 400 INVALID_REQUEST
set_faults '{"latency_ms":1.5}'
expect "fractional latency_ms is refused" 400 INVALID_REQUEST
set_faults '{"decline_rate":0.5,"latecny_ms":10}'
expect "an unknown fault setting is refused" 400 INVALID_REQUEST
req GET /__mock/faults
check "a refused update changes nothing (all or nothing)" has '"decline_rate":0.0'
set_faults '[1,2]'
expect "a non-object faults body is refused" 400 INVALID_REQUEST
confirm pk_trace1 order_trace1 1000 -H 'X-Trace-Id: trace-abc.1'
req GET /v1/payments/pk_trace1 '' -H 'X-Trace-Id: trace-abc.1'
raw /__mock/traces/trace-abc.1
check "GET /__mock/traces/{id} counts the /v1 requests that carried X-Trace-Id" \
	has '"traceId":"trace-abc.1","requests":2'
raw /__mock/traces/never-sent
check "an id never sent counts 0" has '"requests":0'
set_faults '{"list_fault":"not_json"}'
check "list_fault is among the settings" has '"list_fault":"not_json"'
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "list_fault not_json: 200 with a body that is not JSON" \
	test "$CODE $(python3 -c 'import json,sys; json.loads(sys.stdin.read())' <<<"$BODY" 2>/dev/null && echo json)" = "200 "
set_faults '{"list_fault":"bad_amount"}'
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "list_fault bad_amount: a transaction with a negative amount" has '"amount":-1000'
set_faults '{"list_fault":"no_key"}'
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "list_fault no_key: a transaction without its transactionKey" test "${BODY#*transactionKey}" = "$BODY"
set_faults '{"list_fault":"not_array"}'
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "list_fault not_array: a JSON object" grep -q '^{' <<<"$BODY"
set_faults '{"list_fault":"sometimes"}'
expect "an unknown list_fault is refused" 400 INVALID_REQUEST
set_faults '{"list_fault":"none"}'
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "list_fault none: the real list again" has '"type":"APPROVE"'

# ------------------------------------------------------------------ connections
echo "# connections"
CODES=$("${CURL[@]}" -u "$SECRET:" -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
	"$BASE/v1/payments/pk_1" "$BASE/v1/payments/pk_c" "$BASE/v1/payments/orders/order_1")
check "keep-alive: three requests share one connection" \
	test "$(tr '\n' ' ' <<<"$CODES")" = "200 1 200 0 200 0 "

exec {slow}<>"/dev/tcp/127.0.0.1/$PORT"
printf 'POST /v1/payments/confirm HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"payme' >&"$slow"
req GET /v1/payments/pk_1
expect "a slow client does not block other requests" 200
exec {slow}>&-

conns=()
for i in $(seq 1 300); do
	exec {c}<>"/dev/tcp/127.0.0.1/$PORT"
	conns+=("$c")
done
req GET /v1/payments/pk_1
expect "300 idle connections do not block a request" 200
for c in "${conns[@]}"; do exec {c}>&-; done

seq 1 200 | xargs -P 16 -I{} "${CURL[@]}" -o /dev/null -w '%{http_code}\n' -u "$SECRET:" \
	-H 'Content-Type: application/json' \
	--data-binary '{"paymentKey":"pk_par_{}","orderId":"order_par_{}","amount":100}' \
	"$BASE/v1/payments/confirm" >"$TMP/par"
check "200 parallel confirms all answer 200" test "$(grep -c '^200$' "$TMP/par")" = 200
req GET "/v1/transactions?startDate=$today&endDate=$today"
check "... and all 200 are in the transaction list" test "$(count '"orderId":"order_par_')" = 200

check "the main server survived everything above" kill -0 "$MAIN_PID"

echo "# shutdown"
"${CURL[@]}" -o /dev/null -u "$SECRET:" -H 'Content-Type: application/json' \
	--data-binary '{"paymentKey":"timeout_shutdown","orderId":"order_ts","amount":1}' \
	"$BASE/v1/payments/confirm" &
stalled=$!
for i in $(seq 1 300); do
	req GET /v1/payments/orders/order_ts
	[ "$CODE" = 200 ] && break
	sleep 0.1
done
check "a payment is stalled in the server" test "$CODE" = 200
kill -TERM "$MAIN_PID"
check "SIGTERM stops the server promptly despite a 10-minute stall" exits_within 30 "$MAIN_PID"
rc=0; wait "$MAIN_PID" || rc=$?
check "... with exit status 0" test "$rc" = 0
wait "$stalled" || true
check "... and removes its pid file" test ! -e "$TMP/main.pid"

# ================================================================ stats
echo "# stats"
start_server stats
confirm pk_s1 order_s1 1000
confirm pk_s2 order_s2 2000 -H 'Idempotency-Key: s-1'
confirm pk_s2 order_s2 2000 -H 'Idempotency-Key: s-1'
confirm decline_s3 order_s3 500
confirm error_s4 order_s4 500
req POST /v1/payments/pk_s1/cancel '{"cancelReason":"x","cancelAmount":400}'
req GET /__mock/stats
expect "GET /__mock/stats -> 200" 200
check "stats: confirms" test "$(field confirms)" = 5
check "stats: approvals" test "$(field approvals)" = 2
check "stats: declines" test "$(field declines)" = 1
check "stats: errors" test "$(field errors)" = 1
check "stats: cancels" test "$(field cancels)" = 1
check "stats: idempotent replays" test "$(field idempotent_replays)" = 1
check "stats: total approved amount" test "$(field total_approved_amount)" = 3000
check "stats: total canceled amount" test "$(field total_canceled_amount)" = 400
check "stats: payments in the store (the declined attempt too)" test "$(field payments)" = 3
stop_server INT
check "SIGINT stops the server with exit status 0" test "$STOP_RC" = 0

# ================================================================ flags
echo "# fault flags"
start_server flagd --decline-rate 1
confirm pk_f1 order_f1 1000
expect "--decline-rate 1 declines" 403 REJECT_CARD_PAYMENT
stop_server
start_server flage --error-rate 1
confirm pk_f2 order_f2 1000
expect "--error-rate 1 answers 500" 500 PROVIDER_ERROR
stop_server
start_server flagt --timeout-rate 1 --stall-ms 600000
confirm pk_f3 order_f3 1000 --max-time 2
check "--timeout-rate 1 with --stall-ms stalls the answer" test "$CURL_RC" = 28
req GET /v1/payments/orders/order_f3
expect "... after recording the payment" 200
stop_server
start_server flagl --latency-ms 600000
confirm pk_f4 order_f4 1000 --max-time 2
check "--latency-ms delays the answer" test "$CURL_RC" = 28
stop_server

# seeded_run NAME: 24 confirms with --decline-rate 0.5 --seed 42; codes in SEQ_OUT.
seeded_run() {
	local i
	SEQ_OUT=""
	start_server "$1" --decline-rate 0.5 --seed 42
	for i in $(seq 1 24); do
		confirm "pk_seed_$i" "order_seed_$i" 100
		SEQ_OUT+="$CODE "
	done
	stop_server
}
seeded_run seed1
seq1=$SEQ_OUT
seeded_run seed2
seq2=$SEQ_OUT
check "--seed makes the decline sequence repeatable" test "$seq1" = "$seq2"
check "--decline-rate 0.5 declines some and approves some" \
	test -n "$(grep -o 403 <<<"$seq1" | head -1)" -a -n "$(grep -o 200 <<<"$seq1" | head -1)"

# ================================================================ journal
echo "# journal"
J=$TMP/journal.jnl
start_server j1 --journal "$J"
confirm pk_j1 order_j1 5000 -H 'Idempotency-Key: j-confirm'
j_confirm=$BODY
req POST /v1/payments/pk_j1/cancel '{"cancelReason":"partial","cancelAmount":1200}' -H 'Idempotency-Key: j-cancel'
j_cancel=$BODY
confirm pk_j2 order_j2 800
req POST /v1/payments/pk_j2/cancel '{"cancelReason":"all"}'
confirm decline_j3 order_j3 100 -H 'Idempotency-Key: j-decline'
j_decline=$BODY
req GET /v1/payments/decline_j3
j_aborted=$BODY
confirm expire_j7 order_j7 700
req GET /v1/payments/orders/order_j7
j_expired=$BODY
req POST /v1/payments/confirm '{"paymentKey":"pk_j8","orderId":"order_j8","amount":8000,"taxFreeAmount":3000}'
req POST /v1/payments/pk_j8/cancel '{"cancelReason":"tf","cancelAmount":4000,"taxFreeAmount":1000}'
j_pay8=$BODY
req GET "/v1/transactions?startDate=2000-01-01&endDate=2999-12-31"
j_txns=$BODY
req GET /v1/payments/pk_j1
j_pay1=$BODY
stop_server
check "journal server stops cleanly" test "$STOP_RC" = 0
check "the journal starts with its header" \
	test "$(head -n 1 "$J")" = '{"op":"header","format":"coupon-mockpg-journal","version":1}'

start_server j2 --journal "$J"
req GET /v1/payments/pk_j1
check "after restart: the partially canceled payment is intact" test "$BODY" = "$j_pay1"
req GET /v1/payments/orders/order_j2
check "after restart: the fully canceled payment is CANCELED" \
	test "$(field status)" = CANCELED -a "$(field balanceAmount)" = 0
req GET "/v1/transactions?startDate=2000-01-01&endDate=2999-12-31"
check "after restart: the transaction list is identical" test "$BODY" = "$j_txns"
confirm pk_j1 order_j1 5000 -H 'Idempotency-Key: j-confirm'
check "after restart: a confirm replays its first answer byte for byte" test "$BODY" = "$j_confirm"
req POST /v1/payments/pk_j1/cancel '{"cancelReason":"partial","cancelAmount":1200}' -H 'Idempotency-Key: j-cancel'
check "after restart: a cancel replays its first answer byte for byte" test "$BODY" = "$j_cancel"
confirm decline_j3 order_j3 100 -H 'Idempotency-Key: j-decline'
check "after restart: a decline replays too" test "$BODY" = "$j_decline"
req GET /v1/payments/decline_j3
check "after restart: the ABORTED attempt is the same, byte for byte" test "$BODY" = "$j_aborted"
req GET /v1/payments/orders/order_j7
check "after restart: the EXPIRED attempt is the same, byte for byte" test "$BODY" = "$j_expired"
req GET /v1/payments/pk_j8
check "after restart: tax-free amounts of a payment and its cancel are kept" test "$BODY" = "$j_pay8"
req POST /v1/payments/pk_j1/cancel '{"cancelReason":"other","cancelAmount":1}' -H 'Idempotency-Key: j-cancel'
expect "after restart: a key reused for another body -> 422" 422 INVALID_REQUEST
req GET /v1/payments/pk_j1
check "after restart: replays did not cancel twice" test "$(field balanceAmount)" = 3800
confirm pk_j4 order_j4 300
new_tx=$(field lastTransactionKey)
check "after restart: new transaction keys do not repeat old ones" \
	test -n "$new_tx" -a -z "$(grep -F "\"$new_tx\"" <<<"$j_txns")"
confirm pk_j5 order_j5 999
stop_server KILL
start_server j3 --journal "$J"
req GET /v1/payments/orders/order_j5
expect "after kill -9: an answered confirm is still there" 200
req GET /v1/payments/orders/order_j4
expect "after kill -9: earlier payments too" 200
stop_server

# A crash in the middle of a batch leaves part of it after the last record,
# in the zero padding: simulate one by writing half a record there.
data_end=$(tr -d '\000' <"$J" | wc -c)
printf '{"op":"cancel","paymentKey":"pk_j5","amo' |
	dd of="$J" bs=1 seek="$data_end" conv=notrunc status=none
start_server j4 --journal "$J"
check "a torn write after the last record is discarded with a warning" \
	grep -qF 'discarding a torn write of 40 bytes' "$TMP/j4.err"
req GET /v1/payments/pk_j5
check "... and the state before it is intact" \
	test "$(field balanceAmount)" = 999 -a "$(field status)" = DONE
check "... and the torn bytes are gone from the file" \
	test -z "$(grep -aF '"op":"cancel","paymentKey":"pk_j5"' "$J" || true)"
confirm pk_j6 order_j6 606
expect "a confirm after the recovery" 200
stop_server
start_server j5 --journal "$J"
req GET /v1/payments/orders/order_j6
expect "... is written where the torn bytes were and survives a restart" 200
req GET /v1/payments/pk_j5
check "... next to the older records" test "$(field balanceAmount)" = 999
check "the restart found no torn write this time" test ! -s "$TMP/j5.err"
stop_server
printf '{"op":"cancel","paymentKey":"pk_j6","amount":6' >>"$J"
start_server j6 --journal "$J"
check "bytes after the padding (an old-style torn tail) are discarded too" \
	grep -qF 'discarding a torn write' "$TMP/j6.err"
stop_server

cp "$J" "$TMP/corrupt.jnl"
sed -i '3s/.*/{"op":"approve","broken/' "$TMP/corrupt.jnl"
rc=0; "$BIN" --port 0 --secret x --journal "$TMP/corrupt.jnl" >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a corrupt journal line stops the server with a clear error" \
	test "$rc" = 3 -a -n "$(grep -F 'line 3' "$TMP/cli.err")"
echo 'hello world' >"$TMP/notjournal"
rc=0; "$BIN" --port 0 --secret x --journal "$TMP/notjournal" >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a file that is not a journal is refused" test "$rc" = 3
printf 'ELF\001\000\000\000binary' >"$TMP/binary.jnl"
rc=0; "$BIN" --port 0 --secret x --journal "$TMP/binary.jnl" >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a binary file is refused, not zeroed" \
	test "$rc" = 3 -a "$(head -c 3 "$TMP/binary.jnl")" = ELF
printf '%s\n' '{"op":"header","format":"coupon-mockpg-journal","version":1}' \
	'{"op":"approve","paymentKey":"pk_old","orderId":"order_old","amount":11000,"at":1795521600,"transactionKey":"txn_000000000001"}' \
	'{"op":"cancel","paymentKey":"pk_old","amount":1000,"reason":"x","at":1795521900,"transactionKey":"txn_000000000002"}' >"$TMP/old.jnl"
start_server old --journal "$TMP/old.jnl"
req GET /v1/payments/pk_old
check "a journal from before currencies and tax-free amounts reads back (KRW, nothing tax-free)" \
	js 'd["currency"] == "KRW" and (d["balanceAmount"], d["suppliedAmount"], d["vat"], d["taxFreeAmount"]) == (10000, 9091, 909, 0)'
check "... with its times in +09:00 (1795521600 is 2026-11-24T12:00:00Z)" \
	js 'd["approvedAt"] == "2026-11-24T21:00:00+09:00" and d["cancels"][0]["canceledAt"] == "2026-11-24T21:05:00+09:00"'
stop_server
printf '%s\n' '{"op":"header","format":"coupon-mockpg-journal","version":1}' \
	'{"op":"cancel","paymentKey":"ghost","amount":1,"reason":"x","at":0,"transactionKey":"txn_1"}' >"$TMP/ghost.jnl"
rc=0; "$BIN" --port 0 --secret x --journal "$TMP/ghost.jnl" >"$TMP/cli.out" 2>"$TMP/cli.err" || rc=$?
check "a journal that contradicts itself is refused" test "$rc" = 3

# ================================================================ valgrind
if [ "${MOCKPG_SKIP_VALGRIND:-0}" = 1 ]; then
	echo "# valgrind part skipped (MOCKPG_SKIP_VALGRIND=1)"
else
	echo "# valgrind"
	VJ=$TMP/valgrind.jnl
	start_cmd vg valgrind --quiet --error-exitcode=1 --leak-check=full \
		--errors-for-leak-kinds=definite,possible --log-file="$TMP/valgrind.log" \
		"$BIN" --port 0 --secret "$SECRET" --journal "$VJ" --stall-ms 600000 --threads 2
	VG_PID=$SPID
	confirm pk_vg order_vg 1000 -H 'Idempotency-Key: vg-1'
	expect "valgrind: confirm" 200
	confirm pk_vg order_vg 1000 -H 'Idempotency-Key: vg-1'
	expect "valgrind: replay" 200
	req POST /v1/payments/pk_vg/cancel '{"cancelReason":"x","cancelAmount":10}'
	expect "valgrind: cancel" 200
	req GET "/v1/transactions?startDate=2000-01-01&endDate=2999-12-31"
	expect "valgrind: transactions" 200
	req POST /v1/payments/confirm '{"paymentKey":'
	expect "valgrind: malformed JSON" 400
	raw /v1/payments/confirm -u "$SECRET:" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big"
	expect "valgrind: oversized body" 413
	confirm decline_vg order_vg2 10
	expect "valgrind: decline" 403
	confirm pk_vg_after order_vg2 10
	expect "valgrind: the declined order approved with another key" 200
	confirm expire_vg order_vg5 10
	expect "valgrind: expire" 404
	confirm error_vg order_vg3 10
	expect "valgrind: error" 500
	set_faults '{"latency_ms":600000}'
	"${CURL[@]}" -o /dev/null --max-time 2 -u "$SECRET:" \
		--data-binary '{"paymentKey":"pk_vg_late","orderId":"order_vg_late","amount":1}' \
		"$BASE/v1/payments/confirm" &
	late=$!
	set_faults '{"latency_ms":0}'
	confirm timeout_vg order_vg4 10 --max-time 2
	check "valgrind: timeout stalls" test "$CURL_RC" = 28
	req GET /v1/payments/orders/order_vg4
	expect "valgrind: stalled payment recorded" 200
	wait "$late" || true
	stop_server
	rc=$STOP_RC
	check "valgrind: clean exit (no errors, no leaks) with stalled requests pending" test "$rc" = 0
	if [ "$rc" != 0 ]; then sed 's/^/#   /' "$TMP/valgrind.log" | head -n 60; fi
fi

echo "1..$n"
if [ "$failed" -gt 0 ]; then
	echo "# $failed of $n tests failed"
	exit 1
fi
echo "# all $n tests passed"
