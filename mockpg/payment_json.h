/*-------------------------------------------------------------------------
 *
 * payment_json.h
 *	  The store's payments written as Toss Payments v1 writes them: the
 *	  Payment object (every field of API version 2022-11-16, with null where
 *	  a method does not apply) and the Transaction record of the list.
 *	  docs/mockpg.md lists, field by field, where the mock still differs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_PAYMENT_JSON_H
#define MOCKPG_PAYMENT_JSON_H

#include <stdint.h>

#include "store.h"
#include "strbuf.h"

/* Toss's method label of a card payment (its answers name methods in Korean) */
#define PAYMENT_METHOD_CARD "카드"

/* why an attempt failed: the error its confirm got, and its Payment's failure */
#define DECLINE_CODE		"REJECT_CARD_PAYMENT"
#define DECLINE_MESSAGE		"the card was declined (limit exceeded or insufficient balance)"
#define EXPIRED_CODE		"EXPIRED_PAYMENT"
#define EXPIRED_MESSAGE		"the payment was not approved within 30 minutes and expired"

extern const char *payment_status(const Payment *p);
extern int64_t payment_vat(int64_t amount, int64_t tax_free);
extern void payment_write(StrBuf *sb, const Payment *p);
extern void transaction_write(StrBuf *sb, const Payment *p, int cancel);

#endif							/* MOCKPG_PAYMENT_JSON_H */
