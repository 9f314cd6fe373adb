/*
 * reason.c
 *		The table behind the error contract: name, HTTP status and hint of
 *		every reason code.
 *
 * Pure C (no PostgreSQL headers) so the unit tests link it directly.
 */
#include <stddef.h>
#include <string.h>

#include "reason.h"

typedef struct ReasonInfo
{
	const char *name;
	int			http;
	const char *hint;
} ReasonInfo;

static const ReasonInfo reason_table[REASON_COUNT] = {
	[REASON_NONE] = {"ok", 200, NULL},
	[REASON_MISSING_ARGUMENT] = {"missing_argument", 400, "Pass a value for every required argument."},
	[REASON_INVALID_AMOUNT] = {"invalid_amount", 400, "Amounts are whole minor units between 0 and 10^15."},
	[REASON_INVALID_DISCOUNT] = {"invalid_discount", 400, "Use fixed or balance with an amount up to 10^15, or percent with 1 to 10000 basis points."},
	[REASON_INVALID_CURRENCY] = {"invalid_currency", 400, "Use an ISO 4217 code such as KRW or USD."},
	[REASON_INVALID_WINDOW] = {"invalid_window", 400, "A window must end after it starts, and issuance must not outlast validity."},
	[REASON_INVALID_NAME] = {"invalid_name", 400, "Names are 1 to 200 characters."},
	[REASON_INVALID_USER_ID] = {"invalid_user_id", 400, "User ids are 1 to 200 characters."},
	[REASON_INVALID_ORDER_ID] = {"invalid_order_id", 400, "Order ids are 1 to 200 characters."},
	[REASON_INVALID_QUANTITY] = {"invalid_quantity", 400, "total_quantity is between 1 and 10^9; fcfs policies need one."},
	[REASON_INVALID_LIMIT] = {"invalid_limit", 400, "per_user_limit is between 1 and 10^6, or NULL for no limit."},
	[REASON_INVALID_PERCENT] = {"invalid_percent", 400, "Rates are basis points between 0 and 10000."},
	[REASON_INVALID_SHARE] = {"invalid_share", 400, "merchant_share_bp is between 0 and 10000."},
	[REASON_INVALID_DELAY] = {"invalid_delay", 400, "settlement_delay_days is between 0 and 365."},
	[REASON_INVALID_ISSUE_METHOD] = {"invalid_issue_method", 400, "Use direct, code or fcfs."},
	[REASON_INVALID_STATUS] = {"invalid_status", 400, "Use one of the documented status names."},
	[REASON_INVALID_MERCHANTS] = {"invalid_merchants", 400, "List existing merchant ids once each, at most 1000 of them."},
	[REASON_INVALID_TTL] = {"invalid_ttl", 400, "A hold lasts between 1 second and 7 days; purge() keeps what is younger than 24 hours."},
	[REASON_INVALID_COUNT] = {"invalid_count", 400, "Generate between 1 and 100000 codes per call."},
	[REASON_INVALID_MAX_ROWS] = {"invalid_max_rows", 400, "max_rows is a positive number of rows to handle in one call."},
	[REASON_INVALID_CODE] = {"invalid_code", 400, "Check the code for typing mistakes."},
	[REASON_INVALID_KEY] = {"invalid_key", 400, "Idempotency keys are 1 to 300 characters."},
	[REASON_KEY_TOO_LONG] = {"key_too_long", 400, "Idempotency keys are 1 to 300 characters."},
	[REASON_INVALID_COUPONS] = {"invalid_coupons", 400, "List each coupon id once, without NULLs."},
	[REASON_TOO_MANY_COUPONS] = {"too_many_coupons", 400, "A payment carries at most 10 coupons."},
	[REASON_INVALID_PAYMENT_KEY] = {"invalid_payment_key", 400, "Payment keys are 1 to 200 visible ASCII characters without / ? # % \\ or \", not starting with pk-."},
	[REASON_INVALID_REASON] = {"invalid_reason", 400, "A cancel reason is 1 to 200 characters."},
	[REASON_INVALID_SCHEDULE] = {"invalid_schedule", 400, "A cron schedule has five fields, for example '10 0 * * *' (every day at 00:10)."},
	[REASON_INVALID_CUTOFF] = {"invalid_cutoff", 400, "Settle up to now at the latest; each merchant's batch ends settlement_delay_days before it."},
	[REASON_INVALID_GRACE] = {"invalid_grace", 400, "A grace period is between 0 and 7 days."},
	[REASON_INVALID_CREDENTIALS] = {"invalid_credentials", 401, "Send the client id and the current secret of merchant_credentials(), or a valid JWT."},
	[REASON_NOT_OWNER] = {"not_owner", 403, "Use a coupon that belongs to this user."},
	[REASON_MERCHANT_NOT_ALLOWED] = {"merchant_not_allowed", 403, "Only the platform (a trusted role without a merchant_id claim) may name other merchants in allowed_merchants."},
	[REASON_WRONG_TENANT] = {"wrong_tenant", 403, "Act only on your own merchant's data."},
	[REASON_MERCHANT_NOT_FOUND] = {"merchant_not_found", 404, "Check the merchant id."},
	[REASON_POLICY_NOT_FOUND] = {"policy_not_found", 404, "Check the policy id."},
	[REASON_COUPON_NOT_FOUND] = {"coupon_not_found", 404, "Check the coupon id."},
	[REASON_RESERVATION_NOT_FOUND] = {"reservation_not_found", 404, "Check the reservation id."},
	[REASON_CODE_NOT_FOUND] = {"code_not_found", 404, "Check the code for typing mistakes."},
	[REASON_PAYMENT_NOT_FOUND] = {"payment_not_found", 404, "Check the payment id."},
	[REASON_COUPON_USED] = {"coupon_used", 409, "Use another coupon."},
	[REASON_COUPON_RESERVED] = {"coupon_reserved", 409, "The coupon is held for another order; release that hold first."},
	[REASON_COUPON_CANCELLED] = {"coupon_cancelled", 409, "Use another coupon."},
	[REASON_SOLD_OUT] = {"sold_out", 409, "No coupons of this policy are left."},
	[REASON_PER_USER_LIMIT] = {"per_user_limit", 409, "This user already holds as many coupons of this policy as allowed."},
	[REASON_IDEMPOTENCY_IN_PROGRESS] = {"idempotency_in_progress", 409, "A request with this key is still running; retry shortly."},
	[REASON_CODE_REDEEMED] = {"code_redeemed", 409, "Each code can be redeemed once."},
	[REASON_RESERVATION_CONFIRMED] = {"reservation_confirmed", 409, "A confirmed reservation is undone by refunding the payment."},
	[REASON_RESERVATION_RELEASED] = {"reservation_released", 409, "Reserve the coupon again."},
	[REASON_RESERVATION_EXPIRED] = {"reservation_expired", 409, "Reserve the coupon again."},
	[REASON_HOLD_OWNED_BY_PAYMENT] = {"hold_owned_by_payment", 409, "The payment settles this hold itself; cancel the payment with cancel_payment() instead."},
	[REASON_INVALID_STATUS_TRANSITION] = {"invalid_status_transition", 409, "Policies go from draft to active, between active and paused, and to retired, which is final."},
	[REASON_DUPLICATE_ORDER] = {"duplicate_order", 409, "Each order is paid once; look the payment up with payment_status(), or use a new order id."},
	[REASON_DUPLICATE_PAYMENT_KEY] = {"duplicate_payment_key", 409, "Each payment needs a paymentKey of its own; pass none to have pay() make one."},
	[REASON_ORDER_AMOUNT_MISMATCH] = {"order_amount_mismatch", 409, "Reserve every coupon of an order for the same order amount, or release the others first."},
	[REASON_PAYMENT_NOT_CANCELABLE] = {"payment_not_cancelable", 409, "A payment can be cancelled unless it failed, is refunded in full, is being voided or released, needs attention, or already has a refund or cancel in progress."},
	[REASON_PAYMENT_NOT_RETRYABLE] = {"payment_not_retryable", 409, "Only a payment in needs_attention can be retried."},
	[REASON_EXPIRED] = {"expired", 422, "The coupon is past its validity."},
	[REASON_NOT_YET_VALID] = {"not_yet_valid", 422, "The coupon becomes usable at its policy's valid_from."},
	[REASON_MIN_ORDER_AMOUNT] = {"min_order_amount", 422, "The order amount is below the policy's minimum."},
	[REASON_BUDGET_EXHAUSTED] = {"budget_exhausted", 422, "The policy's discount budget is used up."},
	[REASON_POLICY_INACTIVE] = {"policy_inactive", 422, "Activate the policy first."},
	[REASON_MERCHANT_INACTIVE] = {"merchant_inactive", 422, "The merchant is suspended."},
	[REASON_IDEMPOTENCY_MISMATCH] = {"idempotency_mismatch", 422, "Use a new idempotency key for a different request."},
	[REASON_NOT_STACKABLE] = {"not_stackable", 422, "At most one non-stackable coupon may be used per order."},
	[REASON_WRONG_ISSUE_METHOD] = {"wrong_issue_method", 422, "Use issue() for direct and fcfs policies, generate_codes() and redeem_code() for code policies."},
	[REASON_ISSUE_NOT_STARTED] = {"issue_not_started", 422, "Issuance opens at the policy's issue_starts_at."},
	[REASON_ISSUE_ENDED] = {"issue_ended", 422, "Issuance closed at the policy's issue_ends_at."},
	[REASON_QUANTITY_EXCEEDED] = {"quantity_exceeded", 422, "The policy's total_quantity caps how many codes exist."},
	[REASON_TOO_MANY_CODE_ATTEMPTS] = {"too_many_code_attempts", 429, "Wait a few minutes before trying another code."},
	[REASON_TOO_MANY_CREDENTIAL_ATTEMPTS] = {"too_many_credential_attempts", 429, "Wait a few minutes before trying this client id again."},
	[REASON_RATE_LIMITED] = {"rate_limited", 429, "Send fewer requests: wait the seconds Retry-After says."},
};

/* the snake_case name callers switch on */
const char *
reason_name(CouponReason reason)
{
	if (reason < 0 || reason >= REASON_COUNT || reason_table[reason].name == NULL)
		return "internal";
	return reason_table[reason].name;
}

/* the HTTP status carried in the PTnnn SQLSTATE */
int
reason_http_status(CouponReason reason)
{
	if (reason < 0 || reason >= REASON_COUNT || reason_table[reason].name == NULL)
		return 500;
	return reason_table[reason].http;
}

/* the reason named `name`, or REASON_COUNT if there is none */
CouponReason
reason_from_name(const char *name)
{
	for (int i = 0; i < REASON_COUNT; i++)
		if (reason_table[i].name != NULL && strcmp(reason_table[i].name, name) == 0)
			return (CouponReason) i;
	return REASON_COUNT;
}

/* what the caller can do about it, as one sentence */
const char *
reason_hint(CouponReason reason)
{
	if (reason < 0 || reason >= REASON_COUNT)
		return NULL;
	return reason_table[reason].hint;
}
