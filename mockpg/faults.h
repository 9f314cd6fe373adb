/*-------------------------------------------------------------------------
 *
 * faults.h
 *	  Fault injection: decline, 5xx and timeout rates, latency and stall
 *	  length (set by flags and at run time through POST /__mock/faults), a
 *	  seeded random source, and the magic paymentKey prefixes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_FAULTS_H
#define MOCKPG_FAULTS_H

#include <stdbool.h>
#include <stdint.h>

/* Upper bounds for the millisecond settings (one hour). */
#define FAULT_MAX_MS	3600000

typedef struct FaultConfig
{
	double		decline_rate;	/* confirm answers 403 REJECT_CARD_PAYMENT */
	double		error_rate;		/* confirm/cancel answer 500 PROVIDER_ERROR */
	double		timeout_rate;	/* confirm/cancel commit, then stall */
	int			latency_ms;		/* delay before every /v1 request is handled */
	int			stall_ms;		/* how long a timeout answer is held back */
	int			list_fault;		/* a ListFault: the transaction list broken */
} FaultConfig;

/*
 * What GET /v1/transactions answers instead of the list (with 200), to test
 * clients against a gateway whose list cannot be read.
 */
typedef enum ListFault
{
	LIST_OK,					/* "none": the real list */
	LIST_NOT_JSON,				/* "not_json": a body that is not JSON */
	LIST_NOT_ARRAY,				/* "not_array": a JSON object */
	LIST_NO_KEY,				/* "no_key": a transaction without its key */
	LIST_BAD_AMOUNT,			/* "bad_amount": a negative amount */
	LIST_FAULT_COUNT
} ListFault;

extern const char *const list_fault_names[LIST_FAULT_COUNT];

typedef enum MagicKey
{
	MAGIC_NONE,
	MAGIC_DECLINE,				/* decline_* */
	MAGIC_ERROR,				/* error_* */
	MAGIC_TIMEOUT,				/* timeout_* */
	MAGIC_BAD_TOTAL,			/* badtotal_*: a hostile gateway's totalAmount */
	MAGIC_BAD_CURRENCY,			/* badcurrency_*: it answers in another currency */
	MAGIC_EXPIRE				/* expire_*: the payment's time ran out (EXPIRED) */
} MagicKey;

extern void faults_init(const FaultConfig *initial, uint64_t seed);
extern void faults_destroy(void);
extern FaultConfig faults_get(void);
extern void faults_set(const FaultConfig *config);
extern bool faults_roll(double rate);
extern MagicKey faults_magic(const char *payment_key);

#endif							/* MOCKPG_FAULTS_H */
