# scripts/lib.sh: shared by demo.sh, test.sh and bench/run.sh.
#
# Installs what the project needs from Debian's packages, builds and installs
# the extension, and runs private PostgreSQL clusters as the postgres user in
# directories of their own (never the system cluster), on a socket file only.

COUPON_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEBIAN_PACKAGES="build-essential pkg-config postgresql-15 postgresql-server-dev-15
	postgresql-15-cron postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
	postgresql-contrib libcurl4-openssl-dev libhiredis-dev libmicrohttpd-dev
	libjansson-dev curl redis-server wrk valgrind procps python3
	prometheus-postgres-exporter"

# packaged services the tests start by themselves (on ports of their own:
# redis-server, PostgreSQL in directories of their own, the exporter)
# and that must never run as system services: installing them starts none,
# and they stay disabled at boot (see apt_install)
QUIET_SERVICES="prometheus-postgres-exporter redis-server postgresql"

# every program a script, test or benchmark of this repository runs that a
# minimal Debian 12 (debootstrap minbase) lacks or may lack; checked after
# the install, so a missing one stops the run at once with its name
REQUIRED_PROGRAMS="make cc pkg-config pg_config curl python3 ps pgrep wrk valgrind
	redis-server pg_prove runuser timeout awk sed diff xargs dd base64 mktemp
	prometheus-postgres-exporter"

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }

# apt-get install the packages given, none of QUIET_SERVICES started: while
# the machine has no policy-rc.d (a fresh root), one of ours, asked by
# invoke-rc.d and deb-systemd-invoke, refuses to start them (any other
# service starts as before); those just installed are then disabled at boot
# and stopped if a policy of the machine's own let them start
apt_install() {
	local policy=/usr/sbin/policy-rc.d ours=0 rc=0 s
	if [ ! -e "$policy" ]; then
		{
			echo '#!/bin/sh'
			echo '# written by coupon scripts/lib.sh for the length of one apt-get install'
			echo 'case "$1" in'
			for s in $QUIET_SERVICES; do
				echo "$s|$s.service) exit 101 ;;"
			done
			echo 'esac'
			echo 'exit 0'
		} >"$policy"
		chmod 755 "$policy"
		ours=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
	[ "$ours" = 0 ] || rm -f "$policy"
	for s in $QUIET_SERVICES; do
		case " $* " in *" $s "*) ;; *) continue ;; esac
		if [ -d /run/systemd/system ]; then
			systemctl disable --now "$s.service" >/dev/null 2>&1 || true
		else
			[ ! -x "/etc/init.d/$s" ] || "/etc/init.d/$s" stop >/dev/null 2>&1 || true
			update-rc.d "$s" disable >/dev/null 2>&1 || true
			deb-systemd-helper disable "$s.service" >/dev/null 2>&1 || true
		fi
	done
	return $rc
}

# install the Debian packages that are missing (apt-get update first)
install_deps() {
	local missing=()
	for p in $DEBIAN_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		log "installing ${missing[*]}"
		apt-get update -qq
		apt_install "${missing[@]}"
	fi
	local absent=()
	for prog in $REQUIRED_PROGRAMS; do
		command -v "$prog" >/dev/null || absent+=("$prog")
	done
	if [ ${#absent[@]} -gt 0 ]; then
		echo "programs still missing after the install: ${absent[*]}" >&2
		exit 2
	fi
	PGBIN=$(pg_config --bindir)
	export PGBIN
	# the server programs the scripts run from the version's own bindir
	for prog in pgbench pg_ctl initdb pg_isready; do
		[ -x "$PGBIN/$prog" ] || {
			echo "$PGBIN/$prog is missing after the install" >&2
			exit 2
		}
	done
}

# build and install the extension, and build the mock gateway (its own
# target: the extension needs neither libmicrohttpd nor jansson); with
# COUPON_WERROR=1 (the test command, hence CI) any compiler warning fails it
build_install() {
	local werror=()
	[ "${COUPON_WERROR:-0}" = 1 ] && werror=(WERROR=1)
	log "building and installing the extension${werror:+ (warnings are errors)}"
	make -s -C "$COUPON_ROOT" "${werror[@]}" >/dev/null
	make -s -C "$COUPON_ROOT" install >/dev/null
	build_mockpg
}

# build mockpg/coupon-mockpg (make mockpg); nothing to do when it is current
build_mockpg() {
	local werror=()
	[ "${COUPON_WERROR:-0}" = 1 ] && werror=(WERROR=1)
	log "building the mock gateway${werror:+ (warnings are errors)}"
	make -s -C "$COUPON_ROOT" "${werror[@]}" mockpg >/dev/null
}

# a fresh work directory the postgres user owns
make_workdir() {
	local d
	d=$(mktemp -d "/tmp/coupon-$1.XXXXXX")
	chmod 755 "$d"
	chown postgres:postgres "$d"
	echo "$d"
}

# pick a free TCP port number on loopback (also names the socket file)
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# postgresql.conf lines of the benchmark clusters: every commit durable, and
# checkpoints far enough apart that a run measures the workload
BENCH_DURABLE_CONF="fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
max_wal_size = 4GB
checkpoint_timeout = 30min"

# start a private cluster in $1 (port $2); extra postgresql.conf lines on stdin
cluster_start() {
	local dir=$1 port=$2
	runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres \
		--no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1
	mkdir -p "$dir/sock" && chown postgres:postgres "$dir/sock"
	{
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir/sock'"
		echo "port = $port"
		echo "shared_preload_libraries = 'coupon,pg_cron'"
		echo "cron.database_name = 'postgres'"
		echo "cron.host = '$dir/sock'"
		echo "coupon.code_secret = 'coupon-test-secret-$(date +%s%N)'"
		echo "max_connections = 300"
		echo "shared_buffers = 256MB"
		echo "log_min_messages = warning"
		echo "max_locks_per_transaction = 256"
		cat
	} >>"$dir/data/postgresql.conf"
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null
	export PGHOST="$dir/sock" PGPORT="$port" PGUSER=postgres
}

# stop the cluster in $1 if it runs
cluster_stop() {
	local dir=$1
	if [ -f "$dir/data/postmaster.pid" ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
	fi
}

# psql as the postgres user against the private cluster
pg() {
	runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
		psql -X -q -v ON_ERROR_STOP=1 "$@"
}

# start the mock payment gateway on a free loopback port, journal in $1;
# sets MOCKPG_URL and MOCKPG_PID (secret $2)
mockpg_start() {
	local dir=$1 secret=$2
	# created here, so the loop below never reads it before the child opens it
	: >"$dir/mockpg.out"
	"$COUPON_ROOT/mockpg/coupon-mockpg" --port 0 --secret "$secret" \
		--journal "$dir/mockpg.journal" >"$dir/mockpg.out" 2>"$dir/mockpg.err" &
	MOCKPG_PID=$!
	for _ in $(seq 1 100); do
		local port
		port=$(sed -n 's/^coupon-mockpg listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$dir/mockpg.out")
		if [ -n "$port" ]; then
			MOCKPG_URL="http://127.0.0.1:$port"
			export MOCKPG_URL MOCKPG_PID
			return 0
		fi
		kill -0 "$MOCKPG_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$dir/mockpg.err" >&2
	return 1
}

# stop the mock gateway if it runs
mockpg_stop() {
	if [ -n "${MOCKPG_PID:-}" ] && kill -0 "$MOCKPG_PID" 2>/dev/null; then
		kill "$MOCKPG_PID" && wait "$MOCKPG_PID" 2>/dev/null || true
	fi
}

# the common start of demo, test and bench: as root, install, build, and a
# fresh work directory $WORK (kind $1) that is also the working directory,
# since programs run as postgres inherit it and must be able to enter it
prepare_run() {
	[ "$(id -u)" = 0 ] || {
		echo "run as root (it installs packages and switches to the postgres user)" >&2
		exit 2
	}
	install_deps
	build_install
	WORK=$(make_workdir "$1")
	cd "$WORK"
}
