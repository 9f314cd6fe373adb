/*-------------------------------------------------------------------------
 *
 * store.h
 *	  The gateway's state: payments (by paymentKey and by orderId), their
 *	  cancels, the transaction list used for reconciliation, and the
 *	  idempotency records.  Every change is journaled when --journal is on.
 *
 *	  One mutex guards all of it: a request decides and writes under the
 *	  lock in one step (FACTS: "decide and write under one lock"), which is
 *	  short since no I/O happens under it.  All functions below except
 *	  store_init/store_destroy/store_lock/store_unlock expect the caller to
 *	  hold the lock.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_STORE_H
#define MOCKPG_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "strbuf.h"

#define TXKEY_LEN 32

typedef struct Cancel
{
	int64_t		amount;
	int64_t		tax_free;		/* the tax-free part of amount */
	int64_t		balance_after;	/* what was left to cancel afterwards */
	char	   *reason;
	time_t		at;
	char		txkey[TXKEY_LEN];
} Cancel;

/*
 * What became of a confirm: approved (DONE, then PARTIAL_CANCELED or
 * CANCELED as cancels come), or an attempt that failed and is kept so that
 * lookups show it, as Toss's are: ABORTED (the card was declined) or
 * EXPIRED (the payment was not approved within its validity).
 */
typedef enum PaymentState
{
	PAYMENT_APPROVED,
	PAYMENT_ABORTED,
	PAYMENT_EXPIRED
} PaymentState;

/* Toss's payment window is valid this long; an EXPIRED one was requested so long before */
#define PAYMENT_VALIDITY_SECONDS (30 * 60)

typedef struct Payment
{
	char	   *payment_key;
	char	   *order_id;
	PaymentState state;
	int64_t		total;
	int64_t		balance;
	int64_t		tax_free;		/* taxFreeAmount the confirm gave (0 by default) */
	int64_t		tax_free_left;	/* the part of balance that is tax-free */
	char		currency[4];	/* ISO 4217, as the confirm asked (KRW by default) */
	time_t		approved_at;	/* or, for a failed attempt, when it failed */
	char		txkey[TXKEY_LEN];	/* the approval's transaction ("" if none) */
	Cancel	   *cancels;
	int			ncancels;
	int			capcancels;
} Payment;

typedef struct IdemRecord
{
	char	   *key;
	char	   *method;
	char	   *path;
	char	   *request;
	size_t		request_len;
	int			status;
	char	   *response;
	size_t		response_len;
	uint64_t	seq;			/* journal record holding it (0: on disk) */
} IdemRecord;

typedef struct StoreSizes
{
	uint64_t	payments;
	uint64_t	transactions;
	uint64_t	idempotency_keys;
} StoreSizes;

extern void store_init(void);
extern void store_destroy(void);
extern void store_lock(void);
extern void store_unlock(void);

extern Payment *store_payment_by_key(const char *payment_key);
extern Payment *store_payment_by_order(const char *order_id);
extern Payment *store_approve(const char *payment_key, const char *order_id,
							  int64_t amount, int64_t tax_free, const char *currency);
extern Payment *store_fail(const char *payment_key, const char *order_id,
						   int64_t amount, int64_t tax_free, const char *currency,
						   PaymentState state);
extern const Cancel *store_cancel(Payment *p, int64_t amount, int64_t tax_free,
								  const char *reason);

extern IdemRecord *store_idem_get(const char *key);
extern IdemRecord *store_idem_put(const char *key, const char *method,
								  const char *path, const char *request,
								  size_t request_len, int status,
								  const char *response, size_t response_len);

extern size_t store_txn_count(void);
extern time_t store_txn_time(size_t i);
extern size_t store_txn_after(const char *txkey);
extern void store_txn_write(StrBuf *sb, size_t i);

extern StoreSizes store_sizes(void);
extern bool store_apply_record(json_t *rec, char *err, size_t errlen);

#endif							/* MOCKPG_STORE_H */
