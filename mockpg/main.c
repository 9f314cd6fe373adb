/*-------------------------------------------------------------------------
 *
 * main.c
 *	  coupon-mockpg: a mock payment gateway modelled on Toss Payments v1,
 *	  for the coupon extension's tests, demo and benchmarks.
 *
 *	  This file reads the command line, starts the parts in order (faults,
 *	  store, journal replay, timer, HTTP), prints the "listening" line that
 *	  scripts wait for, and on SIGTERM or SIGINT stops them in reverse.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "faults.h"
#include "http.h"
#include "journal.h"
#include "store.h"
#include "timer.h"
#include "util.h"

#define MOCKPG_VERSION "1.0"

typedef struct Options
{
	int			port;
	const char *secret;
	const char *bind_address;
	const char *journal;
	const char *pid_file;
	FaultConfig faults;
	uint64_t	seed;
	bool		have_seed;
	int			threads;
	int			max_connections;
	int			idle_timeout_s;
	bool		verbose;
} Options;

/* The --help text; it is the command line's reference. */
static void
usage(FILE *f)
{
	fprintf(f,
			"coupon-mockpg: a mock payment gateway (Toss Payments v1 subset) for coupon\n"
			"\n"
			"Usage: coupon-mockpg --port N --secret KEY [options]\n"
			"\n"
			"  --port N            TCP port to listen on (0: pick a free one; printed)\n"
			"  --secret KEY        secret key; clients send Basic base64(KEY + \":\")\n"
			"                      (default: $COUPON_MOCKPG_SECRET)\n"
			"  --bind ADDR         numeric address to bind (default 127.0.0.1)\n"
			"  --journal FILE      append-only journal; state survives restarts\n"
			"  --pid-file FILE     write the process id here once listening\n"
			"  --latency-ms N      delay before each /v1 request is handled (default 0)\n"
			"  --stall-ms N        how long a timeout answer is held back (default 30000)\n"
			"  --decline-rate R    share of confirms declined, 0..1 (default 0)\n"
			"  --error-rate R      share of confirms/cancels answered 500, 0..1 (default 0)\n"
			"  --timeout-rate R    share of confirms/cancels that commit, then stall (default 0)\n"
			"  --seed N            seed for the fault draws (default: from the clock)\n"
			"  --threads N         server threads (default: number of CPUs, at least 2)\n"
			"  --max-connections N simultaneous connections (default 1024)\n"
			"  --idle-timeout S    close connections idle S seconds (default 30)\n"
			"  --verbose           print libmicrohttpd's messages\n"
			"  --help, --version\n"
			"\n"
			"Prints \"coupon-mockpg listening on ADDR:PORT\" when ready; stops on SIGTERM/SIGINT.\n"
			"See docs/mockpg.md for the API, faults and journal.\n");
}

/* Complain about a bad flag the same way every time, and exit 2. */
static void
bad_flag(const char *flag, const char *value, const char *expected)
{
	fprintf(stderr, "coupon-mockpg: invalid value \"%s\" for %s: expected %s\n",
			value, flag, expected);
	fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
	exit(2);
}

/* Parse a whole decimal integer within [min, max]. */
static long long
int_flag(const char *flag, const char *value, long long min, long long max)
{
	char	   *end;
	long long	v;
	char		expected[96];

	snprintf(expected, sizeof(expected), "an integer from %lld to %lld", min, max);
	errno = 0;
	v = strtoll(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0' || v < min || v > max)
		bad_flag(flag, value, expected);
	return v;
}

/* Parse a rate: a number from 0 to 1. */
static double
rate_flag(const char *flag, const char *value)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(value, &end);
	if (errno != 0 || end == value || *end != '\0' || !isfinite(v) || v < 0.0 || v > 1.0)
		bad_flag(flag, value, "a number from 0 to 1");
	return v;
}

/* Read the command line into o; exits on --help, --version and errors. */
static void
parse_options(int argc, char **argv, Options *o)
{
	enum
	{
		OPT_PORT = 256, OPT_SECRET, OPT_BIND, OPT_JOURNAL, OPT_PID_FILE,
		OPT_LATENCY, OPT_STALL, OPT_DECLINE, OPT_ERROR, OPT_TIMEOUT, OPT_SEED,
		OPT_THREADS, OPT_MAXCONN, OPT_IDLE, OPT_VERBOSE, OPT_HELP, OPT_VERSION
	};
	static const struct option longopts[] = {
		{"port", required_argument, NULL, OPT_PORT},
		{"secret", required_argument, NULL, OPT_SECRET},
		{"bind", required_argument, NULL, OPT_BIND},
		{"journal", required_argument, NULL, OPT_JOURNAL},
		{"pid-file", required_argument, NULL, OPT_PID_FILE},
		{"latency-ms", required_argument, NULL, OPT_LATENCY},
		{"stall-ms", required_argument, NULL, OPT_STALL},
		{"decline-rate", required_argument, NULL, OPT_DECLINE},
		{"error-rate", required_argument, NULL, OPT_ERROR},
		{"timeout-rate", required_argument, NULL, OPT_TIMEOUT},
		{"seed", required_argument, NULL, OPT_SEED},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"max-connections", required_argument, NULL, OPT_MAXCONN},
		{"idle-timeout", required_argument, NULL, OPT_IDLE},
		{"verbose", no_argument, NULL, OPT_VERBOSE},
		{"help", no_argument, NULL, OPT_HELP},
		{"version", no_argument, NULL, OPT_VERSION},
		{NULL, 0, NULL, 0}
	};
	long		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	bool		have_port = false;
	int			c;

	memset(o, 0, sizeof(*o));
	o->bind_address = "127.0.0.1";
	o->faults.stall_ms = 30000;
	o->threads = ncpu < 2 ? 2 : (ncpu > 16 ? 16 : (int) ncpu);
	o->max_connections = 1024;
	o->idle_timeout_s = 30;
	o->secret = getenv("COUPON_MOCKPG_SECRET");

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_PORT:
				o->port = (int) int_flag("--port", optarg, 0, 65535);
				have_port = true;
				break;
			case OPT_SECRET:
				o->secret = optarg;
				break;
			case OPT_BIND:
				o->bind_address = optarg;
				break;
			case OPT_JOURNAL:
				if (optarg[0] == '\0')
					bad_flag("--journal", optarg, "a file name");
				o->journal = optarg;
				break;
			case OPT_PID_FILE:
				if (optarg[0] == '\0')
					bad_flag("--pid-file", optarg, "a file name");
				o->pid_file = optarg;
				break;
			case OPT_LATENCY:
				o->faults.latency_ms = (int) int_flag("--latency-ms", optarg, 0, FAULT_MAX_MS);
				break;
			case OPT_STALL:
				o->faults.stall_ms = (int) int_flag("--stall-ms", optarg, 0, FAULT_MAX_MS);
				break;
			case OPT_DECLINE:
				o->faults.decline_rate = rate_flag("--decline-rate", optarg);
				break;
			case OPT_ERROR:
				o->faults.error_rate = rate_flag("--error-rate", optarg);
				break;
			case OPT_TIMEOUT:
				o->faults.timeout_rate = rate_flag("--timeout-rate", optarg);
				break;
			case OPT_SEED:
				o->seed = (uint64_t) int_flag("--seed", optarg, 0, LLONG_MAX);
				o->have_seed = true;
				break;
			case OPT_THREADS:
				o->threads = (int) int_flag("--threads", optarg, 1, 64);
				break;
			case OPT_MAXCONN:
				o->max_connections = (int) int_flag("--max-connections", optarg, 1, 100000);
				break;
			case OPT_IDLE:
				o->idle_timeout_s = (int) int_flag("--idle-timeout", optarg, 1, 86400);
				break;
			case OPT_VERBOSE:
				o->verbose = true;
				break;
			case OPT_HELP:
				usage(stdout);
				exit(0);
			case OPT_VERSION:
				printf("coupon-mockpg %s\n", MOCKPG_VERSION);
				exit(0);
			case ':':
				fprintf(stderr, "coupon-mockpg: %s needs a value\n", argv[optind - 1]);
				fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
				exit(2);
			default:
				fprintf(stderr, "coupon-mockpg: unknown option \"%s\"\n", argv[optind - 1]);
				fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
				exit(2);
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "coupon-mockpg: unexpected argument \"%s\"\n", argv[optind]);
		fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
		exit(2);
	}
	if (!have_port)
	{
		fprintf(stderr, "coupon-mockpg: --port is required (0 picks a free port)\n");
		fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
		exit(2);
	}
	if (o->secret == NULL || o->secret[0] == '\0' || strlen(o->secret) > 256)
	{
		fprintf(stderr, "coupon-mockpg: --secret is required (1 to 256 bytes)\n");
		fprintf(stderr, "Try \"coupon-mockpg --help\".\n");
		exit(2);
	}
	if (!o->have_seed)
		o->seed = (uint64_t) time(NULL) ^ ((uint64_t) getpid() << 32);
}

/* Write the pid file for scripts that stop the server by pid. */
static bool
write_pid_file(const char *path)
{
	FILE	   *f = fopen(path, "w");

	if (f == NULL)
	{
		fprintf(stderr, "coupon-mockpg: cannot write pid file \"%s\": %s\n",
				path, strerror(errno));
		return false;
	}
	fprintf(f, "%ld\n", (long) getpid());
	if (fclose(f) != 0)
	{
		fprintf(stderr, "coupon-mockpg: cannot write pid file \"%s\": %s\n",
				path, strerror(errno));
		return false;
	}
	return true;
}

/* Start everything, wait for SIGTERM/SIGINT, stop everything. */
int
main(int argc, char **argv)
{
	Options		o;
	HttpOptions ho;
	sigset_t	sigs;
	int			sig = 0;
	int			port = 0;

	parse_options(argc, argv, &o);

	/* every thread inherits this mask; only sigwait() below sees the signals */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	faults_init(&o.faults, o.seed);
	store_init();
	api_init(o.secret);
	if (o.journal != NULL)
		journal_open(o.journal, store_apply_record);
	timer_start();

	ho.bind_address = o.bind_address;
	ho.port = o.port;
	ho.threads = o.threads;
	ho.max_connections = o.max_connections;
	ho.idle_timeout_s = o.idle_timeout_s;
	ho.verbose = o.verbose;
	if (!http_start(&ho, &port))
	{
		timer_stop();
		journal_stop();
		store_destroy();
		api_destroy();
		return 1;
	}
	if (o.pid_file != NULL && !write_pid_file(o.pid_file))
	{
		http_stop();
		journal_stop();
		store_destroy();
		api_destroy();
		return 1;
	}
	if (strchr(o.bind_address, ':') != NULL)
		printf("coupon-mockpg listening on [%s]:%d\n", o.bind_address, port);
	else
		printf("coupon-mockpg listening on %s:%d\n", o.bind_address, port);
	fflush(stdout);

	do
	{
		if (sigwait(&sigs, &sig) != 0)
			sig = SIGTERM;
	} while (sig == SIGHUP);

	http_stop();
	journal_stop();
	store_destroy();
	api_destroy();
	faults_destroy();
	if (o.pid_file != NULL)
		unlink(o.pid_file);
	fprintf(stderr, "coupon-mockpg: stopped (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	return 0;
}
