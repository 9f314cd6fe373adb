/*-------------------------------------------------------------------------
 *
 * payment_json.c
 *	  The Payment object and the Transaction record, in the shape of Toss
 *	  Payments v1 (API version 2022-11-16): the same members in the same
 *	  order, Korean method labels, times in Korea's +09:00, the supplied
 *	  amount and VAT worked out as Toss documents them.  Every payment of
 *	  the mock is a card payment, so card is an object and the members of
 *	  the other methods are null.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "faults.h"
#include "payment_json.h"

/* the merchant id every answer carries */
#define MOCK_MID "mockpg"

/* receipts and checkout pages have no server here: a reserved, unresolvable host */
#define MOCK_PAGES "https://mockpg.invalid"

/*
 * Toss's status names: DONE, then PARTIAL_CANCELED or CANCELED; a failed
 * attempt is ABORTED (declined) or EXPIRED (never approved in time).
 */
const char *
payment_status(const Payment *p)
{
	if (p->state == PAYMENT_ABORTED)
		return "ABORTED";
	if (p->state == PAYMENT_EXPIRED)
		return "EXPIRED";
	if (p->ncancels == 0)
		return "DONE";
	return p->balance == 0 ? "CANCELED" : "PARTIAL_CANCELED";
}

/*
 * VAT as Toss documents it: a tenth of the supplied amount, i.e. the
 * taxable part (amount less its tax-free part) divided by 11, rounded half
 * up to a whole unit; the supplied amount is the taxable part less the VAT.
 */
int64_t
payment_vat(int64_t amount, int64_t tax_free)
{
	int64_t		taxable = amount - tax_free;

	if (taxable <= 0)
		return 0;
	return (taxable * 2 + 11) / 22;
}

/* Append "name":null. */
static void
member_null(StrBuf *sb, const char *name)
{
	sb_member(sb, name);
	sb_adds(sb, "null");
}

/* Append "name":true or false. */
static void
member_bool(StrBuf *sb, const char *name, bool value)
{
	sb_member(sb, name);
	sb_adds(sb, value ? "true" : "false");
}

/* Append "name":"<ISO 8601 time, +09:00>". */
static void
member_time(StrBuf *sb, const char *name, time_t t)
{
	sb_member(sb, name);
	sb_json_time(sb, t);
}

/* Append "name":{"url":"<MOCK_PAGES>/<what>/<paymentKey>[/<tail>]"}, or the bare URL string. */
static void
member_url(StrBuf *sb, const char *name, const char *what, const char *key,
		   const char *tail, bool object)
{
	char		url[512];

	snprintf(url, sizeof(url), "%s/%s/%s%s", MOCK_PAGES, what, key, tail);
	if (object)
	{
		sb_member(sb, name);
		sb_adds(sb, "{");
		sb_member_string(sb, "url", url);
		sb_adds(sb, "}");
	}
	else
		sb_member_string(sb, name, url);
}

/*
 * The card object of an approved payment: a fixed card (Hyundai-issued,
 * acquired by BC, as in Toss's own examples), paid in full and at once;
 * approveNo is the approval's transaction number.
 */
static void
write_card(StrBuf *sb, const Payment *p)
{
	size_t		len = strlen(p->txkey);
	const char *digits = len > 8 ? p->txkey + len - 8 : p->txkey;	/* of txn_NNNNNNNNNNNN */

	sb_member(sb, "card");
	sb_adds(sb, "{");
	sb_member_int(sb, "amount", p->total);
	sb_member_string(sb, "issuerCode", "61");
	sb_member_string(sb, "acquirerCode", "31");
	sb_member_string(sb, "number", "43301234****123*");
	sb_member_int(sb, "installmentPlanMonths", 0);
	sb_member_string(sb, "approveNo", digits);
	member_bool(sb, "useCardPoint", false);
	sb_member_string(sb, "cardType", "신용");
	sb_member_string(sb, "ownerType", "개인");
	sb_member_string(sb, "acquireStatus", "READY");
	member_bool(sb, "isInterestFree", false);
	member_null(sb, "interestPayer");
	sb_adds(sb, "}");
}

/* The cancels array: one object per cancel, oldest first; null before any. */
static void
write_cancels(StrBuf *sb, const Payment *p)
{
	sb_member(sb, "cancels");
	if (p->ncancels == 0)
	{
		sb_adds(sb, "null");
		return;
	}
	sb_adds(sb, "[");
	for (int i = 0; i < p->ncancels; i++)
	{
		const Cancel *c = &p->cancels[i];

		sb_adds(sb, i > 0 ? ",{" : "{");
		sb_member_string(sb, "transactionKey", c->txkey);
		sb_member_string(sb, "cancelReason", c->reason);
		sb_member_int(sb, "taxExemptionAmount", 0);
		member_time(sb, "canceledAt", c->at);
		sb_member_int(sb, "easyPayDiscountAmount", 0);
		member_null(sb, "receiptKey");
		sb_member_string(sb, "cancelStatus", "DONE");
		member_null(sb, "cancelRequestId");
		sb_member_int(sb, "cancelAmount", c->amount);
		sb_member_int(sb, "taxFreeAmount", c->tax_free);
		sb_member_int(sb, "refundableAmount", c->balance_after);
		sb_adds(sb, "}");
	}
	sb_adds(sb, "]");
}

/* The failure object of a failed attempt: the error its confirm got. */
static void
write_failure(StrBuf *sb, const Payment *p)
{
	sb_member(sb, "failure");
	if (p->state == PAYMENT_APPROVED)
	{
		sb_adds(sb, "null");
		return;
	}
	sb_adds(sb, "{");
	if (p->state == PAYMENT_ABORTED)
	{
		sb_member_string(sb, "code", DECLINE_CODE);
		sb_member_string(sb, "message", DECLINE_MESSAGE);
	}
	else
	{
		sb_member_string(sb, "code", EXPIRED_CODE);
		sb_member_string(sb, "message", EXPIRED_MESSAGE);
	}
	sb_adds(sb, "}");
}

/*
 * Write the Payment object, member by member in the order of Toss's
 * reference.  The magic keys badcurrency_* and badtotal_* make a hostile
 * gateway's answer (another currency; a negative totalAmount).
 */
void
payment_write(StrBuf *sb, const Payment *p)
{
	bool		done = (p->state == PAYMENT_APPROVED);
	bool		expired = (p->state == PAYMENT_EXPIRED);
	int64_t		vat = done ? payment_vat(p->balance, p->tax_free_left) : payment_vat(p->total, p->tax_free);
	int64_t		taxable = done ? p->balance - p->tax_free_left : p->total - p->tax_free;
	MagicKey	magic = faults_magic(p->payment_key);

	sb_adds(sb, "{");
	sb_member_string(sb, "version", "2022-11-16");
	sb_member_string(sb, "paymentKey", p->payment_key);
	sb_member_string(sb, "type", "NORMAL");
	sb_member_string(sb, "orderId", p->order_id);
	/* the mock has no payment window to name the order: its id stands in */
	sb_member_string(sb, "orderName", p->order_id);
	sb_member_string(sb, "mId", MOCK_MID);
	if (magic == MAGIC_BAD_CURRENCY)
		sb_member_string(sb, "currency", strcmp(p->currency, "KRW") == 0 ? "USD" : "KRW");
	else
		sb_member_string(sb, "currency", p->currency);
	/* an attempt that expired never got as far as a method */
	if (expired)
		member_null(sb, "method");
	else
		sb_member_string(sb, "method", PAYMENT_METHOD_CARD);
	sb_member_int(sb, "totalAmount", magic == MAGIC_BAD_TOTAL ? -p->total : p->total);
	sb_member_int(sb, "balanceAmount", p->balance);
	sb_member_string(sb, "status", payment_status(p));
	member_time(sb, "requestedAt",
				expired ? p->approved_at - PAYMENT_VALIDITY_SECONDS : p->approved_at);
	if (done)
		member_time(sb, "approvedAt", p->approved_at);
	else
		member_null(sb, "approvedAt");
	if (expired)
		member_null(sb, "useEscrow");
	else
		member_bool(sb, "useEscrow", false);
	if (done)
		sb_member_string(sb, "lastTransactionKey",
						 p->ncancels ? p->cancels[p->ncancels - 1].txkey : p->txkey);
	else
		member_null(sb, "lastTransactionKey");
	sb_member_int(sb, "suppliedAmount", taxable - vat);
	sb_member_int(sb, "vat", vat);
	member_bool(sb, "cultureExpense", false);
	sb_member_int(sb, "taxFreeAmount", done ? p->tax_free_left : p->tax_free);
	sb_member_int(sb, "taxExemptionAmount", 0);
	write_cancels(sb, p);
	member_bool(sb, "isPartialCancelable", true);
	if (done)
		write_card(sb, p);
	else
		member_null(sb, "card");
	member_null(sb, "virtualAccount");
	member_null(sb, "secret");
	member_null(sb, "mobilePhone");
	member_null(sb, "giftCertificate");
	member_null(sb, "transfer");
	member_null(sb, "metadata");
	if (done)
		member_url(sb, "receipt", "receipt", p->payment_key, "", true);
	else
		member_null(sb, "receipt");
	member_url(sb, "checkout", "v1/payments", p->payment_key, "/checkout", true);
	member_null(sb, "easyPay");
	sb_member_string(sb, "country", "KR");
	write_failure(sb, p);
	member_null(sb, "cashReceipt");
	member_null(sb, "cashReceipts");
	member_null(sb, "discount");
	sb_adds(sb, "}");
}

/*
 * Write one record of GET /v1/transactions: the approval (cancel < 0) or
 * cancel number `cancel` of p.  Toss's members, then `type` (APPROVE or
 * CANCEL), which Toss's records lack and the extension's reconciliation
 * reads; status is the payment's status right after this transaction.
 */
void
transaction_write(StrBuf *sb, const Payment *p, int cancel)
{
	const char *txkey,
			   *status;
	int64_t		amount;
	time_t		at;

	if (cancel < 0)
	{
		txkey = p->txkey;
		amount = p->total;
		at = p->approved_at;
		status = "DONE";
	}
	else
	{
		const Cancel *c = &p->cancels[cancel];

		txkey = c->txkey;
		amount = c->amount;
		at = c->at;
		status = c->balance_after == 0 ? "CANCELED" : "PARTIAL_CANCELED";
	}
	sb_adds(sb, "{");
	sb_member_string(sb, "mId", MOCK_MID);
	sb_member_string(sb, "transactionKey", txkey);
	sb_member_string(sb, "paymentKey", p->payment_key);
	sb_member_string(sb, "orderId", p->order_id);
	sb_member_string(sb, "currency", p->currency);
	sb_member_string(sb, "method", PAYMENT_METHOD_CARD);
	member_null(sb, "customerKey");
	member_bool(sb, "useEscrow", false);
	member_url(sb, "receiptUrl", "receipt", p->payment_key, "", false);
	sb_member_string(sb, "status", status);
	member_time(sb, "transactionAt", at);
	sb_member_int(sb, "amount", amount);
	sb_member_string(sb, "type", cancel < 0 ? "APPROVE" : "CANCEL");
	sb_adds(sb, "}");
}
