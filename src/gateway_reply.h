/*
 * gateway_reply.h
 *		What the payment gateway answered (gateway_reply.c): the members of
 *		a JSON answer the saga reads, and any text of it made safe to store
 *		or show.  Never errors on what the gateway sent.
 */
#ifndef COUPON_GATEWAY_REPLY_H
#define COUPON_GATEWAY_REPLY_H

/*
 * The fields of a gateway answer the saga reads (absent: NULL / -1).  The
 * strings are palloc'd in the caller's memory context; the amounts are -1
 * also when the member is not a non-negative JSON integer that fits int64.
 */
typedef struct GatewayReply
{
	char	   *status;			/* Payment.status: DONE, CANCELED, ... */
	char	   *code;			/* error code: REJECT_CARD_PAYMENT, ... */
	char	   *message;		/* error message */
	char	   *currency;		/* Payment.currency */
	int64		total_amount;	/* Payment.totalAmount */
	int64		balance_amount; /* Payment.balanceAmount */
} GatewayReply;

/*
 * Parse the top-level members of a gateway JSON answer into *reply (strings
 * palloc'd in the current memory context); false, with *reply all absent,
 * if body is NULL or not a JSON object.  Never errors on bad input.
 */
extern bool gateway_parse_reply(const char *body, GatewayReply *reply);

/* what a gateway said, bounded and without secrets, as it may be stored or shown */
extern char *gateway_text(const char *text);

#endif							/* COUPON_GATEWAY_REPLY_H */
