/*-------------------------------------------------------------------------
 *
 * http.c
 *	  libmicrohttpd glue for coupon-mockpg.
 *
 *	  libmicrohttpd calls handle_request() several times per request: once
 *	  with the headers, once per piece of body, then with no body left.  At
 *	  that point a request walks through these phases, suspending its
 *	  connection (never a thread) whenever it has to wait:
 *
 *	    UPLOAD   -> wait latency_ms (timer)           -> PROCESS
 *	    PROCESS  -> api_handle(); wait for the journal -> DURABLE
 *	    DURABLE  -> wait stall_ms (timeout fault)      -> SEND
 *	    SEND     -> queue the answer
 *
 *	  A suspended connection is resumed by the timer or journal thread; the
 *	  library then calls handle_request() again and the walk continues.
 *
 *-------------------------------------------------------------------------
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "api.h"
#include "faults.h"
#include "http.h"
#include "journal.h"
#include "timer.h"
#include "util.h"

typedef enum Phase
{
	PH_UPLOAD,
	PH_PROCESS,
	PH_DURABLE,
	PH_SEND
} Phase;

typedef struct Request
{
	struct MHD_Connection *conn;
	char	   *body;
	size_t		len;
	size_t		cap;
	bool		too_large;
	bool		aborted;		/* woken by shutdown: drop the connection */
	Phase		phase;
	Reply		reply;
} Request;

static struct MHD_Daemon *daemon_handle;
static bool stopping;
static bool verbose_log;
static bool started;

/* Suspend callback for the timer and the journal: park this connection. */
static void
suspend_request(void *arg)
{
	Request    *r = arg;

	MHD_suspend_connection(r->conn);
}

/* Wake callback: resume the connection; the library calls us again. */
static void
wake_request(void *arg, bool aborted)
{
	Request    *r = arg;

	r->aborted = aborted;
	MHD_resume_connection(r->conn);
}

/* Pull callback for streamed answers (GET /v1/transactions). */
static ssize_t
read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
	ssize_t		n = txn_stream_read(cls, buf, max);

	return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

/* Free callback for streamed answers. */
static void
free_stream(void *cls)
{
	txn_stream_free(cls);
}

/* Hand the reply to the library; the body's ownership goes with it. */
static enum MHD_Result
send_reply(Request *r)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	Reply	   *rep = &r->reply;

	if (rep->status == 0)		/* an endpoint forgot to answer: say so */
		reply_error(rep, 500, "INTERNAL_ERROR", "the mock gateway produced no answer");
	if (rep->stream != NULL)
	{
		resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384,
												 read_stream, rep->stream,
												 free_stream);
		if (resp == NULL)
			return MHD_NO;
		rep->stream = NULL;
	}
	else
	{
		resp = MHD_create_response_from_buffer(rep->len, rep->body,
											   MHD_RESPMEM_MUST_FREE);
		if (resp == NULL)
			return MHD_NO;
		rep->body = NULL;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
							"application/json; charset=utf-8");
	if (rep->allow != NULL)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rep->allow);
	if (rep->auth_challenge)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
								"Basic realm=\"coupon-mockpg\"");
	ret = MHD_queue_response(r->conn, (unsigned int) rep->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Content-Length above the cap: answer 413 before reading any of the body. */
static bool
declared_too_large(struct MHD_Connection *conn)
{
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
												 MHD_HTTP_HEADER_CONTENT_LENGTH);
	char	   *end;
	unsigned long long n;

	if (cl == NULL)
		return false;
	errno = 0;
	n = strtoull(cl, &end, 10);
	return errno == ERANGE || n > HTTP_MAX_BODY;
}

/* Keep a piece of the body, or forget the body once it passes the cap. */
static void
take_body(Request *r, const char *data, size_t n)
{
	if (r->too_large)
		return;
	if (r->len + n > HTTP_MAX_BODY)
	{
		r->too_large = true;
		free(r->body);
		r->body = NULL;
		r->len = r->cap = 0;
		return;
	}
	if (r->len + n > r->cap)
	{
		size_t		cap = r->cap ? r->cap : 1024;

		while (cap < r->len + n)
			cap *= 2;
		r->body = xrealloc(r->body, cap);
		r->cap = cap;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
}

/* The 413 answer for bodies over the cap. */
static void
reply_too_large(Request *r)
{
	reply_error(&r->reply, 413, "INVALID_REQUEST",
				"the request body is larger than %d bytes", HTTP_MAX_BODY);
}

/* Run the endpoint now that the whole request (and any latency) is in. */
static void
process(Request *r, const char *url, const char *method)
{
	struct MHD_Connection *c = r->conn;
	ApiRequest	q;

	q.method = method;
	q.path = url;
	q.body = r->body ? r->body : "";
	q.body_len = r->len;
	q.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
												  MHD_HTTP_HEADER_AUTHORIZATION);
	q.idempotency_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
													"Idempotency-Key");
	q.trace_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Trace-Id");
	q.start_date = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "startDate");
	q.end_date = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "endDate");
	q.starting_after = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "startingAfter");
	q.limit = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
	api_handle(&q, &r->reply);
}

/* Move a fully received request through its phases (see the file header). */
static enum MHD_Result
advance(Request *r, const char *url, const char *method)
{
	for (;;)
	{
		switch (r->phase)
		{
			case PH_UPLOAD:
				r->phase = PH_PROCESS;
				if (r->too_large)
				{
					reply_too_large(r);
					r->phase = PH_SEND;
					break;
				}
				if (api_delayed_path(url))
				{
					int			latency = faults_get().latency_ms;

					if (latency > 0)
					{
						if (timer_add(monotonic_ms() + latency, suspend_request,
									  wake_request, r))
							return MHD_YES;
						return MHD_NO;	/* shutting down */
					}
				}
				break;
			case PH_PROCESS:
				if (r->aborted)
					return MHD_NO;
				process(r, url, method);
				r->phase = PH_DURABLE;
				if (journal_wait(r->reply.seq, suspend_request, wake_request, r))
					return MHD_YES;
				break;
			case PH_DURABLE:
				r->phase = PH_SEND;
				if (r->reply.stall_ms > 0)
				{
					if (timer_add(monotonic_ms() + r->reply.stall_ms,
								  suspend_request, wake_request, r))
						return MHD_YES;
					return MHD_NO;	/* shutting down: the answer never comes */
				}
				break;
			case PH_SEND:
				if (r->aborted)
					return MHD_NO;
				return send_reply(r);
		}
	}
}

/* libmicrohttpd's access handler: headers, body pieces, then the phases. */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *conn, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	Request    *r = *con_cls;

	if (r == NULL)
	{
		if (__atomic_load_n(&stopping, __ATOMIC_ACQUIRE))
			return MHD_NO;
		r = xcalloc(1, sizeof(Request));
		r->conn = conn;
		*con_cls = r;
		if (declared_too_large(conn))
		{
			r->too_large = true;
			reply_too_large(r);
			r->phase = PH_SEND;
			return send_reply(r);
		}
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		take_body(r, upload_data, *upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (r->phase == PH_UPLOAD && __atomic_load_n(&stopping, __ATOMIC_ACQUIRE))
		return MHD_NO;
	return advance(r, url, method);
}

/* Free the per-request state when the library is done with the request. */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	Request    *r = *con_cls;

	if (r == NULL)
		return;
	reply_free(&r->reply);
	free(r->body);
	free(r);
	*con_cls = NULL;
}

/* libmicrohttpd's messages: shown while starting, later only with --verbose. */
static void
log_message(void *cls, const char *fmt, va_list ap)
{
	if (started && !verbose_log)
		return;
	fputs("coupon-mockpg: libmicrohttpd: ", stderr);
	vfprintf(stderr, fmt, ap);
}

/*
 * Bind the listening socket ourselves, so that errors ("address in use")
 * are reported plainly and --port 0 can tell which port it got.
 */
static int
open_listener(const HttpOptions *o, int *bound_port, bool *ipv6)
{
	struct sockaddr_storage ss;
	socklen_t	sslen;
	int			fd;
	int			one = 1;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, o->bind_address, &((struct sockaddr_in *) &ss)->sin_addr) == 1)
	{
		((struct sockaddr_in *) &ss)->sin_family = AF_INET;
		((struct sockaddr_in *) &ss)->sin_port = htons((uint16_t) o->port);
		sslen = sizeof(struct sockaddr_in);
		*ipv6 = false;
	}
	else if (inet_pton(AF_INET6, o->bind_address, &((struct sockaddr_in6 *) &ss)->sin6_addr) == 1)
	{
		((struct sockaddr_in6 *) &ss)->sin6_family = AF_INET6;
		((struct sockaddr_in6 *) &ss)->sin6_port = htons((uint16_t) o->port);
		sslen = sizeof(struct sockaddr_in6);
		*ipv6 = true;
	}
	else
	{
		fprintf(stderr, "coupon-mockpg: --bind \"%s\" is not a numeric IPv4 or IPv6 address\n",
				o->bind_address);
		return -1;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
	{
		fprintf(stderr, "coupon-mockpg: cannot create a socket: %s\n", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (*ipv6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *) &ss, sslen) != 0)
	{
		fprintf(stderr, "coupon-mockpg: cannot bind %s port %d: %s\n",
				o->bind_address, o->port, strerror(errno));
		close(fd);
		return -1;
	}
	if (listen(fd, 1024) != 0)
	{
		fprintf(stderr, "coupon-mockpg: cannot listen: %s\n", strerror(errno));
		close(fd);
		return -1;
	}
	sslen = sizeof(ss);
	getsockname(fd, (struct sockaddr *) &ss, &sslen);
	*bound_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *) &ss)->sin_port
						: ((struct sockaddr_in6 *) &ss)->sin6_port);
	return fd;
}

/* Start the server: epoll, an internal thread pool, suspend/resume. */
bool
http_start(const HttpOptions *o, int *bound_port)
{
	unsigned int flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
		MHD_USE_ERROR_LOG;
	bool		ipv6 = false;
	int			fd;

	verbose_log = o->verbose;
	fd = open_listener(o, bound_port, &ipv6);
	if (fd < 0)
		return false;
	if (ipv6)
		flags |= MHD_USE_IPv6;
	daemon_handle = MHD_start_daemon(flags, 0, NULL, NULL,
									 handle_request, NULL,
									 MHD_OPTION_EXTERNAL_LOGGER, log_message, NULL,
									 MHD_OPTION_LISTEN_SOCKET, (MHD_socket) fd,
									 MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) o->threads,
									 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) o->max_connections,
									 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) o->idle_timeout_s,
									 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 32768,
									 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
									 MHD_OPTION_END);
	if (daemon_handle == NULL)
	{
		fprintf(stderr, "coupon-mockpg: cannot start the HTTP server\n");
		close(fd);
		return false;
	}
	started = true;
	return true;
}

/*
 * Stop cleanly: refuse new requests, wake delayed ones (their connections
 * are dropped: a stalled answer never arrives), let the journal finish the
 * fsync that others wait for, then stop the library.
 */
void
http_stop(void)
{
	if (daemon_handle == NULL)
		return;
	__atomic_store_n(&stopping, true, __ATOMIC_RELEASE);
	timer_stop();
	journal_close_waiters();
	MHD_stop_daemon(daemon_handle);
	daemon_handle = NULL;
}
