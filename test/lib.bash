# test/lib.bash: what the shell test suites (test/load, test/saga) share:
# TAP result lines and running a client program as postgres.  Sourced by
# their own lib.bash, never run.
#
# TAP_NAME (the script's name) prefixes every result line; TAP_TESTS and
# TAP_FAILED count them for the suite's finish function.

TAP_NAME=$(basename "$0" .sh)
TAP_TESTS=0
TAP_FAILED=0

ok() {
	TAP_TESTS=$((TAP_TESTS + 1))
	echo "ok $TAP_TESTS - $TAP_NAME: $*"
}
not_ok() {
	TAP_TESTS=$((TAP_TESTS + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_TESTS - $TAP_NAME: $*"
}
diag() {
	echo "# $*"
}

# check NAME GOT WANT: equal strings pass
check() {
	local name=$1 got=$2 want=$3
	if [ "$got" = "$want" ]; then
		ok "$name"
	else
		not_ok "$name"
		diag "  got:  $got"
		diag "  want: $want"
	fi
}

# check_match NAME GOT REGEX: GOT matches the extended regular expression
check_match() {
	local name=$1 got=$2 re=$3
	if [[ $got =~ $re ]]; then
		ok "$name"
	else
		not_ok "$name"
		diag "  got:  $got"
		diag "  want: /$re/"
	fi
}

# run a client program as postgres against the cluster at PGHOST/PGPORT
as_pg() {
	runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER=postgres \
		PGOPTIONS="-c client_min_messages=warning" "$@"
}
