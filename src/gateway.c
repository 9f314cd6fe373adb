/*
 * gateway.c
 *		HTTP calls to the payment gateway with the libcurl multi interface,
 *		waited on together with the process latch: the transport.  What the
 *		answers say is read by gateway_reply.c.
 *
 * One file of about 950 lines, on purpose: the libcurl callbacks, the
 * handle pool, the calls' lifecycle and the wait all work on the private
 * Gateway and GatewayEasy structs and on invariants between them (a handle
 * is busy or idle, a socket is watched until libcurl says otherwise, an fd
 * is budgeted until closed); splitting them would publish those structs in
 * a header and spread one state machine over several files.
 *
 * One CURLM per Gateway drives every call at once; its connection cache
 * keeps connections to the gateway alive between calls, and easy handles
 * are recycled through a short free list.  libcurl tells us through its
 * socket and timer callbacks which sockets it wants watched and when it
 * wants to be called back; gateway_wait turns that into a WaitEventSet that
 * also holds MyLatch and postmaster death, so a worker busy with calls wakes
 * at once for new work.
 *
 * Callbacks run inside libcurl and must never ereport: a longjmp through
 * libcurl's frames would leave the multi handle in an undefined state.  They
 * only record what happened (allocating with MCXT_ALLOC_NO_OOM) and errors
 * are raised afterwards, outside libcurl.
 *
 * Sockets count against the backend's file descriptor budget the way
 * postgres_fdw's connections do (AcquireExternalFD), so a burst of calls
 * cannot starve fd.c of descriptors; the number of connections is capped
 * below that budget, and calls beyond it wait inside libcurl for a free
 * connection (their timeout runs meanwhile).
 */
#include "postgres.h"

#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "lib/ilist.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "coupon.h"
#include "pgcompat.h"
#include "gateway.h"

/* an answer body larger than this fails the call */
#define GATEWAY_MAX_ANSWER		(1024 * 1024)

/* idle easy handles kept for reuse */
#define GATEWAY_MAX_FREE_HANDLES	64

/* a recycled handle keeps a response buffer up to this size */
#define GATEWAY_KEEP_BUFFER		(64 * 1024)

/* connecting may take at most this long (and never longer than the call) */
#define GATEWAY_CONNECT_TIMEOUT_MS	5000

/* external descriptors left for others when sizing the connection pool */
#define GATEWAY_SPARE_FDS		8

/* one socket libcurl asked us to watch */
typedef struct GatewaySocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
} GatewaySocket;

/* an easy handle and the state of the transfer it runs */
typedef struct GatewayEasy
{
	dlist_node	node;			/* in Gateway.busy or Gateway.idle */
	MemoryContext cxt;			/* Gateway.cxt, for the body buffer */
	CURL	   *curl;
	bool		in_multi;		/* added to Gateway.multi */
	struct curl_slist *headers; /* of the running call */
	GatewayCall *call;			/* the running or finished call, or NULL */

	/* the answer body, in Gateway.cxt */
	char	   *buf;
	size_t		len;
	size_t		cap;

	/* how the transfer ended */
	CURLcode	result;
	bool		too_large;
	bool		out_of_memory;
	bool		no_socket;
	char		errbuf[CURL_ERROR_SIZE];
} GatewayEasy;

struct Gateway
{
	MemoryContext cxt;			/* everything below, child of TopMemoryContext */
	MemoryContext wait_cxt;		/* one gateway_wait's WaitEventSet */
	CURLM	   *multi;
	char	   *base_url;		/* without a trailing slash */
	char	   *secret;
	int			timeout_ms;

	int			in_flight;		/* started, not yet returned */
	dlist_head	busy;			/* handles of calls started, not returned */
	dlist_head	idle;			/* handles ready for reuse */
	int			nidle;

	/* finished calls, oldest first, linked through next_done */
	GatewayCall *done_head;
	GatewayCall *done_tail;

	/* the sockets libcurl wants watched */
	GatewaySocket *sockets;
	int			nsockets;
	int			maxsockets;

	/* libcurl's single timer */
	bool		timer_set;
	TimestampTz timer_deadline;
};

static bool curl_initialized = false;

/* initialize libcurl once per process (not thread-safe; we have no threads) */
static void
gateway_global_init(void)
{
	CURLcode	rc;

	if (curl_initialized)
		return;
	rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		elog(ERROR, "could not initialize libcurl: %s", curl_easy_strerror(rc));
	curl_initialized = true;
}

/* raise any curl_multi_* failure as an ERROR */
static void
check_multi(CURLMcode rc, const char *what)
{
	if (rc != CURLM_OK)
		elog(ERROR, "%s failed: %s", what, curl_multi_strerror(rc));
}

/* index of fd in gw->sockets, or -1 */
static int
find_socket(Gateway *gw, curl_socket_t fd)
{
	for (int i = 0; i < gw->nsockets; i++)
	{
		if (gw->sockets[i].fd == fd)
			return i;
	}
	return -1;
}

/* make room for n sockets without ever throwing; false when out of memory */
static bool
reserve_sockets_noerror(Gateway *gw, int n)
{
	GatewaySocket *grown;
	int			newmax;

	if (n <= gw->maxsockets)
		return true;
	newmax = Max(n, gw->maxsockets * 2);
	grown = MemoryContextAllocExtended(gw->cxt, sizeof(GatewaySocket) * newmax,
									   MCXT_ALLOC_NO_OOM);
	if (grown == NULL)
		return false;
	if (gw->nsockets > 0)
		memcpy(grown, gw->sockets, sizeof(GatewaySocket) * gw->nsockets);
	if (gw->sockets)
		pfree(gw->sockets);
	gw->sockets = grown;
	gw->maxsockets = newmax;
	return true;
}

/* CURLMOPT_SOCKETFUNCTION: remember which sockets to watch, and for what */
static int
gateway_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
				  void *socketp)
{
	Gateway    *gw = (Gateway *) userp;
	int			i = find_socket(gw, fd);

	if (what == CURL_POLL_REMOVE)
	{
		/* curl is about to close it (or no longer cares): forget it now */
		if (i >= 0)
			gw->sockets[i] = gw->sockets[--gw->nsockets];
		return 0;
	}
	if (i < 0)
	{
		if (!reserve_sockets_noerror(gw, gw->nsockets + 1))
			return -1;			/* curl fails with CURLM_ABORTED_BY_CALLBACK */
		i = gw->nsockets++;
		gw->sockets[i].fd = fd;
	}
	gw->sockets[i].what = what;
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: remember when curl wants to be called back */
static int
gateway_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	Gateway    *gw = (Gateway *) userp;

	if (timeout_ms < 0)
		gw->timer_set = false;
	else
	{
		gw->timer_set = true;
		gw->timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 timeout_ms);
	}
	return 0;
}

/* CURLOPT_OPENSOCKETFUNCTION: a socket that counts against the fd budget */
static curl_socket_t
gateway_opensocket_cb(void *clientp, curlsocktype purpose,
					  struct curl_sockaddr *address)
{
	GatewayEasy *ge = (GatewayEasy *) clientp;
	int			socktype = address->socktype;
	curl_socket_t fd;

	/*
	 * Take one descriptor from the budget and make sure one more is left:
	 * gateway_wait's WaitEventSet takes its epoll fd from the same budget
	 * and would fail with EMFILE otherwise.
	 */
	if (!AcquireExternalFD())
	{
		ge->no_socket = true;
		return CURL_SOCKET_BAD;
	}
	if (!AcquireExternalFD())
	{
		ReleaseExternalFD();
		ge->no_socket = true;
		return CURL_SOCKET_BAD;
	}
	ReleaseExternalFD();
#ifdef SOCK_CLOEXEC
	socktype |= SOCK_CLOEXEC;	/* never inherited by COPY PROGRAM and such */
#endif
	fd = socket(address->family, socktype, address->protocol);
	if (fd == CURL_SOCKET_BAD)
		ReleaseExternalFD();
	return fd;
}

/* CURLOPT_CLOSESOCKETFUNCTION: close and give the fd back to the budget */
static int
gateway_closesocket_cb(void *clientp, curl_socket_t fd)
{
	int			rc = close(fd);

	ReleaseExternalFD();
	return rc;
}

/* CURLOPT_WRITEFUNCTION: append to the answer body, at most 1 MiB */
static size_t
gateway_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	GatewayEasy *ge = (GatewayEasy *) userdata;
	size_t		n = size * nmemb;

	if (n > GATEWAY_MAX_ANSWER - ge->len)
	{
		ge->too_large = true;
		return 0;				/* the transfer fails with CURLE_WRITE_ERROR */
	}
	if (ge->len + n + 1 > ge->cap)
	{
		size_t		newcap = Max(ge->cap * 2, 4096);
		char	   *grown;

		while (newcap < ge->len + n + 1)
			newcap *= 2;
		newcap = Min(newcap, (size_t) GATEWAY_MAX_ANSWER + 1);
		grown = MemoryContextAllocExtended(ge->cxt, newcap, MCXT_ALLOC_NO_OOM);
		if (grown == NULL)
		{
			ge->out_of_memory = true;
			return 0;
		}
		if (ge->len > 0)
			memcpy(grown, ge->buf, ge->len);
		if (ge->buf)
			pfree(ge->buf);
		ge->buf = grown;
		ge->cap = newcap;
	}
	memcpy(ge->buf + ge->len, ptr, n);
	ge->len += n;
	return n;
}

/* set a curl easy option, raising an ERROR if libcurl refuses it */
#define EASY_SETOPT(curl, opt, val) \
	do { \
		CURLcode	setopt_rc_ = curl_easy_setopt((curl), (opt), (val)); \
		if (setopt_rc_ != CURLE_OK) \
			elog(ERROR, "curl_easy_setopt(%s) failed: %s", #opt, \
				 curl_easy_strerror(setopt_rc_)); \
	} while (0)

/* the options every call of this gateway shares, set once per handle */
static void
set_handle_options(Gateway *gw, GatewayEasy *ge)
{
	CURL	   *curl = ge->curl;

	EASY_SETOPT(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	EASY_SETOPT(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	EASY_SETOPT(curl, CURLOPT_FOLLOWLOCATION, 0L);
	EASY_SETOPT(curl, CURLOPT_NOSIGNAL, 1L);
	EASY_SETOPT(curl, CURLOPT_TIMEOUT_MS, (long) gw->timeout_ms);
	EASY_SETOPT(curl, CURLOPT_CONNECTTIMEOUT_MS,
				(long) Min(gw->timeout_ms, GATEWAY_CONNECT_TIMEOUT_MS));
	EASY_SETOPT(curl, CURLOPT_TCP_NODELAY, 1L);
	EASY_SETOPT(curl, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	EASY_SETOPT(curl, CURLOPT_USERNAME, gw->secret);
	EASY_SETOPT(curl, CURLOPT_PASSWORD, "");
	EASY_SETOPT(curl, CURLOPT_USERAGENT, "coupon");
	EASY_SETOPT(curl, CURLOPT_WRITEFUNCTION, gateway_write_cb);
	EASY_SETOPT(curl, CURLOPT_WRITEDATA, ge);
	EASY_SETOPT(curl, CURLOPT_OPENSOCKETFUNCTION, gateway_opensocket_cb);
	EASY_SETOPT(curl, CURLOPT_OPENSOCKETDATA, ge);
	EASY_SETOPT(curl, CURLOPT_CLOSESOCKETFUNCTION, gateway_closesocket_cb);
	EASY_SETOPT(curl, CURLOPT_CLOSESOCKETDATA, gw);
	EASY_SETOPT(curl, CURLOPT_ERRORBUFFER, ge->errbuf);
}

/* an idle handle from the free list, or a new one */
static GatewayEasy *
get_handle(Gateway *gw)
{
	GatewayEasy *ge;

	if (!dlist_is_empty(&gw->idle))
	{
		ge = dlist_container(GatewayEasy, node, dlist_pop_head_node(&gw->idle));
		gw->nidle--;
		return ge;
	}

	ge = MemoryContextAllocZero(gw->cxt, sizeof(GatewayEasy));
	ge->cxt = gw->cxt;
	ge->curl = curl_easy_init();
	if (ge->curl == NULL)
	{
		pfree(ge);
		elog(ERROR, "curl_easy_init failed");
	}
	PG_TRY();
	{
		set_handle_options(gw, ge);
	}
	PG_CATCH();
	{
		curl_easy_cleanup(ge->curl);
		pfree(ge);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return ge;
}

/* return a handle that runs no call to the free list, or destroy it */
static void
put_handle(Gateway *gw, GatewayEasy *ge)
{
	ge->call = NULL;
	if (ge->headers)
	{
		curl_slist_free_all(ge->headers);
		ge->headers = NULL;
	}
	if (gw->nidle >= GATEWAY_MAX_FREE_HANDLES)
	{
		curl_easy_cleanup(ge->curl);
		if (ge->buf)
			pfree(ge->buf);
		pfree(ge);
		return;
	}
	if (ge->cap > GATEWAY_KEEP_BUFFER)
	{
		pfree(ge->buf);
		ge->buf = NULL;
		ge->cap = 0;
	}
	ge->len = 0;
	dlist_push_head(&gw->idle, &ge->node);
	gw->nidle++;
}

/* the request headers of a call, or NULL when libcurl is out of memory */
static struct curl_slist *
build_headers(bool post, const char *key_header, const char *trace_header)
{
	struct curl_slist *list = NULL;
	struct curl_slist *next;

	next = curl_slist_append(list, "Accept: application/json");
	if (next == NULL)
		goto fail;
	list = next;
	if (post)
	{
		next = curl_slist_append(list, "Content-Type: application/json");
		if (next == NULL)
			goto fail;
		list = next;
	}
	if (key_header)
	{
		next = curl_slist_append(list, key_header);
		if (next == NULL)
			goto fail;
		list = next;
	}
	if (trace_header)
	{
		next = curl_slist_append(list, trace_header);
		if (next == NULL)
			goto fail;
		list = next;
	}
	return list;

fail:
	curl_slist_free_all(list);
	return NULL;
}

/* move every transfer curl has finished to the done list */
static void
collect_done(Gateway *gw)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(gw->multi, &left)) != NULL)
	{
		CURL	   *curl = msg->easy_handle;
		CURLcode	result = msg->data.result;
		char	   *priv = NULL;
		GatewayCall *call;
		GatewayEasy *ge;
		long		status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;

		/* msg is gone once the handle is removed: read everything first */
		curl_easy_getinfo(curl, CURLINFO_PRIVATE, &priv);
		call = (GatewayCall *) priv;
		ge = (GatewayEasy *) call->handle;
		if (result == CURLE_OK &&
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
			status = 0;
		check_multi(curl_multi_remove_handle(gw->multi, curl),
					"curl_multi_remove_handle");
		ge->in_multi = false;

		curl_slist_free_all(ge->headers);
		ge->headers = NULL;
		ge->result = result;

		call->done = true;
		call->http_status = (result == CURLE_OK) ? (int) status : 0;
		call->latency_us = GetCurrentTimestamp() - call->started_at;
		call->next_done = NULL;
		if (gw->done_tail)
			gw->done_tail->next_done = call;
		else
			gw->done_head = call;
		gw->done_tail = call;
	}
}

/* let curl act on one ready socket (or its timer), then collect results */
static void
drive(Gateway *gw, curl_socket_t fd, int ev_bitmask)
{
	int			running;

	check_multi(curl_multi_socket_action(gw->multi, fd, ev_bitmask, &running),
				"curl_multi_socket_action");
	collect_done(gw);
}

/*
 * How many connections libcurl may hold open: below this process's share of
 * descriptors for non-file uses (AcquireExternalFD allows max_safe_fds / 3),
 * keeping a few for the WaitEventSet and anything else.  Beyond it libcurl
 * queues transfers until a connection is free instead of failing them.
 */
static long
gateway_max_connections(void)
{
	return Max(max_safe_fds / 3 - GATEWAY_SPARE_FDS, 1);
}

/* open a client for the gateway at base_url */
Gateway *
gateway_open(const char *base_url, const char *secret, int timeout_ms)
{
	MemoryContext cxt;
	Gateway    *gw;
	size_t		len;
	CURLM	   *multi;
	CURLMcode	rc;

	if (pg_strncasecmp(base_url, "http://", 7) != 0 &&
		pg_strncasecmp(base_url, "https://", 8) != 0)
		elog(ERROR, "gateway URL \"%s\" is not http or https", base_url);
	if (timeout_ms <= 0)
		elog(ERROR, "gateway timeout must be positive, not %d", timeout_ms);

	gateway_global_init();

	/* everything that may throw comes before curl_multi_init */
	cxt = AllocSetContextCreate(TopMemoryContext, "coupon gateway",
								ALLOCSET_DEFAULT_SIZES);
	gw = MemoryContextAllocZero(cxt, sizeof(Gateway));
	gw->cxt = cxt;
	gw->wait_cxt = AllocSetContextCreate(cxt, "coupon gateway wait",
										 ALLOCSET_SMALL_SIZES);
	gw->base_url = MemoryContextStrdup(cxt, base_url);
	len = strlen(gw->base_url);
	while (len > 0 && gw->base_url[len - 1] == '/')
		gw->base_url[--len] = '\0';
	gw->secret = MemoryContextStrdup(cxt, secret);
	gw->timeout_ms = timeout_ms;
	dlist_init(&gw->busy);
	dlist_init(&gw->idle);
	gw->maxsockets = 16;
	gw->sockets = MemoryContextAlloc(cxt, sizeof(GatewaySocket) * gw->maxsockets);

	multi = curl_multi_init();
	if (multi == NULL)
	{
		MemoryContextDelete(cxt);
		elog(ERROR, "curl_multi_init failed");
	}
	rc = curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, gateway_socket_cb);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, gw);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, gateway_timer_cb);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(multi, CURLMOPT_TIMERDATA, gw);
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
							   gateway_max_connections());

	/*
	 * Keep as many idle connections as we may open.  libcurl's default, 4
	 * per easy handle currently added, shrinks as finished calls are
	 * removed and closed connections in the middle of a burst.
	 */
	if (rc == CURLM_OK)
		rc = curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS,
							   gateway_max_connections());
	if (rc != CURLM_OK)
	{
		curl_multi_cleanup(multi);
		MemoryContextDelete(cxt);
		elog(ERROR, "curl_multi_setopt failed: %s", curl_multi_strerror(rc));
	}
	gw->multi = multi;
	return gw;
}

/* free the multi handle, every easy handle and all memory */
void
gateway_close(Gateway *gw)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &gw->busy)
	{
		GatewayEasy *ge = dlist_container(GatewayEasy, node, iter.cur);

		/* the caller's GatewayCalls may be gone already: do not look */
		if (ge->in_multi)
			(void) curl_multi_remove_handle(gw->multi, ge->curl);
		if (ge->headers)
			curl_slist_free_all(ge->headers);
		curl_easy_cleanup(ge->curl);
	}
	dlist_foreach_modify(iter, &gw->idle)
	{
		GatewayEasy *ge = dlist_container(GatewayEasy, node, iter.cur);

		curl_easy_cleanup(ge->curl);
	}
	/* closes the cached connections through gateway_closesocket_cb */
	(void) curl_multi_cleanup(gw->multi);
	MemoryContextDelete(gw->cxt);
}

/* the per-call options of a handle, and into the multi handle with it */
static void
add_call(Gateway *gw, GatewayEasy *ge, GatewayCall *call, bool post,
		 const char *url)
{
	CURL	   *curl = ge->curl;

	if (ge->headers == NULL)
		elog(ERROR, "out of memory building gateway request headers");
	EASY_SETOPT(curl, CURLOPT_URL, url);
	EASY_SETOPT(curl, CURLOPT_HTTPHEADER, ge->headers);
	EASY_SETOPT(curl, CURLOPT_PRIVATE, call);
	if (post)
	{
		const char *body = call->body ? call->body : "";

		EASY_SETOPT(curl, CURLOPT_POST, 1L);
		EASY_SETOPT(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
		/* copied: the caller's body may go away before the answer */
		EASY_SETOPT(curl, CURLOPT_COPYPOSTFIELDS, body);
	}
	else
		EASY_SETOPT(curl, CURLOPT_HTTPGET, 1L);
	check_multi(curl_multi_add_handle(gw->multi, curl), "curl_multi_add_handle");
	ge->in_multi = true;
}

/* add_call, giving the handle back if that fails */
static void
add_call_or_release(Gateway *gw, GatewayEasy *ge, GatewayCall *call, bool post,
					const char *url)
{
	PG_TRY();
	{
		add_call(gw, ge, call, post, url);
	}
	PG_CATCH();
	{
		put_handle(gw, ge);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* start one call; it is on the wire (or connecting) when this returns */
void
gateway_start(Gateway *gw, GatewayCall *call)
{
	bool		post;
	char	   *url;
	char	   *key_header = NULL;
	char	   *trace_header = NULL;
	GatewayEasy *ge;

	if (strcmp(call->method, "POST") == 0)
		post = true;
	else if (strcmp(call->method, "GET") == 0)
		post = false;
	else
		elog(ERROR, "gateway method \"%s\" is not GET or POST", call->method);
	if (call->path == NULL || call->path[0] != '/')
		elog(ERROR, "gateway path must start with \"/\"");
	if (call->idempotency_key)
	{
		for (const char *p = call->idempotency_key; *p; p++)
		{
			if ((unsigned char) *p < 0x20 || *p == 0x7f)
				elog(ERROR, "Idempotency-Key contains a control character");
		}
		key_header = psprintf("Idempotency-Key: %s", call->idempotency_key);
	}
	/* (a payment's row may have been written by hand: check it again) */
	if (call->trace_id && coupon_trace_id_ok(call->trace_id))
		trace_header = psprintf("X-Trace-Id: %s", call->trace_id);
	url = psprintf("%s%s", gw->base_url, call->path);

	/* room for this call's sockets, so the callback rarely has to grow */
	if (!reserve_sockets_noerror(gw, gw->in_flight + 8))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	ge = get_handle(gw);
	ge->len = 0;
	ge->result = CURLE_OK;
	ge->too_large = false;
	ge->out_of_memory = false;
	ge->no_socket = false;
	ge->errbuf[0] = '\0';
	ge->call = call;
	ge->headers = build_headers(post, key_header, trace_header);
	add_call_or_release(gw, ge, call, post, url);
	pfree(url);
	if (key_header)
		pfree(key_header);
	if (trace_header)
		pfree(trace_header);

	call->done = false;
	call->http_status = 0;
	call->response = NULL;
	call->error = NULL;
	call->too_large = false;
	call->latency_us = 0;
	call->handle = ge;
	call->next_done = NULL;
	call->started_at = GetCurrentTimestamp();
	dlist_push_tail(&gw->busy, &ge->node);
	gw->in_flight++;

	/* resolve and connect now rather than at the next gateway_wait */
	drive(gw, CURL_SOCKET_TIMEOUT, 0);
}

/* calls started and not yet handed back */
int
gateway_in_flight(Gateway *gw)
{
	return gw->in_flight;
}

/* how long to sleep: the caller's limit or curl's timer, whichever is first */
static long
wait_timeout(Gateway *gw, long timeout_ms)
{
	long		ms = (timeout_ms < 0) ? -1 : timeout_ms;

	if (gw->timer_set)
	{
		long		until_timer;

		until_timer = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													  gw->timer_deadline);
		if (ms < 0 || until_timer < ms)
			ms = until_timer;
	}
	return ms;
}

/* fill set with the latch (if asked), postmaster death and curl's sockets */
static void
fill_wait_set(Gateway *gw, WaitEventSet *set, bool with_latch)
{
	if (with_latch)
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	if (IsUnderPostmaster)
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
						  NULL, NULL);
	for (int i = 0; i < gw->nsockets; i++)
	{
		uint32		events = 0;

		if (gw->sockets[i].what & CURL_POLL_IN)
			events |= WL_SOCKET_READABLE;
		if (gw->sockets[i].what & CURL_POLL_OUT)
			events |= WL_SOCKET_WRITEABLE;
		if (events != 0)
			AddWaitEventToSet(set, events, gw->sockets[i].fd, NULL, NULL);
	}
}

/* one wait on a fresh WaitEventSet; *nfired events land in fired[] */
static void
wait_once(Gateway *gw, bool with_latch, long ms, WaitEvent *fired,
		  int nevents, uint32 wait_event_info, int *nfired)
{
	WaitEventSet *set = coupon_wait_event_set(gw->wait_cxt, nevents);

	/* in PostgreSQL 15 no resource owner frees the set's epoll fd for us */
	PG_TRY();
	{
		fill_wait_set(gw, set, with_latch);
		*nfired = WaitEventSetWait(set, ms, fired, nevents, wait_event_info);
	}
	PG_FINALLY();
	{
		FreeWaitEventSet(set);
	}
	PG_END_TRY();
}

/* sleep until a socket is ready, curl's timer fires, the latch or timeout */
bool
gateway_wait(Gateway *gw, long timeout_ms, uint32 wait_event_info)
{
	bool		latch_set = false;
	bool		latch_was_set = MyLatch->is_set;
	int			nevents = gw->nsockets + 2;
	int			nready = 0;
	int			nfired = 0;
	long		ms;
	MemoryContext oldcxt;
	WaitEvent  *fired;
	GatewaySocket *ready;

	/*
	 * A latch that is already set would end the wait before any socket is
	 * looked at; if the caller's latch is set again on every round, replies
	 * would then starve.  So in that case poll the sockets without the latch
	 * and report it set.
	 */
	ms = latch_was_set ? 0 : wait_timeout(gw, timeout_ms);

	MemoryContextReset(gw->wait_cxt);
	oldcxt = MemoryContextSwitchTo(gw->wait_cxt);
	fired = palloc(sizeof(WaitEvent) * nevents);
	ready = palloc(sizeof(GatewaySocket) * nevents);
	wait_once(gw, !latch_was_set, ms, fired, nevents, wait_event_info, &nfired);

	for (int i = 0; i < nfired; i++)
	{
		int			mask = 0;

		if (fired[i].events & WL_LATCH_SET)
			latch_set = true;
		if (fired[i].events & WL_SOCKET_READABLE)
			mask |= CURL_CSELECT_IN;
		if (fired[i].events & WL_SOCKET_WRITEABLE)
			mask |= CURL_CSELECT_OUT;
		if (mask != 0)
		{
			ready[nready].fd = fired[i].fd;
			ready[nready].what = mask;
			nready++;
		}
	}
	MemoryContextSwitchTo(oldcxt);

	for (int i = 0; i < nready; i++)
	{
		/* an earlier action may have made curl drop (and close) this one */
		if (find_socket(gw, ready[i].fd) >= 0)
			drive(gw, ready[i].fd, ready[i].what);
	}

	/*
	 * The timer stays armed until curl moves or deletes it: if our clock is
	 * a hair ahead of curl's, curl does nothing now and, its next expiry
	 * being unchanged, would not tell us again.
	 */
	if (gw->timer_set && GetCurrentTimestamp() >= gw->timer_deadline)
		drive(gw, CURL_SOCKET_TIMEOUT, 0);

	MemoryContextReset(gw->wait_cxt);
	return latch_set || latch_was_set;
}

/* the transport error of a failed transfer, in words */
static char *
transfer_error(GatewayEasy *ge)
{
	if (ge->too_large)
		return pstrdup("answer too large");
	if (ge->out_of_memory)
		return pstrdup("out of memory while receiving the answer");
	if (ge->no_socket)
		return pstrdup("too many open sockets in this process");
	if (ge->errbuf[0] != '\0')
		return psprintf("%s: %s", curl_easy_strerror(ge->result), ge->errbuf);
	return pstrdup(curl_easy_strerror(ge->result));
}

/* whether gateway_next_done has a call to hand back */
bool
gateway_has_done(Gateway *gw)
{
	return gw->done_head != NULL;
}

/* hand back the oldest finished call with its answer copied out */
GatewayCall *
gateway_next_done(Gateway *gw)
{
	GatewayCall *call = gw->done_head;
	GatewayEasy *ge;
	char	   *response = NULL;
	char	   *error = NULL;

	if (call == NULL)
		return NULL;
	ge = (GatewayEasy *) call->handle;

	/* allocate first: on failure the call stays on the list */
	if (ge->result == CURLE_OK)
	{
		response = palloc(ge->len + 1);
		if (ge->len > 0)
			memcpy(response, ge->buf, ge->len);
		response[ge->len] = '\0';
	}
	else
		error = transfer_error(ge);

	gw->done_head = call->next_done;
	if (gw->done_head == NULL)
		gw->done_tail = NULL;
	call->next_done = NULL;
	call->handle = NULL;
	call->response = response;
	call->error = error;
	call->too_large = ge->too_large;
	gw->in_flight--;

	dlist_delete(&ge->node);
	put_handle(gw, ge);
	return call;
}

/* percent-encode everything but RFC 3986's unreserved characters */
char *
gateway_escape(const char *segment)
{
	static const char hex[] = "0123456789ABCDEF";
	char	   *out = palloc(strlen(segment) * 3 + 1);
	char	   *o = out;

	for (const unsigned char *p = (const unsigned char *) segment; *p; p++)
	{
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') ||
			*p == '-' || *p == '.' || *p == '_' || *p == '~')
			*o++ = (char) *p;
		else
		{
			*o++ = '%';
			*o++ = hex[*p >> 4];
			*o++ = hex[*p & 0x0F];
		}
	}
	*o = '\0';
	return out;
}
