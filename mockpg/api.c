/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The endpoints of coupon-mockpg (see docs/mockpg.md):
 *
 *	  POST /v1/payments/confirm            approve a payment
 *	  POST /v1/payments/{paymentKey}/cancel cancel all or part of it
 *	  GET  /v1/payments/{paymentKey}       look it up
 *	  GET  /v1/payments/orders/{orderId}   look it up by order
 *	  GET  /v1/transactions                approvals and cancels in a range
 *	  GET  /__mock/health, /__mock/stats, GET|POST /__mock/faults
 *
 *	  A POST under /v1 decides and writes inside one store critical section:
 *	  idempotency lookup, validation verdict, faults, business checks, the
 *	  change itself and the idempotency record.  Two identical requests
 *	  racing each other therefore see either nothing or the other's record.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "api.h"
#include "faults.h"
#include "htab.h"
#include "journal.h"
#include "payment_json.h"
#include "store.h"
#include "util.h"

#define IDEMPOTENCY_KEY_MAX 300
#define REASON_MAX_CHARS	200
#define STREAM_CHUNK		8192

/* Counters for GET /__mock/stats, since this process started. */
static struct
{
	uint64_t	requests;
	uint64_t	confirms;
	uint64_t	approvals;
	uint64_t	reconfirms;
	uint64_t	declines;
	uint64_t	expirations;
	uint64_t	errors;
	uint64_t	timeouts;
	uint64_t	cancel_requests;
	uint64_t	cancels;
	uint64_t	lookups;
	uint64_t	idempotent_replays;
	uint64_t	idempotency_mismatches;
	uint64_t	unauthorized;
	uint64_t	bad_requests;
	uint64_t	not_found;
	uint64_t	total_approved_amount;
	uint64_t	total_canceled_amount;
} stats;

#define STAT_ADD(field, n) __atomic_fetch_add(&stats.field, (uint64_t) (n), __ATOMIC_RELAXED)
#define STAT_GET(field) __atomic_load_n(&stats.field, __ATOMIC_RELAXED)

/* "KEY:" -- what base64-decoding a valid Authorization header must give. */
static char *expected_credentials;
static size_t expected_len;

struct TxnStream
{
	size_t		next;			/* next transaction index to look at */
	size_t		limit;			/* snapshot of the list length */
	size_t		left;			/* transactions this page may still hold */
	time_t		start;
	time_t		end;
	int			stage;			/* 0 "[", 1 items, 2 "]", 3 done */
	bool		first;
	StrBuf		pending;		/* formatted, not yet sent */
	size_t		poff;
};

/* Remember the secret key; Basic auth is "KEY:" with an empty password. */
void
api_init(const char *secret)
{
	expected_len = strlen(secret) + 1;
	expected_credentials = xmalloc(expected_len + 1);
	snprintf(expected_credentials, expected_len + 1, "%s:", secret);
}

/*
 * The X-Trace-Id headers of /v1 requests, counted per value, so that a test
 * can see that a client sends its trace ids (GET /__mock/traces/{id}).  Not
 * journaled: counts start again with the process.  Capped: past
 * MAX_TRACES distinct ids new ones are not counted.
 */
#define MAX_TRACES 100000

typedef struct TraceCount
{
	char	   *id;
	long		count;
} TraceCount;

static pthread_mutex_t traces_lock = PTHREAD_MUTEX_INITIALIZER;
static HTab traces;
static bool traces_ready = false;

/* count one request's trace id */
static void
note_trace(const char *id)
{
	TraceCount *t;

	if (id == NULL || id[0] == '\0' || strlen(id) > 200)
		return;
	pthread_mutex_lock(&traces_lock);
	if (!traces_ready)
	{
		htab_init(&traces);
		traces_ready = true;
	}
	t = htab_get(&traces, id);
	if (t == NULL && traces.count < MAX_TRACES)
	{
		t = xcalloc(1, sizeof(TraceCount));
		t->id = xstrdup(id);
		htab_put(&traces, t->id, t);
	}
	if (t != NULL)
		t->count++;
	pthread_mutex_unlock(&traces_lock);
}

/* how many /v1 requests carried this trace id */
static long
trace_count(const char *id)
{
	TraceCount *t;
	long		n = 0;

	pthread_mutex_lock(&traces_lock);
	if (traces_ready && (t = htab_get(&traces, id)) != NULL)
		n = t->count;
	pthread_mutex_unlock(&traces_lock);
	return n;
}

/* free one counted trace id */
static void
free_trace(void *p)
{
	TraceCount *t = p;

	free(t->id);
	free(t);
}

/* Free what api_init allocated. */
void
api_destroy(void)
{
	free(expected_credentials);
	expected_credentials = NULL;
	if (traces_ready)
		htab_destroy(&traces, free_trace);
	traces_ready = false;
}

/* Latency faults apply to the gateway API, not to the /__mock control plane. */
bool
api_delayed_path(const char *path)
{
	return strncmp(path, "/v1/", 4) == 0;
}

/* Check "Authorization: Basic base64(KEY:)". */
static bool
authorized(const char *header)
{
	char		decoded[1024];
	size_t		n;
	size_t		len;

	if (header == NULL || strncasecmp(header, "Basic ", 6) != 0)
		return false;
	header += 6;
	while (*header == ' ')
		header++;
	len = strlen(header);
	while (len > 0 && header[len - 1] == ' ')
		len--;
	if (!base64_decode(header, len, decoded, sizeof(decoded), &n))
		return false;
	return secure_equal(decoded, n, expected_credentials, expected_len);
}

/* An Idempotency-Key is 1..300 printable ASCII characters. */
static bool
valid_idempotency_key(const char *key)
{
	size_t		len = strlen(key);

	if (len < 1 || len > IDEMPOTENCY_KEY_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if ((unsigned char) key[i] < 0x20 || (unsigned char) key[i] > 0x7e)
			return false;
	}
	return true;
}

/* Count characters of a UTF-8 string (the parser has validated it). */
static size_t
utf8_chars(const char *s)
{
	size_t		n = 0;

	for (; *s; s++)
	{
		if (((unsigned char) *s & 0xc0) != 0x80)
			n++;
	}
	return n;
}

/* A 200 with the Payment object. */
static void
reply_payment(Reply *out, const Payment *p)
{
	StrBuf		sb;

	sb_init(&sb, 512);
	payment_write(&sb, p);
	reply_take(out, 200, &sb);
}

/* A 400 INVALID_REQUEST, counted. */
static void
bad_request(Reply *out, const char *message)
{
	STAT_ADD(bad_requests, 1);
	reply_error(out, 400, "INVALID_REQUEST", "%s", message);
}

/* A 405 naming the one method the route accepts. */
static void
method_not_allowed(Reply *out, const ApiRequest *q, const char *allow)
{
	out->allow = allow;
	reply_error(out, 405, "METHOD_NOT_ALLOWED", "%s is not allowed here; use %s",
				q->method, allow);
}

/* A 404 for a path that is not an endpoint. */
static void
no_such_endpoint(Reply *out)
{
	STAT_ADD(not_found, 1);
	reply_error(out, 404, "NOT_FOUND", "no such endpoint");
}

/* Parse a request body that must be one JSON object; NULL with err if not. */
static json_t *
parse_object(const ApiRequest *q, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t	   *doc;

	if (q->body_len == 0)
	{
		snprintf(err, errlen, "the request body is empty; a JSON object is required");
		return NULL;
	}
	doc = json_loadb(q->body, q->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (doc == NULL)
	{
		snprintf(err, errlen, "the request body is not valid JSON (line %d, column %d): %s",
				 jerr.line, jerr.column, jerr.text);
		return NULL;
	}
	if (!json_is_object(doc))
	{
		json_decref(doc);
		snprintf(err, errlen, "the request body must be a JSON object");
		return NULL;
	}
	return doc;
}

/* A required string member; err says what is wrong with it. */
static const char *
string_member(json_t *doc, const char *name, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(doc, name);

	if (v == NULL || json_is_null(v))
	{
		snprintf(err, errlen, "%s is required", name);
		return NULL;
	}
	if (!json_is_string(v))
	{
		snprintf(err, errlen, "%s must be a string", name);
		return NULL;
	}
	if (strlen(json_string_value(v)) != json_string_length(v))
	{
		snprintf(err, errlen, "%s must not contain NUL characters", name);
		return NULL;
	}
	return json_string_value(v);
}

/*
 * An amount member: an integer in 1..10^15 (no floats, no strings).  When
 * optional and absent (or null), *present is false and true is returned.
 */
static bool
amount_member(json_t *doc, const char *name, bool required, bool *present,
			  int64_t *out, char *err, size_t errlen)
{
	json_t	   *v = json_object_get(doc, name);

	*present = false;
	if (v == NULL || json_is_null(v))
	{
		if (required)
			snprintf(err, errlen, "%s is required", name);
		return !required;
	}
	if (!json_is_integer(v))
	{
		snprintf(err, errlen, "%s must be an integer amount in minor units", name);
		return false;
	}
	if (json_integer_value(v) < 1 || json_integer_value(v) > MOCKPG_MAX_AMOUNT)
	{
		snprintf(err, errlen, "%s must be between 1 and %lld", name,
				 (long long) MOCKPG_MAX_AMOUNT);
		return false;
	}
	*present = true;
	*out = json_integer_value(v);
	return true;
}

/*
 * The optional taxFreeAmount of a confirm or cancel: an integer from 0 to
 * the amount it is part of (max); absent or null is 0, and *present false.
 */
static bool
tax_free_member(json_t *doc, int64_t max, bool *present, int64_t *out,
				char *err, size_t errlen)
{
	json_t	   *v = json_object_get(doc, "taxFreeAmount");

	*present = false;
	*out = 0;
	if (v == NULL || json_is_null(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max)
	{
		snprintf(err, errlen, "taxFreeAmount must be an integer from 0 to the amount (%lld)",
				 (long long) max);
		return false;
	}
	*present = true;
	*out = json_integer_value(v);
	return true;
}

/*
 * Answer from the idempotency record if this key was seen: the same method,
 * path and body replay the first answer byte for byte; anything else is a
 * 422.  Returns false when the key is new (or absent).
 */
static bool
idempotency_lookup(const ApiRequest *q, Reply *out)
{
	IdemRecord *r;

	if (q->idempotency_key == NULL)
		return false;
	r = store_idem_get(q->idempotency_key);
	if (r == NULL)
		return false;
	if (strcmp(r->method, q->method) == 0 && strcmp(r->path, q->path) == 0 &&
		r->request_len == q->body_len &&
		memcmp(r->request, q->body, q->body_len) == 0)
	{
		STAT_ADD(idempotent_replays, 1);
		reply_copy(out, r->status, r->response, r->response_len);
	}
	else
	{
		STAT_ADD(idempotency_mismatches, 1);
		reply_error(out, 422, "INVALID_REQUEST",
					"this Idempotency-Key was already used for a different request");
	}
	return true;
}

/*
 * Keep the answer under the request's Idempotency-Key.  Only answers decided
 * by the payment logic are kept; malformed requests, auth failures and 5xx
 * faults are not, so a corrected or retried request is processed afresh.
 */
static void
idempotency_remember(const ApiRequest *q, const Reply *out)
{
	if (q->idempotency_key != NULL)
		store_idem_put(q->idempotency_key, q->method, q->path, q->body,
					   q->body_len, out->status, out->body, out->len);
}

/*
 * POST /v1/payments/confirm {paymentKey, orderId, amount, currency?,
 * taxFreeAmount?}
 */
static void
api_confirm(const ApiRequest *q, Reply *out)
{
	char		err[512] = "";
	json_t	   *doc = parse_object(q, err, sizeof(err));
	const char *key = NULL;
	const char *order = NULL;
	const char *currency = "KRW";
	int64_t		amount = 0;
	int64_t		tax_free = 0;
	bool		present;
	bool		valid = false;
	FaultConfig fc = faults_get();
	MagicKey	magic;
	Payment    *p;

	STAT_ADD(confirms, 1);
	if (doc != NULL &&
		(key = string_member(doc, "paymentKey", err, sizeof(err))) != NULL &&
		(order = string_member(doc, "orderId", err, sizeof(err))) != NULL &&
		amount_member(doc, "amount", true, &present, &amount, err, sizeof(err)) &&
		tax_free_member(doc, amount, &present, &tax_free, err, sizeof(err)))
	{
		if (!valid_payment_key(key, strlen(key)))
			snprintf(err, sizeof(err), "paymentKey must be 1 to 200 visible ASCII characters without / ? # %% \\ or \"");
		else if (!valid_order_id(order, strlen(order)))
			snprintf(err, sizeof(err), "orderId must be 1 to 200 characters without control characters");
		else if (json_object_get(doc, "currency") != NULL &&
				 !valid_currency(json_string_value(json_object_get(doc, "currency"))))
			snprintf(err, sizeof(err), "currency must be an ISO 4217 code such as KRW or USD");
		else
			valid = true;
		if (valid && json_object_get(doc, "currency") != NULL)
			currency = json_string_value(json_object_get(doc, "currency"));
	}

	store_lock();
	if (idempotency_lookup(q, out))
		goto done;
	if (!valid)
	{
		bad_request(out, err);
		goto done;
	}
	magic = faults_magic(key);
	if (magic == MAGIC_ERROR || faults_roll(fc.error_rate))
	{
		STAT_ADD(errors, 1);
		reply_error(out, 500, "PROVIDER_ERROR",
					"the card company could not process the payment; nothing was charged, try again");
		goto done;
	}
	/* a failed attempt (ABORTED, EXPIRED) does not hold its order or key */
	p = store_payment_by_order(order);
	if (p != NULL && p->state == PAYMENT_APPROVED)
	{
		if (strcmp(p->payment_key, key) == 0 && p->total == amount &&
			p->tax_free == tax_free && strcmp(p->currency, currency) == 0)
		{
			/* confirming the same payment again just shows it */
			STAT_ADD(reconfirms, 1);
			reply_payment(out, p);
		}
		else
			reply_error(out, 400, "ALREADY_PROCESSED_PAYMENT",
						"this orderId was already confirmed with another paymentKey, amount or currency");
		idempotency_remember(q, out);
		goto done;
	}
	p = store_payment_by_key(key);
	if (p != NULL && p->state == PAYMENT_APPROVED)
	{
		reply_error(out, 400, "ALREADY_PROCESSED_PAYMENT",
					"this paymentKey was already confirmed for another orderId");
		idempotency_remember(q, out);
		goto done;
	}
	if (magic == MAGIC_EXPIRE)
	{
		STAT_ADD(expirations, 1);
		store_fail(key, order, amount, tax_free, currency, PAYMENT_EXPIRED);
		reply_error(out, 404, "NOT_FOUND_PAYMENT_SESSION",
					"the payment's session expired before it was confirmed (30 minutes); it is EXPIRED");
		idempotency_remember(q, out);
		goto done;
	}
	if (magic == MAGIC_DECLINE || faults_roll(fc.decline_rate))
	{
		STAT_ADD(declines, 1);
		store_fail(key, order, amount, tax_free, currency, PAYMENT_ABORTED);
		reply_error(out, 403, DECLINE_CODE, "%s", DECLINE_MESSAGE);
		idempotency_remember(q, out);
		goto done;
	}
	p = store_approve(key, order, amount, tax_free, currency);
	STAT_ADD(approvals, 1);
	STAT_ADD(total_approved_amount, amount);
	reply_payment(out, p);
	idempotency_remember(q, out);
	if (magic == MAGIC_TIMEOUT || faults_roll(fc.timeout_rate))
	{
		STAT_ADD(timeouts, 1);
		out->stall_ms = fc.stall_ms;
	}
done:
	out->seq = journal_last_seq();
	store_unlock();
	json_decref(doc);
}

/*
 * POST /v1/payments/{paymentKey}/cancel {cancelReason, cancelAmount?,
 * taxFreeAmount?}: taxFreeAmount is the part of the cancel taken from the
 * tax-free part of the balance; without it the taxable part goes first.
 */
static void
api_cancel(const ApiRequest *q, const char *key, Reply *out)
{
	char		err[512] = "";
	json_t	   *doc = parse_object(q, err, sizeof(err));
	const char *reason = NULL;
	int64_t		amount = 0;
	int64_t		tax_free = 0;
	bool		has_amount = false;
	bool		has_tax_free = false;
	bool		valid = false;
	bool		key_ok = valid_payment_key(key, strlen(key));
	FaultConfig fc = faults_get();
	Payment    *p;

	STAT_ADD(cancel_requests, 1);
	if (doc != NULL &&
		(reason = string_member(doc, "cancelReason", err, sizeof(err))) != NULL &&
		amount_member(doc, "cancelAmount", false, &has_amount, &amount, err, sizeof(err)) &&
		tax_free_member(doc, has_amount ? amount : MOCKPG_MAX_AMOUNT, &has_tax_free,
						&tax_free, err, sizeof(err)))
	{
		size_t		chars = utf8_chars(reason);

		if (chars < 1 || chars > REASON_MAX_CHARS)
			snprintf(err, sizeof(err), "cancelReason must be 1 to %d characters", REASON_MAX_CHARS);
		else
			valid = true;
	}

	store_lock();
	if (idempotency_lookup(q, out))
		goto done;
	if (!valid)
	{
		bad_request(out, err);
		goto done;
	}
	if (faults_roll(fc.error_rate))
	{
		STAT_ADD(errors, 1);
		reply_error(out, 500, "PROVIDER_ERROR",
					"the card company could not process the cancel; nothing was canceled, try again");
		goto done;
	}
	p = key_ok ? store_payment_by_key(key) : NULL;
	if (p == NULL)
	{
		STAT_ADD(not_found, 1);
		reply_error(out, 404, "NOT_FOUND_PAYMENT", "no payment has this paymentKey");
		if (key_ok)
			idempotency_remember(q, out);
		goto done;
	}
	if (p->state != PAYMENT_APPROVED)
	{
		reply_error(out, 400, "NOT_CANCELABLE_PAYMENT", "the payment is %s: it was never approved",
					payment_status(p));
		idempotency_remember(q, out);
		goto done;
	}
	if (p->balance == 0)
	{
		reply_error(out, 400, "ALREADY_CANCELED_PAYMENT", "the payment is already fully canceled");
		idempotency_remember(q, out);
		goto done;
	}
	if (!has_amount)
		amount = p->balance;
	if (amount > p->balance)
	{
		reply_error(out, 400, "NOT_CANCELABLE_AMOUNT",
					"cancelAmount %lld is more than the cancelable balance %lld",
					(long long) amount, (long long) p->balance);
		idempotency_remember(q, out);
		goto done;
	}
	if (!has_tax_free)
		tax_free = amount > p->balance - p->tax_free_left
			? amount - (p->balance - p->tax_free_left) : 0;
	if (tax_free > amount || tax_free > p->tax_free_left ||
		amount - tax_free > p->balance - p->tax_free_left)
	{
		reply_error(out, 400, "NOT_CANCELABLE_AMOUNT",
					"taxFreeAmount %lld does not fit: %lld of the balance %lld is tax-free",
					(long long) tax_free, (long long) p->tax_free_left, (long long) p->balance);
		idempotency_remember(q, out);
		goto done;
	}
	store_cancel(p, amount, tax_free, reason);
	STAT_ADD(cancels, 1);
	STAT_ADD(total_canceled_amount, amount);
	reply_payment(out, p);
	idempotency_remember(q, out);
	if (faults_roll(fc.timeout_rate))
	{
		STAT_ADD(timeouts, 1);
		out->stall_ms = fc.stall_ms;
	}
done:
	out->seq = journal_last_seq();
	store_unlock();
	json_decref(doc);
}

/* GET /v1/payments/{paymentKey} and GET /v1/payments/orders/{orderId} */
static void
api_lookup(const char *id, bool by_order, Reply *out)
{
	Payment    *p;

	STAT_ADD(lookups, 1);
	store_lock();
	p = by_order ? store_payment_by_order(id) : store_payment_by_key(id);
	if (p != NULL)
		reply_payment(out, p);
	else
	{
		STAT_ADD(not_found, 1);
		reply_error(out, 404, "NOT_FOUND_PAYMENT",
					by_order ? "no payment was confirmed for this orderId"
					: "no payment has this paymentKey");
	}
	out->seq = journal_last_seq();
	store_unlock();
}

/* the list_fault fault: a 200 answer that is not a readable transaction list */
static void
broken_list(int fault, Reply *out)
{
	static const char *const bodies[LIST_FAULT_COUNT] = {
		"[]",
		"<html>upstream list service unavailable</html>",
		"{\"transactions\":[]}",
		"[{\"orderId\":\"order-1\",\"type\":\"APPROVE\",\"amount\":1000}]",
		"[{\"transactionKey\":\"txn_000000000001\",\"orderId\":\"order-1\","
		"\"type\":\"APPROVE\",\"amount\":-1000}]"
	};

	reply_copy(out, 200, bodies[fault], strlen(bodies[fault]));
}

/*
 * GET /v1/transactions?startDate=&endDate=[&startingAfter=&limit=]: the
 * approvals and cancels whose time falls in [startDate, endDate], oldest
 * first, streamed as a JSON array so that a large store never needs one
 * large buffer.  A page holds at most `limit` (1..10000) of them, starting
 * after the transaction `startingAfter` names; without limit, all of them.
 */
static void
api_transactions(const ApiRequest *q, Reply *out)
{
	time_t		start,
				end;
	long		limit = -1;
	TxnStream  *s;

	if (q->start_date == NULL || q->end_date == NULL)
	{
		bad_request(out, "startDate and endDate are required (YYYY-MM-DD or ISO 8601)");
		return;
	}
	if (!parse_iso_time(q->start_date, false, &start))
	{
		bad_request(out, "startDate must be YYYY-MM-DD or an ISO 8601 timestamp");
		return;
	}
	if (!parse_iso_time(q->end_date, true, &end))
	{
		bad_request(out, "endDate must be YYYY-MM-DD or an ISO 8601 timestamp");
		return;
	}
	if (start > end)
	{
		bad_request(out, "startDate must not be after endDate");
		return;
	}
	if (q->limit != NULL)
	{
		char	   *endp;

		limit = strtol(q->limit, &endp, 10);
		if (q->limit[0] == '\0' || *endp != '\0' || limit < 1 || limit > 10000)
		{
			bad_request(out, "limit must be a whole number from 1 to 10000");
			return;
		}
	}
	if (q->starting_after != NULL && !valid_payment_key(q->starting_after, strlen(q->starting_after)))
	{
		bad_request(out, "startingAfter must be a transactionKey");
		return;
	}
	if (faults_get().list_fault != LIST_OK)
	{
		broken_list(faults_get().list_fault, out);
		return;
	}
	s = xcalloc(1, sizeof(TxnStream));
	sb_init(&s->pending, STREAM_CHUNK * 2);
	s->start = start;
	s->end = end;
	s->first = true;
	s->left = limit < 0 ? SIZE_MAX : (size_t) limit;
	store_lock();
	s->limit = store_txn_count();
	if (q->starting_after != NULL)
		s->next = store_txn_after(q->starting_after);
	out->seq = journal_last_seq();
	store_unlock();
	out->status = 200;
	out->stream = s;
}

/* Format the next few matching transactions, taking the store lock briefly. */
static void
stream_refill(TxnStream *s)
{
	size_t		scanned = 0;

	store_lock();
	while (s->next < s->limit && s->left > 0 && s->pending.len < STREAM_CHUNK && scanned < 65536)
	{
		size_t		i = s->next++;
		time_t		t = store_txn_time(i);

		scanned++;
		if (t < s->start || t > s->end)
			continue;
		s->left--;
		if (!s->first)
			sb_add(&s->pending, ",", 1);
		s->first = false;
		store_txn_write(&s->pending, i);
	}
	store_unlock();
}

/*
 * Fill buf with the next bytes of the array; returns the count, or -1 at the
 * end (never 0, which would make the server poll).
 */
ssize_t
txn_stream_read(TxnStream *s, char *buf, size_t max)
{
	size_t		n = 0;

	while (n < max && s->stage < 4)
	{
		if (s->poff < s->pending.len)
		{
			size_t		k = s->pending.len - s->poff;

			if (k > max - n)
				k = max - n;
			memcpy(buf + n, s->pending.data + s->poff, k);
			s->poff += k;
			n += k;
			continue;
		}
		s->pending.len = s->poff = 0;
		switch (s->stage)
		{
			case 0:
				sb_add(&s->pending, "[", 1);
				s->stage = 1;
				break;
			case 1:
				if (s->next >= s->limit || s->left == 0)
					s->stage = 2;
				else
					stream_refill(s);
				break;
			case 2:
				sb_add(&s->pending, "]", 1);
				s->stage = 3;
				break;
			default:
				s->stage = 4;
				break;
		}
	}
	return n > 0 ? (ssize_t) n : -1;
}

/* Free a stream when the answer is done (or the client went away). */
void
txn_stream_free(TxnStream *s)
{
	free(s->pending.data);
	free(s);
}

/* The current fault settings as JSON. */
static json_t *
faults_json(void)
{
	FaultConfig c = faults_get();

	return json_pack("{s:f, s:f, s:f, s:i, s:i, s:s}",
					 "decline_rate", c.decline_rate,
					 "error_rate", c.error_rate,
					 "timeout_rate", c.timeout_rate,
					 "latency_ms", c.latency_ms,
					 "stall_ms", c.stall_ms,
					 "list_fault", list_fault_names[c.list_fault]);
}

/* set c->list_fault from its name; false when v names no ListFault */
static bool
set_list_fault(FaultConfig *c, json_t *v)
{
	for (int i = 0; i < LIST_FAULT_COUNT; i++)
		if (json_is_string(v) && strcmp(json_string_value(v), list_fault_names[i]) == 0)
		{
			c->list_fault = i;
			return true;
		}
	return false;
}

/*
 * POST /__mock/faults: change any of decline_rate, error_rate, timeout_rate
 * (0..1), latency_ms, stall_ms (0..3600000), list_fault (a name).  All or nothing: one bad member
 * and nothing changes.  Unknown members are refused, to catch typos.
 */
static void
api_set_faults(const ApiRequest *q, Reply *out)
{
	char		err[512] = "";
	json_t	   *doc = parse_object(q, err, sizeof(err));
	FaultConfig c = faults_get();
	const char *name;
	json_t	   *v;

	if (doc == NULL)
	{
		bad_request(out, err);
		return;
	}
	json_object_foreach(doc, name, v)
	{
		double	   *rate = NULL;
		int		   *ms = NULL;

		if (strcmp(name, "decline_rate") == 0)
			rate = &c.decline_rate;
		else if (strcmp(name, "error_rate") == 0)
			rate = &c.error_rate;
		else if (strcmp(name, "timeout_rate") == 0)
			rate = &c.timeout_rate;
		else if (strcmp(name, "latency_ms") == 0)
			ms = &c.latency_ms;
		else if (strcmp(name, "stall_ms") == 0)
			ms = &c.stall_ms;
		else if (strcmp(name, "list_fault") == 0)
		{
			if (!set_list_fault(&c, v))
			{
				snprintf(err, sizeof(err), "list_fault must be none, not_json, not_array, no_key or bad_amount");
				break;
			}
			continue;
		}
		else
		{
			snprintf(err, sizeof(err), "unknown fault setting; use decline_rate, error_rate, timeout_rate, latency_ms, stall_ms or list_fault");
			break;
		}
		if (rate != NULL)
		{
			if (!json_is_number(v) || json_number_value(v) < 0.0 ||
				json_number_value(v) > 1.0)
			{
				snprintf(err, sizeof(err), "%s must be a number from 0 to 1", name);
				break;
			}
			*rate = json_number_value(v);
		}
		else
		{
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
				json_integer_value(v) > FAULT_MAX_MS)
			{
				snprintf(err, sizeof(err), "%s must be an integer from 0 to %d", name, FAULT_MAX_MS);
				break;
			}
			*ms = (int) json_integer_value(v);
		}
	}
	json_decref(doc);
	if (err[0] != '\0')
	{
		bad_request(out, err);
		return;
	}
	faults_set(&c);
	reply_json(out, 200, faults_json());
}

/* GET /__mock/stats */
static void
api_stats(Reply *out)
{
	StoreSizes sz;
	JournalCounts jc = journal_counts();
	json_t	   *o = json_object();
	json_t	   *j = json_object();

	store_lock();
	sz = store_sizes();
	store_unlock();

#define PUT(name, value) json_object_set_new(o, name, json_integer((json_int_t) (value)))
	PUT("requests", STAT_GET(requests));
	PUT("confirms", STAT_GET(confirms));
	PUT("approvals", STAT_GET(approvals));
	PUT("reconfirms", STAT_GET(reconfirms));
	PUT("declines", STAT_GET(declines));
	PUT("expirations", STAT_GET(expirations));
	PUT("errors", STAT_GET(errors));
	PUT("timeouts", STAT_GET(timeouts));
	PUT("cancel_requests", STAT_GET(cancel_requests));
	PUT("cancels", STAT_GET(cancels));
	PUT("lookups", STAT_GET(lookups));
	PUT("idempotent_replays", STAT_GET(idempotent_replays));
	PUT("idempotency_mismatches", STAT_GET(idempotency_mismatches));
	PUT("unauthorized", STAT_GET(unauthorized));
	PUT("bad_requests", STAT_GET(bad_requests));
	PUT("not_found", STAT_GET(not_found));
	PUT("total_approved_amount", STAT_GET(total_approved_amount));
	PUT("total_canceled_amount", STAT_GET(total_canceled_amount));
	PUT("payments", sz.payments);
	PUT("transactions", sz.transactions);
	PUT("idempotency_keys", sz.idempotency_keys);
#undef PUT
	json_object_set_new(j, "enabled", json_boolean(jc.enabled));
	json_object_set_new(j, "replayed_records", json_integer((json_int_t) jc.replayed));
	json_object_set_new(j, "records", json_integer((json_int_t) jc.records));
	json_object_set_new(j, "fsyncs", json_integer((json_int_t) jc.batches));
	json_object_set_new(o, "journal", j);
	reply_json(out, 200, o);
}

/* Route /__mock/...: the test control plane (no auth; loopback only). */
static void
api_mock(const ApiRequest *q, Reply *out)
{
	const char *rest = q->path + 8;
	bool		get = strcmp(q->method, "GET") == 0;
	bool		post = strcmp(q->method, "POST") == 0;

	if (strcmp(rest, "health") == 0)
	{
		if (!get)
			method_not_allowed(out, q, "GET");
		else
			reply_json(out, 200, json_pack("{s:s}", "status", "UP"));
	}
	else if (strcmp(rest, "stats") == 0)
	{
		if (!get)
			method_not_allowed(out, q, "GET");
		else
			api_stats(out);
	}
	else if (strcmp(rest, "faults") == 0)
	{
		if (get)
			reply_json(out, 200, faults_json());
		else if (post)
			api_set_faults(q, out);
		else
			method_not_allowed(out, q, "GET, POST");
	}
	else if (strncmp(rest, "traces/", 7) == 0 && rest[7] != '\0')
	{
		if (!get)
			method_not_allowed(out, q, "GET");
		else
			reply_json(out, 200, json_pack("{s:s, s:I}", "traceId", rest + 7,
										   "requests", (json_int_t) trace_count(rest + 7)));
	}
	else
		no_such_endpoint(out);
}

/* Route one request to its endpoint; the answer is left in out. */
void
api_handle(const ApiRequest *q, Reply *out)
{
	const char *rest;
	bool		get = strcmp(q->method, "GET") == 0;
	bool		post = strcmp(q->method, "POST") == 0;
	ApiRequest	req = *q;

	if (strncmp(q->path, "/__mock/", 8) == 0)
	{
		api_mock(q, out);
		return;
	}
	if (strncmp(q->path, "/v1/", 4) != 0)
	{
		no_such_endpoint(out);
		return;
	}
	STAT_ADD(requests, 1);
	note_trace(q->trace_id);
	if (!authorized(q->authorization))
	{
		STAT_ADD(unauthorized, 1);
		out->auth_challenge = true;
		reply_error(out, 401, "UNAUTHORIZED_KEY",
					"the secret key is missing or wrong (Authorization: Basic base64(secretKey + \":\"))");
		return;
	}
	if (!post)
		req.idempotency_key = NULL;		/* GETs are idempotent by nature */
	else if (q->idempotency_key != NULL && !valid_idempotency_key(q->idempotency_key))
	{
		bad_request(out, "Idempotency-Key must be 1 to 300 printable ASCII characters");
		return;
	}

	rest = q->path + 4;
	if (strcmp(rest, "payments/confirm") == 0)
	{
		if (!post)
			method_not_allowed(out, q, "POST");
		else
			api_confirm(&req, out);
	}
	else if (strcmp(rest, "transactions") == 0)
	{
		if (!get)
			method_not_allowed(out, q, "GET");
		else
			api_transactions(&req, out);
	}
	else if (strncmp(rest, "payments/orders/", 16) == 0 && rest[16] != '\0')
	{
		if (!get)
			method_not_allowed(out, q, "GET");
		else
			api_lookup(rest + 16, true, out);
	}
	else if (strncmp(rest, "payments/", 9) == 0 && rest[9] != '\0' && rest[9] != '/')
	{
		const char *key = rest + 9;
		const char *slash = strchr(key, '/');

		if (slash == NULL)
		{
			if (!get)
				method_not_allowed(out, q, "GET");
			else
				api_lookup(key, false, out);
		}
		else if (strcmp(slash, "/cancel") == 0)
		{
			if (!post)
				method_not_allowed(out, q, "POST");
			else
			{
				char	   *k = xmemdup(key, (size_t) (slash - key));

				api_cancel(&req, k, out);
				free(k);
			}
		}
		else
			no_such_endpoint(out);
	}
	else
		no_such_endpoint(out);
}
