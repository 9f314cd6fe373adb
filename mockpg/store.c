/*-------------------------------------------------------------------------
 *
 * store.c
 *	  Payments, cancels, transactions and idempotency records, in memory,
 *	  journaled as they change and rebuilt from the journal at start.
 *
 *	  Nothing is ever deleted while the server runs, so pointers into the
 *	  store stay valid; the memory is freed at shutdown (valgrind checks it).
 *	  A failed attempt (ABORTED, EXPIRED) stays too when a new confirm of
 *	  its order or paymentKey takes its place in the indexes.
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "htab.h"
#include "journal.h"
#include "payment_json.h"
#include "store.h"
#include "util.h"

/* One entry of the transaction list: an approval (cancel < 0) or a cancel. */
typedef struct TxnRef
{
	Payment    *payment;
	int			cancel;
} TxnRef;

static pthread_mutex_t store_mutex = PTHREAD_MUTEX_INITIALIZER;
static HTab by_key;
static HTab by_order;
static HTab idem;
static Payment **all;			/* every Payment made, for store_destroy */
static size_t nall;
static size_t capall;
static TxnRef *txns;
static size_t ntxns;
static size_t captxns;
static uint64_t next_txn = 1;

/* Set up the empty indexes. */
void
store_init(void)
{
	htab_init(&by_key);
	htab_init(&by_order);
	htab_init(&idem);
}

/* Free one payment with its cancels. */
static void
free_payment(void *v)
{
	Payment    *p = v;

	for (int i = 0; i < p->ncancels; i++)
		free(p->cancels[i].reason);
	free(p->cancels);
	free(p->payment_key);
	free(p->order_id);
	free(p);
}

/* Free one idempotency record. */
static void
free_idem(void *v)
{
	IdemRecord *r = v;

	free(r->key);
	free(r->method);
	free(r->path);
	free(r->request);
	free(r->response);
	free(r);
}

/* Release everything at shutdown, after the last request is gone. */
void
store_destroy(void)
{
	htab_destroy(&by_order, NULL);
	htab_destroy(&by_key, NULL);
	for (size_t i = 0; i < nall; i++)
		free_payment(all[i]);
	free(all);
	all = NULL;
	nall = capall = 0;
	htab_destroy(&idem, free_idem);
	free(txns);
	txns = NULL;
	ntxns = captxns = 0;
}

/* Enter the store's critical section. */
void
store_lock(void)
{
	pthread_mutex_lock(&store_mutex);
}

/* Leave the store's critical section. */
void
store_unlock(void)
{
	pthread_mutex_unlock(&store_mutex);
}

/* The payment confirmed with this paymentKey, or NULL. */
Payment *
store_payment_by_key(const char *payment_key)
{
	return htab_get(&by_key, payment_key);
}

/* The payment confirmed for this orderId, or NULL. */
Payment *
store_payment_by_order(const char *order_id)
{
	return htab_get(&by_order, order_id);
}

/* Journal one record (a JSON object the caller has written) and free it. */
static void
journal_record(StrBuf *rec)
{
	journal_append(rec->data, rec->len);
	free(rec->data);
}

/* Transaction keys are a counter, so they are unique across restarts too. */
static void
new_txkey(char *out)
{
	snprintf(out, TXKEY_LEN, "txn_%012" PRIu64, next_txn++);
}

/* After replaying a key, make sure new keys are numbered past it. */
static void
note_txkey(const char *txkey)
{
	unsigned long long n;
	char		tail;

	if (sscanf(txkey, "txn_%llu%c", &n, &tail) == 1 && n >= next_txn)
		next_txn = n + 1;
}

/* Add an entry to the transaction list. */
static void
add_txn(Payment *p, int cancel)
{
	if (ntxns == captxns)
	{
		captxns = captxns ? captxns * 2 : 4096;
		txns = xrealloc(txns, captxns * sizeof(TxnRef));
	}
	txns[ntxns].payment = p;
	txns[ntxns].cancel = cancel;
	ntxns++;
}

/*
 * A new Payment under its paymentKey and orderId, taking the place of a
 * failed attempt that held either; shared by approvals, failures and replay.
 */
static Payment *
new_payment(const char *payment_key, const char *order_id, PaymentState state,
			int64_t amount, int64_t tax_free, const char *currency, time_t at)
{
	Payment    *p = xcalloc(1, sizeof(Payment));

	p->payment_key = xstrdup(payment_key);
	p->order_id = xstrdup(order_id);
	p->state = state;
	p->total = amount;
	p->balance = amount;
	p->tax_free = tax_free;
	p->tax_free_left = tax_free;
	snprintf(p->currency, sizeof(p->currency), "%s", currency);
	p->approved_at = at;
	if (nall == capall)
	{
		capall = capall ? capall * 2 : 4096;
		all = xrealloc(all, capall * sizeof(Payment *));
	}
	all[nall++] = p;
	htab_set(&by_key, p->payment_key, p);
	htab_set(&by_order, p->order_id, p);
	return p;
}

/* Create a payment in DONE state; shared by live approvals and replay. */
static Payment *
apply_approve(const char *payment_key, const char *order_id, int64_t amount,
			  int64_t tax_free, const char *currency, time_t at, const char *txkey)
{
	Payment    *p = new_payment(payment_key, order_id, PAYMENT_APPROVED, amount,
								tax_free, currency, at);

	snprintf(p->txkey, TXKEY_LEN, "%s", txkey);
	add_txn(p, -1);
	return p;
}

/*
 * Approve a new payment (the caller has checked that neither its key nor
 * its order belongs to an approved one) and journal it.
 */
Payment *
store_approve(const char *payment_key, const char *order_id, int64_t amount,
			  int64_t tax_free, const char *currency)
{
	char		txkey[TXKEY_LEN];
	time_t		now = time(NULL);
	Payment    *p;

	new_txkey(txkey);
	p = apply_approve(payment_key, order_id, amount, tax_free, currency, now, txkey);
	if (journal_enabled())
	{
		StrBuf		rec;

		sb_init(&rec, 256);
		sb_adds(&rec, "{");
		sb_member_string(&rec, "op", "approve");
		sb_member_string(&rec, "paymentKey", payment_key);
		sb_member_string(&rec, "orderId", order_id);
		sb_member_int(&rec, "amount", amount);
		sb_member_int(&rec, "taxFreeAmount", tax_free);
		sb_member_string(&rec, "currency", currency);
		sb_member_int(&rec, "at", (int64_t) now);
		sb_member_string(&rec, "transactionKey", txkey);
		sb_adds(&rec, "}");
		journal_record(&rec);
	}
	return p;
}

/*
 * Keep a failed attempt (ABORTED or EXPIRED) so that lookups show it, and
 * journal it; it is no transaction, and a later confirm may take its place.
 */
Payment *
store_fail(const char *payment_key, const char *order_id, int64_t amount,
		   int64_t tax_free, const char *currency, PaymentState state)
{
	time_t		now = time(NULL);
	Payment    *p;

	p = new_payment(payment_key, order_id, state, amount, tax_free, currency, now);
	if (journal_enabled())
	{
		StrBuf		rec;

		sb_init(&rec, 256);
		sb_adds(&rec, "{");
		sb_member_string(&rec, "op", "fail");
		sb_member_string(&rec, "paymentKey", payment_key);
		sb_member_string(&rec, "orderId", order_id);
		sb_member_int(&rec, "amount", amount);
		sb_member_int(&rec, "taxFreeAmount", tax_free);
		sb_member_string(&rec, "currency", currency);
		sb_member_string(&rec, "status", payment_status(p));
		sb_member_int(&rec, "at", (int64_t) now);
		sb_adds(&rec, "}");
		journal_record(&rec);
	}
	return p;
}

/* Record a cancel on a payment; shared by live cancels and replay. */
static const Cancel *
apply_cancel(Payment *p, int64_t amount, int64_t tax_free, const char *reason,
			 time_t at, const char *txkey)
{
	Cancel	   *c;

	if (p->ncancels == p->capcancels)
	{
		p->capcancels = p->capcancels ? p->capcancels * 2 : 2;
		p->cancels = xrealloc(p->cancels, p->capcancels * sizeof(Cancel));
	}
	p->balance -= amount;
	p->tax_free_left -= tax_free;
	c = &p->cancels[p->ncancels];
	c->amount = amount;
	c->tax_free = tax_free;
	c->balance_after = p->balance;
	c->reason = xstrdup(reason);
	c->at = at;
	snprintf(c->txkey, TXKEY_LEN, "%s", txkey);
	add_txn(p, p->ncancels);
	p->ncancels++;
	return c;
}

/*
 * Cancel part or all of a payment, tax_free of it from the tax-free part
 * (the caller checked both amounts), and journal it.
 */
const Cancel *
store_cancel(Payment *p, int64_t amount, int64_t tax_free, const char *reason)
{
	char		txkey[TXKEY_LEN];
	time_t		now = time(NULL);
	const Cancel *c;

	new_txkey(txkey);
	c = apply_cancel(p, amount, tax_free, reason, now, txkey);
	if (journal_enabled())
	{
		StrBuf		rec;

		sb_init(&rec, 256);
		sb_adds(&rec, "{");
		sb_member_string(&rec, "op", "cancel");
		sb_member_string(&rec, "paymentKey", p->payment_key);
		sb_member_int(&rec, "amount", amount);
		sb_member_int(&rec, "taxFreeAmount", tax_free);
		sb_member_string(&rec, "reason", reason);
		sb_member_int(&rec, "at", (int64_t) now);
		sb_member_string(&rec, "transactionKey", txkey);
		sb_adds(&rec, "}");
		journal_record(&rec);
	}
	return c;
}

/* The idempotency record for a key, or NULL. */
IdemRecord *
store_idem_get(const char *key)
{
	return htab_get(&idem, key);
}

/* Keep an idempotency record; shared by live requests and replay. */
static IdemRecord *
apply_idem(const char *key, const char *method, const char *path,
		   const char *request, size_t request_len, int status,
		   const char *response, size_t response_len)
{
	IdemRecord *r = xcalloc(1, sizeof(IdemRecord));

	r->key = xstrdup(key);
	r->method = xstrdup(method);
	r->path = xstrdup(path);
	r->request = xmemdup(request, request_len);
	r->request_len = request_len;
	r->status = status;
	r->response = xmemdup(response, response_len);
	r->response_len = response_len;
	htab_put(&idem, r->key, r);
	return r;
}

/*
 * Remember the answer given to a request with an Idempotency-Key and journal
 * it, so the same request replays it byte for byte, even after a restart.
 */
IdemRecord *
store_idem_put(const char *key, const char *method, const char *path,
			   const char *request, size_t request_len, int status,
			   const char *response, size_t response_len)
{
	IdemRecord *r = apply_idem(key, method, path, request, request_len,
							   status, response, response_len);

	if (journal_enabled())
	{
		StrBuf		rec;

		sb_init(&rec, 256 + request_len + response_len * 5 / 4);
		sb_adds(&rec, "{");
		sb_member_string(&rec, "op", "idem");
		sb_member_string(&rec, "key", key);
		sb_member_string(&rec, "method", method);
		sb_member_string(&rec, "path", path);
		sb_member(&rec, "request");
		sb_json_string(&rec, request, request_len);
		sb_member_int(&rec, "status", status);
		sb_member(&rec, "response");
		sb_json_string(&rec, response, response_len);
		sb_adds(&rec, "}");
		journal_record(&rec);
	}
	r->seq = journal_last_seq();
	return r;
}

/* Length of the transaction list. */
size_t
store_txn_count(void)
{
	return ntxns;
}

/* When transaction i happened (for the date filter). */
time_t
store_txn_time(size_t i)
{
	const TxnRef *t = &txns[i];

	return t->cancel < 0 ? t->payment->approved_at : t->payment->cancels[t->cancel].at;
}

/* the number of transaction i's key (keys are numbered in list order) */
static uint64_t
txn_number(size_t i)
{
	const TxnRef *t = &txns[i];
	const char *key = t->cancel < 0 ? t->payment->txkey : t->payment->cancels[t->cancel].txkey;

	return strtoull(key + 4, NULL, 10);
}

/*
 * The index of the first transaction after the one keyed txkey (a page's
 * startingAfter): the list is in key order, so a binary search finds it;
 * an unknown key starts after where it would be.  The store lock is held.
 */
size_t
store_txn_after(const char *txkey)
{
	unsigned long long n;
	char		tail;
	size_t		lo = 0,
				hi = ntxns;

	if (sscanf(txkey, "txn_%llu%c", &n, &tail) != 1)
		return ntxns;
	while (lo < hi)
	{
		size_t		mid = lo + (hi - lo) / 2;

		if (txn_number(mid) <= n)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * Write transaction record i of GET /v1/transactions: one per approval and
 * one per cancel; status is the payment's status right after it.
 */
void
store_txn_write(StrBuf *sb, size_t i)
{
	transaction_write(sb, txns[i].payment, txns[i].cancel);
}

/* Sizes for GET /__mock/stats. */
StoreSizes
store_sizes(void)
{
	StoreSizes s;

	s.payments = nall;
	s.transactions = ntxns;
	s.idempotency_keys = idem.count;
	return s;
}

/* A required string member of a journal record. */
static const char *
rec_string(json_t *rec, const char *name, size_t *len)
{
	json_t	   *v = json_object_get(rec, name);

	if (!json_is_string(v))
		return NULL;
	if (len)
		*len = json_string_length(v);
	return json_string_value(v);
}

/* A required integer member of a journal record. */
static bool
rec_int(json_t *rec, const char *name, int64_t *out)
{
	json_t	   *v = json_object_get(rec, name);

	if (!json_is_integer(v))
		return false;
	*out = json_integer_value(v);
	return true;
}

/*
 * The taxFreeAmount of a journal record: 0 when absent (journals written
 * before it was kept), else an integer from 0 to amount.
 */
static bool
rec_tax_free(json_t *rec, int64_t amount, int64_t *out)
{
	*out = 0;
	if (json_object_get(rec, "taxFreeAmount") == NULL)
		return true;
	return rec_int(rec, "taxFreeAmount", out) && *out >= 0 && *out <= amount;
}

/* p is an approved payment (not NULL, not a failed attempt) */
static bool
approved(const Payment *p)
{
	return p != NULL && p->state == PAYMENT_APPROVED;
}

/*
 * Apply one journal record during replay, checking it against the state so
 * far: a journal that contradicts itself is refused rather than guessed at.
 */
bool
store_apply_record(json_t *rec, char *err, size_t errlen)
{
	const char *op = rec_string(rec, "op", NULL);

	if (op == NULL)
	{
		snprintf(err, errlen, "record has no \"op\"");
		return false;
	}
	if (strcmp(op, "approve") == 0)
	{
		const char *key = rec_string(rec, "paymentKey", NULL);
		const char *order = rec_string(rec, "orderId", NULL);
		const char *txkey = rec_string(rec, "transactionKey", NULL);
		const char *currency = rec_string(rec, "currency", NULL);
		int64_t		amount,
					tax_free,
					at;

		/* journals written before currencies were kept are all KRW */
		if (currency == NULL)
			currency = "KRW";
		if (!key || !order || !txkey || !rec_int(rec, "amount", &amount) ||
			!rec_int(rec, "at", &at) || amount < 1 || amount > MOCKPG_MAX_AMOUNT ||
			!valid_currency(currency) || !rec_tax_free(rec, amount, &tax_free))
		{
			snprintf(err, errlen, "malformed approve record");
			return false;
		}
		if (approved(htab_get(&by_key, key)) || approved(htab_get(&by_order, order)))
		{
			snprintf(err, errlen, "payment approved twice");
			return false;
		}
		apply_approve(key, order, amount, tax_free, currency, (time_t) at, txkey);
		note_txkey(txkey);
		return true;
	}
	if (strcmp(op, "fail") == 0)
	{
		const char *key = rec_string(rec, "paymentKey", NULL);
		const char *order = rec_string(rec, "orderId", NULL);
		const char *currency = rec_string(rec, "currency", NULL);
		const char *status = rec_string(rec, "status", NULL);
		int64_t		amount,
					tax_free,
					at;

		if (!key || !order || !currency || !status || !rec_int(rec, "amount", &amount) ||
			!rec_int(rec, "at", &at) || amount < 1 || amount > MOCKPG_MAX_AMOUNT ||
			!valid_currency(currency) || !rec_tax_free(rec, amount, &tax_free) ||
			(strcmp(status, "ABORTED") != 0 && strcmp(status, "EXPIRED") != 0))
		{
			snprintf(err, errlen, "malformed fail record");
			return false;
		}
		if (approved(htab_get(&by_key, key)) || approved(htab_get(&by_order, order)))
		{
			snprintf(err, errlen, "failed attempt of an approved payment");
			return false;
		}
		new_payment(key, order, strcmp(status, "ABORTED") == 0 ? PAYMENT_ABORTED : PAYMENT_EXPIRED,
					amount, tax_free, currency, (time_t) at);
		return true;
	}
	if (strcmp(op, "cancel") == 0)
	{
		const char *key = rec_string(rec, "paymentKey", NULL);
		const char *reason = rec_string(rec, "reason", NULL);
		const char *txkey = rec_string(rec, "transactionKey", NULL);
		int64_t		amount,
					tax_free,
					at;
		Payment    *p;

		if (!key || !reason || !txkey || !rec_int(rec, "amount", &amount) ||
			!rec_int(rec, "at", &at) || !rec_tax_free(rec, amount, &tax_free))
		{
			snprintf(err, errlen, "malformed cancel record");
			return false;
		}
		p = htab_get(&by_key, key);
		if (!approved(p) || amount < 1 || amount > p->balance ||
			tax_free > p->tax_free_left ||
			amount - tax_free > p->balance - p->tax_free_left)
		{
			snprintf(err, errlen, "cancel does not match its payment");
			return false;
		}
		apply_cancel(p, amount, tax_free, reason, (time_t) at, txkey);
		note_txkey(txkey);
		return true;
	}
	if (strcmp(op, "idem") == 0)
	{
		size_t		reqlen = 0,
					resplen = 0;
		const char *key = rec_string(rec, "key", NULL);
		const char *method = rec_string(rec, "method", NULL);
		const char *path = rec_string(rec, "path", NULL);
		const char *request = rec_string(rec, "request", &reqlen);
		const char *response = rec_string(rec, "response", &resplen);
		int64_t		status;

		if (!key || !method || !path || !request || !response ||
			!rec_int(rec, "status", &status) || status < 100 || status > 599)
		{
			snprintf(err, errlen, "malformed idem record");
			return false;
		}
		if (htab_get(&idem, key))
		{
			snprintf(err, errlen, "idempotency key recorded twice");
			return false;
		}
		apply_idem(key, method, path, request, reqlen, (int) status,
				   response, resplen);
		return true;
	}
	snprintf(err, errlen, "unknown record op \"%s\"", op);
	return false;
}
