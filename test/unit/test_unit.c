/*
 * test_unit.c
 *		Unit tests of the pure C parts (discount engine, stacking, code text,
 *		currencies, reason table, the payment saga's state machine, backoff
 *		and circuit breaker), built and run without a server.
 *		Prints TAP.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codefmt.h"
#include "currency.h"
#include "discount.h"
#include "excerpt.h"
#include "payment.h"
#include "reason.h"

static int	tests = 0;
static int	failures = 0;

/* one TAP line per check */
static void
check(int ok, const char *what)
{
	tests++;
	if (!ok)
		failures++;
	printf("%s %d - %s\n", ok ? "ok" : "not ok", tests, what);
}

/* an issued fixed coupon of merchant 1 with no limits */
static CouponFacts
base_facts(void)
{
	CouponFacts f;

	memset(&f, 0, sizeof(f));
	f.issuer_id = 1;
	f.issuer_active = true;
	f.merchant_exists = true;
	f.merchant_active = true;
	f.policy_status = POLICY_ACTIVE;
	f.type = DISCOUNT_FIXED;
	f.value = 2000;
	f.status = COUPON_ISSUED;
	return f;
}

/* evaluate with merchant 1 at t=1000 */
static CouponReason
eval(const CouponFacts *f, int64_t amount, int64_t *d)
{
	return discount_evaluate(f, 1, amount, 1000, d);
}

static void
test_amounts(void)
{
	check(discount_percent_of(10000, 1250) == 1250, "12.5% of 10000 is 1250");
	check(discount_percent_of(999, 1000) == 99, "percent floors (10% of 999 is 99)");
	check(discount_percent_of(INT64_C(1000000000000000), 10000) == INT64_C(1000000000000000),
		  "100% of 10^15 does not overflow");
	check(discount_percent_of(INT64_C(999999999999999), 9999) == INT64_C(999899999999999),
		  "99.99% of 10^15-1 is exact");
	check(discount_amount(DISCOUNT_FIXED, 5000, false, 0, 0, 3000) == 3000,
		  "fixed discount is capped by the order amount");
	check(discount_amount(DISCOUNT_PERCENT, 5000, true, 1500, 0, 10000) == 1500,
		  "percent discount is capped by max_discount");
	check(discount_amount(DISCOUNT_BALANCE, 0, false, 0, 700, 10000) == 700,
		  "balance discount is what is left");
	check(discount_amount(DISCOUNT_BALANCE, 0, false, 0, 70000, 10000) == 10000,
		  "balance discount is capped by the order amount");
}

static void
test_evaluate(void)
{
	CouponFacts f = base_facts();
	int64_t		d;
	int64_t		allowed[] = {7, 9};

	check(eval(&f, 10000, &d) == REASON_NONE && d == 2000, "a plain fixed coupon applies");
	f.policy_status = POLICY_PAUSED;
	check(eval(&f, 10000, &d) == REASON_POLICY_INACTIVE && d == 0, "paused policy is inactive");
	f.policy_status = POLICY_DRAFT;
	check(eval(&f, 10000, &d) == REASON_POLICY_INACTIVE, "draft policy is inactive");
	f.policy_status = POLICY_RETIRED;
	check(eval(&f, 10000, &d) == REASON_NONE, "retired policy honours issued coupons");

	f = base_facts();
	f.status = COUPON_USED;
	check(eval(&f, 10000, &d) == REASON_COUPON_USED, "used coupon");
	f.status = COUPON_RESERVED;
	check(eval(&f, 10000, &d) == REASON_COUPON_RESERVED, "reserved coupon");
	f.status = COUPON_EXPIRED;
	check(eval(&f, 10000, &d) == REASON_EXPIRED, "expired coupon");
	f.status = COUPON_CANCELLED;
	check(eval(&f, 10000, &d) == REASON_COUPON_CANCELLED, "cancelled coupon");

	f = base_facts();
	f.issuer_active = false;
	check(eval(&f, 10000, &d) == REASON_MERCHANT_INACTIVE, "a suspended issuer's coupons cannot be used");
	f = base_facts();
	f.merchant_active = false;
	check(eval(&f, 10000, &d) == REASON_MERCHANT_INACTIVE, "a suspended merchant cannot take coupons");
	f = base_facts();
	f.merchant_exists = false;
	check(discount_evaluate(&f, 99, 10000, 1000, &d) == REASON_COUPON_NOT_FOUND,
		  "at an unknown merchant the coupon is not found");
	f = base_facts();
	check(discount_evaluate(&f, 2, 10000, 1000, &d) == REASON_COUPON_NOT_FOUND,
		  "only the issuer when allowed_merchants is NULL; elsewhere the coupon is not found");
	f.status = COUPON_USED;
	check(discount_evaluate(&f, 2, 10000, 1000, &d) == REASON_COUPON_NOT_FOUND,
		  "where it cannot be spent, a coupon's state does not show");
	f.status = COUPON_ISSUED;
	f.allowed = allowed;
	f.n_allowed = 2;
	check(discount_evaluate(&f, 9, 10000, 1000, &d) == REASON_NONE, "a listed merchant");
	check(discount_evaluate(&f, 1, 10000, 1000, &d) == REASON_COUPON_NOT_FOUND,
		  "the issuer is not implied by a list");

	f = base_facts();
	f.has_expires_at = true;
	f.expires_at = 1000;
	check(eval(&f, 10000, &d) == REASON_EXPIRED, "expires_at is exclusive");
	f.expires_at = 1001;
	check(eval(&f, 10000, &d) == REASON_NONE, "valid one microsecond before expiry");
	f = base_facts();
	f.has_valid_from = true;
	f.valid_from = 1001;
	check(eval(&f, 10000, &d) == REASON_NOT_YET_VALID, "not yet valid");
	f.valid_from = 1000;
	check(eval(&f, 10000, &d) == REASON_NONE, "valid_from is inclusive");

	f = base_facts();
	f.min_order_amount = 10000;
	check(eval(&f, 9999, &d) == REASON_MIN_ORDER_AMOUNT, "below the minimum order");
	check(eval(&f, 10000, &d) == REASON_NONE, "at the minimum order");

	f = base_facts();
	f.has_budget = true;
	f.budget = 5000;
	f.budget_used = 3000;
	check(eval(&f, 10000, &d) == REASON_NONE && d == 2000, "budget exactly enough");
	f.budget_used = 3001;
	check(eval(&f, 10000, &d) == REASON_BUDGET_EXHAUSTED, "budget one short");

	f = base_facts();
	f.type = DISCOUNT_BALANCE;
	f.balance = 0;
	check(eval(&f, 10000, &d) == REASON_COUPON_USED, "an empty balance coupon is used up");
	f.balance = 2500;
	check(eval(&f, 10000, &d) == REASON_NONE && d == 2500, "a balance coupon spends its balance");
	check(eval(&f, 0, &d) == REASON_NONE && d == 0, "a zero order takes nothing off");
}

static void
test_stack(void)
{
	StackItem	items[3];
	int64_t		total;

	memset(items, 0, sizeof(items));
	items[0] = (StackItem) {DISCOUNT_PERCENT, 1000, false, 0, 0, true, 0};
	items[1] = (StackItem) {DISCOUNT_FIXED, 2000, false, 0, 0, true, 0};
	check(discount_stack(items, 2, 10000, &total) == REASON_NONE &&
		  items[1].discount == 2000 && items[0].discount == 800 && total == 2800,
		  "fixed applies before percent (10% of 8000)");

	items[0] = (StackItem) {DISCOUNT_FIXED, 6000, false, 0, 0, true, 0};
	items[1] = (StackItem) {DISCOUNT_FIXED, 6000, false, 0, 0, true, 0};
	items[2] = (StackItem) {DISCOUNT_BALANCE, 0, false, 0, 5000, true, 0};
	check(discount_stack(items, 3, 10000, &total) == REASON_NONE && total == 10000 &&
		  items[1].discount == 4000 && items[2].discount == 0,
		  "the total never exceeds the order amount");

	items[0].stackable = false;
	check(discount_stack(items, 3, 10000, &total) == REASON_NONE,
		  "one non-stackable coupon may join stackable ones");
	items[1].stackable = false;
	check(discount_stack(items, 3, 10000, &total) == REASON_NOT_STACKABLE && total == 0,
		  "two non-stackable coupons are refused");
	check(discount_stack(items, 1, 10000, &total) == REASON_NONE && total == 6000,
		  "a single non-stackable coupon is fine");
}

static void
test_status_transitions(void)
{
	check(policy_status_transition_ok(POLICY_DRAFT, POLICY_ACTIVE), "draft -> active");
	check(policy_status_transition_ok(POLICY_ACTIVE, POLICY_PAUSED), "active -> paused");
	check(policy_status_transition_ok(POLICY_PAUSED, POLICY_ACTIVE), "paused -> active");
	check(policy_status_transition_ok(POLICY_PAUSED, POLICY_RETIRED), "paused -> retired");
	check(!policy_status_transition_ok(POLICY_RETIRED, POLICY_ACTIVE), "retired is final");
	check(!policy_status_transition_ok(POLICY_ACTIVE, POLICY_DRAFT), "nothing returns to draft");
	check(policy_status_transition_ok(POLICY_RETIRED, POLICY_RETIRED), "same status is a no-op");
}

static void
test_codes(void)
{
	uint8_t		random[CODE_BODY_LEN];
	char		code[CODE_LEN + 1];
	char		shown[CODE_DISPLAY_LEN + 1];
	char		back[CODE_LEN + 1];
	int			all_single_errors_caught = 1;
	int			alphabet_ok = 1;

	for (int i = 0; i < CODE_BODY_LEN; i++)
		random[i] = (uint8_t) (i * 37 + 11);
	code_from_random(random, code);
	code_display(code, shown);
	check(strlen(code) == CODE_LEN, "a code has 16 characters");
	check(strlen(shown) == CODE_DISPLAY_LEN && shown[4] == '-' && shown[9] == '-' &&
		  shown[14] == '-', "shown as XXXX-XXXX-XXXX-XXXX");
	check(code_normalize(shown, strlen(shown), back) && strcmp(back, code) == 0,
		  "the display form normalizes back");
	{
		char		typed[64];

		for (size_t i = 0; i <= strlen(shown); i++)
			typed[i] = (char) ((shown[i] >= 'A' && shown[i] <= 'Z') ? shown[i] + 32 : shown[i]);
		check(code_normalize(typed, strlen(typed), back) && strcmp(back, code) == 0,
			  "lower case is accepted");
	}
	check(!code_normalize("ABC", 3, back), "too short is refused");
	check(!code_normalize("0000-0000-0000-0000", 19, back), "0 is not in the alphabet");

	/* every single-character substitution breaks the check character */
	for (int pos = 0; pos < CODE_LEN; pos++)
		for (const char *a = CODE_ALPHABET; *a; a++)
		{
			char		typo[CODE_LEN + 1];

			if (*a == code[pos])
				continue;
			strcpy(typo, code);
			typo[pos] = *a;
			if (code_normalize(typo, CODE_LEN, back))
				all_single_errors_caught = 0;
		}
	check(all_single_errors_caught, "every single-character typo is caught");
	for (const char *a = CODE_ALPHABET; *a; a++)
		if (strchr("01IO", *a))
			alphabet_ok = 0;
	check(alphabet_ok && strlen(CODE_ALPHABET) == 32, "alphabet has 32 unambiguous characters");
}

static void
test_currency_and_reasons(void)
{
	check(currency_table_sorted(), "currency table is sorted without duplicates");
	check(currency_is_known("KRW") && currency_is_known("USD") && currency_is_known("EUR"),
		  "common currencies are known");
	check(!currency_is_known("ZZZ") && !currency_is_known("krw") && !currency_is_known("KRWX"),
		  "unknown, lower-case and long codes are refused");
	check(reason_http_status(REASON_SOLD_OUT) == 409 && strcmp(reason_name(REASON_SOLD_OUT), "sold_out") == 0,
		  "sold_out is PT409");
	check(reason_http_status(REASON_TOO_MANY_CODE_ATTEMPTS) == 429, "throttling is PT429");
	{
		int			complete = 1;

		for (int r = 1; r < REASON_COUNT; r++)
			if (strcmp(reason_name((CouponReason) r), "internal") == 0 ||
				reason_hint((CouponReason) r) == NULL)
				complete = 0;
		check(complete, "every reason has a name and a hint");
	}
	{
		int			round_trip = 1;

		for (int r = 0; r < REASON_COUNT; r++)
			if (reason_from_name(reason_name((CouponReason) r)) != (CouponReason) r)
				round_trip = 0;
		check(round_trip, "every reason is found by its name (raise_error)");
		check(reason_from_name("no_such_reason") == REASON_COUNT && reason_from_name("") == REASON_COUNT,
			  "an unknown name is no reason");
		check(reason_http_status(REASON_INVALID_CREDENTIALS) == 401, "invalid_credentials is PT401");
	}
}

/* a context: no cancel, no refund, attempt `attempts` of 8 */
static PayContext
ctx_at(int attempts)
{
	PayContext	c = {false, false, false, false, false, attempts, 8};

	return c;
}

/* the transition of one step's outcome, at attempt 1 of 8 */
static PayState
after(PayState s, PayStep step, PayOutcome o)
{
	PayContext	c = ctx_at(1);

	return pay_transition(s, step, o, &c).next;
}

static void
test_saga_steps(void)
{
	int			names_ok = 1;

	for (int i = 0; i < PAY_STATE_COUNT; i++)
	{
		PayState	back;

		if (!pay_state_from_name(pay_state_name((PayState) i), &back) || back != (PayState) i)
			names_ok = 0;
	}
	check(names_ok, "every state name parses back to its state");
	check(!pay_state_from_name("done", &(PayState) {0}), "an unknown state name is refused");

	check(pay_step_for(PAY_PENDING, false) == STEP_CONFIRM, "pending calls for a confirm");
	check(pay_step_for(PAY_PENDING, true) == STEP_LOOKUP,
		  "pending with a full cancel waiting is looked up, never confirmed");
	check(pay_step_for(PAY_AUTHORIZING, false) == STEP_LOOKUP,
		  "authorizing (answer lost) calls for a lookup, never a blind confirm");
	check(pay_step_for(PAY_APPROVED, false) == STEP_SPEND_COUPONS, "approved spends the coupons");
	check(pay_step_for(PAY_VOIDING, false) == STEP_VOID, "voiding cancels at the gateway");
	check(pay_step_for(PAY_RELEASING, false) == STEP_RELEASE_COUPONS, "releasing gives coupons back");
	check(pay_step_for(PAY_REFUNDING, false) == STEP_REFUND, "refunding refunds at the gateway");
	check(pay_step_for(PAY_COMPLETED, false) == STEP_NONE && pay_step_for(PAY_FAILED, false) == STEP_NONE &&
		  pay_step_for(PAY_NEEDS_ATTENTION, false) == STEP_NONE,
		  "final states and needs_attention have no step");
	check(pay_step_remote(STEP_CONFIRM) && pay_step_remote(STEP_LOOKUP) &&
		  !pay_step_remote(STEP_SPEND_COUPONS) && !pay_step_remote(STEP_RELEASE_COUPONS),
		  "gateway steps are remote, coupon steps local");
	check(pay_claim_state(PAY_PENDING, STEP_CONFIRM) == PAY_AUTHORIZING,
		  "a confirm is recorded as authorizing before it goes out");
	check(pay_claim_state(PAY_PENDING, STEP_LOOKUP) == PAY_AUTHORIZING,
		  "a lookup of a pending payment is recorded as authorizing too");
	check(pay_claim_state(PAY_REFUNDING, STEP_REFUND) == PAY_REFUNDING,
		  "other claims keep their state");
	check(pay_state_final(PAY_REFUNDED) && !pay_state_final(PAY_NEEDS_ATTENTION) &&
		  !pay_state_live(PAY_NEEDS_ATTENTION) && pay_state_live(PAY_AUTHORIZING),
		  "final, live and stuck states");
}

static void
test_saga_classify(void)
{
	check(pay_classify(STEP_CONFIRM, 200, "DONE", NULL) == OUTCOME_OK, "confirm 200 DONE is approval");
	check(pay_classify(STEP_CONFIRM, 403, NULL, "REJECT_CARD_PAYMENT") == OUTCOME_DECLINED,
		  "confirm 403 is a decline");
	check(pay_classify(STEP_CONFIRM, 0, NULL, NULL) == OUTCOME_UNKNOWN, "no answer is unknown");
	check(pay_classify(STEP_CONFIRM, 500, NULL, "PROVIDER_ERROR") == OUTCOME_UNKNOWN, "5xx is unknown");
	check(pay_classify(STEP_CONFIRM, 401, NULL, "UNAUTHORIZED_KEY") == OUTCOME_UNKNOWN,
		  "our own bad key is retried, not a customer decline");
	check(pay_classify(STEP_CONFIRM, 429, NULL, NULL) == OUTCOME_UNKNOWN, "429 is retried");
	check(pay_classify(STEP_CONFIRM, 400, NULL, "ALREADY_PROCESSED_PAYMENT") == OUTCOME_DECLINED,
		  "a payment key taken by another order is final (our own retry would get 200)");
	check(pay_classify(STEP_CONFIRM, 200, "CANCELED", NULL) == OUTCOME_UNKNOWN,
		  "an odd 200 is not an approval");
	check(pay_classify(STEP_LOOKUP, 404, NULL, "NOT_FOUND_PAYMENT") == OUTCOME_NOT_FOUND,
		  "lookup 404: the gateway never saw it");
	check(pay_classify(STEP_LOOKUP, 200, "DONE", NULL) == OUTCOME_OK, "lookup DONE is approval");
	check(pay_classify(STEP_LOOKUP, 200, "ABORTED", NULL) == OUTCOME_DECLINED, "lookup ABORTED is a decline");
	check(pay_classify(STEP_LOOKUP, 200, "IN_PROGRESS", NULL) == OUTCOME_PENDING,
		  "lookup IN_PROGRESS waits");
	check(pay_classify(STEP_LOOKUP, 200, "PARTIAL_CANCELED", NULL) == OUTCOME_UNKNOWN,
		  "lookup PARTIAL_CANCELED is for a human");
	check(pay_classify(STEP_VOID, 400, NULL, "ALREADY_CANCELED_PAYMENT") == OUTCOME_OK,
		  "voiding a void payment is done");
	check(pay_classify(STEP_REFUND, 400, NULL, "ALREADY_CANCELED_PAYMENT") == OUTCOME_REJECTED,
		  "a refund of a void payment is rejected");
	check(pay_classify(STEP_REFUND, 400, NULL, "NOT_CANCELABLE_AMOUNT") == OUTCOME_REJECTED,
		  "a refund beyond the balance is rejected");
	check(pay_classify(STEP_REFUND, 200, "PARTIAL_CANCELED", NULL) == OUTCOME_OK, "refund 200 is done");
	check(pay_classify(STEP_REFUND, 503, NULL, NULL) == OUTCOME_UNKNOWN, "refund 5xx is retried");
}

static void
test_saga_transitions(void)
{
	PayTransition t;
	PayContext	c;

	check(after(PAY_AUTHORIZING, STEP_CONFIRM, OUTCOME_OK) == PAY_APPROVED, "approval -> approved");
	check(after(PAY_AUTHORIZING, STEP_CONFIRM, OUTCOME_DECLINED) == PAY_RELEASING,
		  "decline -> releasing");
	c = ctx_at(1);
	t = pay_transition(PAY_AUTHORIZING, STEP_CONFIRM, OUTCOME_UNKNOWN, &c);
	check(t.next == PAY_AUTHORIZING && t.backoff && !t.reset_attempts,
		  "unknown confirm stays authorizing (lookup next) after a backoff");
	c = ctx_at(2);
	t = pay_transition(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_NOT_FOUND, &c);
	check(t.next == PAY_PENDING && !t.backoff, "lookup not found -> confirm again at once");
	c.cancel_requested = c.cancel_all = true;
	t = pay_transition(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_NOT_FOUND, &c);
	check(t.next == PAY_RELEASING,
		  "lookup not found, a full cancel waiting, no confirm ever sent -> releasing");
	check(pay_step_for(PAY_PENDING, pay_look_first(&c)) == STEP_LOOKUP,
		  "a full cancel of a never-sent payment looks it up instead of confirming");
	c.confirm_sent = true;
	t = pay_transition(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_NOT_FOUND, &c);
	check(t.next == PAY_PENDING && pay_step_for(PAY_PENDING, pay_look_first(&c)) == STEP_CONFIRM,
		  "once a confirm went out, not found means the same confirm again (then the refund)");
	check(after(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_OK) == PAY_APPROVED, "lookup DONE -> approved");
	check(after(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_DECLINED) == PAY_RELEASING,
		  "lookup aborted -> releasing");
	check(after(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_PENDING) == PAY_AUTHORIZING,
		  "lookup in progress -> look again later");
	c = ctx_at(8);
	t = pay_transition(PAY_AUTHORIZING, STEP_CONFIRM, OUTCOME_UNKNOWN, &c);
	check(t.next == PAY_NEEDS_ATTENTION, "the last allowed attempt failing -> needs_attention");
	t = pay_transition(PAY_AUTHORIZING, STEP_LOOKUP, OUTCOME_NOT_FOUND, &c);
	check(t.next == PAY_NEEDS_ATTENTION, "not found at the last attempt -> needs_attention");
	check(after(PAY_APPROVED, STEP_SPEND_COUPONS, OUTCOME_OK) == PAY_COMPLETED, "coupons spent -> completed");
	c = ctx_at(0);
	c.cancel_requested = true;
	check(pay_transition(PAY_APPROVED, STEP_SPEND_COUPONS, OUTCOME_OK, &c).next == PAY_REFUNDING,
		  "a cancel that waited -> refunding right after completion");
	check(after(PAY_APPROVED, STEP_SPEND_COUPONS, OUTCOME_DECLINED) == PAY_VOIDING,
		  "coupons lost -> voiding");
	check(after(PAY_VOIDING, STEP_VOID, OUTCOME_OK) == PAY_RELEASING, "void done -> releasing");
	check(after(PAY_VOIDING, STEP_VOID, OUTCOME_UNKNOWN) == PAY_VOIDING, "void unknown -> again");
	check(after(PAY_VOIDING, STEP_VOID, OUTCOME_REJECTED) == PAY_NEEDS_ATTENTION,
		  "void rejected -> needs_attention");
	check(after(PAY_RELEASING, STEP_RELEASE_COUPONS, OUTCOME_OK) == PAY_FAILED, "released -> failed");
	c = ctx_at(1);
	c.refund_full = true;
	check(pay_transition(PAY_REFUNDING, STEP_REFUND, OUTCOME_OK, &c).next == PAY_REFUNDED,
		  "full refund -> refunded");
	check(after(PAY_REFUNDING, STEP_REFUND, OUTCOME_OK) == PAY_PARTIALLY_REFUNDED,
		  "partial refund -> partially_refunded");
	check(after(PAY_REFUNDING, STEP_REFUND, OUTCOME_REJECTED) == PAY_COMPLETED,
		  "refund rejected -> back to completed");
	c = ctx_at(1);
	c.refunded_before = true;
	check(pay_transition(PAY_REFUNDING, STEP_REFUND, OUTCOME_REJECTED, &c).next ==
		  PAY_PARTIALLY_REFUNDED, "refund rejected after an earlier refund -> partially_refunded");
	check(after(PAY_REFUNDING, STEP_REFUND, OUTCOME_UNKNOWN) == PAY_REFUNDING, "refund unknown -> again");
	c = ctx_at(3);
	t = pay_transition(PAY_AUTHORIZING, STEP_CONFIRM, OUTCOME_OK, &c);
	check(t.reset_attempts && !t.backoff, "a finished step resets attempts");
}

static void
test_saga_backoff_breaker(void)
{
	Breaker		b = {BREAKER_CLOSED, 0, 0, false, 0};
	int			mono = 1;
	int64_t		prev = 0;

	check(pay_backoff_ms(1, 200, 60000, 0) == 100 && pay_backoff_ms(1, 200, 60000, 100) == 200,
		  "first retry waits 100..200 ms for base 200");
	for (int a = 1; a < 12; a++)
	{
		int64_t		lo = pay_backoff_ms(a, 200, 60000, 0);

		if (lo < prev)
			mono = 0;
		prev = lo;
	}
	check(mono, "backoff never shrinks with the attempt number");
	check(pay_backoff_ms(30, 200, 60000, UINT32_MAX) <= 60000 &&
		  pay_backoff_ms(30, 200, 60000, 0) >= 30000, "backoff is capped, jitter included");
	check(pay_backoff_ms(1000, 1000, 86400000, 7) <= 86400000, "huge attempt numbers do not overflow");

	for (int i = 0; i < 4; i++)
		breaker_record(&b, false, 1000, 5, 5000);
	check(b.state == BREAKER_CLOSED && breaker_allow(&b, 1000, 5000), "4 failures of 5: still closed");
	breaker_record(&b, false, 1000, 5, 5000);
	check(b.state == BREAKER_OPEN && !breaker_allow(&b, 2000, 5000), "the 5th failure opens it");
	check(breaker_allow(&b, 6000, 5000) && b.state == BREAKER_HALF_OPEN,
		  "after the cool-down one probe goes out");
	check(!breaker_allow(&b, 6001, 5000), "only one probe at a time");
	check(breaker_allow(&b, 11001, 5000), "a probe lost with its caller is replaced");
	breaker_record(&b, false, 11002, 5, 5000);
	check(b.state == BREAKER_OPEN && !breaker_allow(&b, 11003, 5000), "a failed probe reopens it");
	check(breaker_allow(&b, 16003, 5000), "probe again after the next cool-down");
	breaker_record(&b, true, 16004, 5, 5000);
	check(b.state == BREAKER_CLOSED && b.failures == 0 && breaker_allow(&b, 16005, 5000),
		  "a good probe closes it");
	breaker_record(&b, false, 17000, 5, 5000);
	breaker_record(&b, true, 17001, 5, 5000);
	check(b.failures == 0, "a success resets the failure count");
}

/* the edges breaker_record reports: one open and one close per outage */
static void
test_breaker_edges(void)
{
	Breaker		b = {BREAKER_CLOSED, 0, 0, false, 0};
	int			opened = 0;
	int			closed = 0;
	BreakerEdge e;

	check(breaker_record(&b, true, 100, 3, 5000) == BREAKER_EDGE_NONE,
		  "a success while closed crosses no edge");
	check(breaker_record(&b, false, 200, 3, 5000) == BREAKER_EDGE_NONE &&
		  breaker_record(&b, false, 300, 3, 5000) == BREAKER_EDGE_NONE,
		  "failures below the threshold cross no edge");
	e = breaker_record(&b, false, 400, 3, 5000);
	check(e == BREAKER_EDGE_OPENED && b.opened_at == 400,
		  "the failure that opens it reports OPENED and when");
	check(breaker_record(&b, false, 500, 3, 5000) == BREAKER_EDGE_NONE && b.opened_at == 400,
		  "more failures while open (calls already in flight) report nothing");
	check(breaker_allow(&b, 5500, 5000) && breaker_record(&b, false, 5600, 3, 5000) == BREAKER_EDGE_NONE &&
		  b.state == BREAKER_OPEN && b.opened_at == 400,
		  "a failed probe reopens it without a new OPENED");
	check(breaker_allow(&b, 10600, 5000) && breaker_record(&b, true, 10700, 3, 5000) == BREAKER_EDGE_CLOSED,
		  "a good probe reports CLOSED");
	check(b.opened_at == 400, "opened_at still says when the outage began (for the close line)");
	check(breaker_record(&b, true, 10800, 3, 5000) == BREAKER_EDGE_NONE,
		  "a success after closing reports nothing");

	/* a long outage with many callers: one edge each way */
	memset(&b, 0, sizeof(b));
	for (int64_t t = 1000; t < 100000; t += 10)
	{
		bool		up = (t >= 90000);

		if (!breaker_allow(&b, t, 5000))
			continue;
		e = breaker_record(&b, up, t, 5, 5000);
		opened += (e == BREAKER_EDGE_OPENED);
		closed += (e == BREAKER_EDGE_CLOSED);
		/* calls already in flight fail after it opened */
		if (!up)
		{
			e = breaker_record(&b, false, t + 1, 5, 5000);
			opened += (e == BREAKER_EDGE_OPENED);
			closed += (e == BREAKER_EDGE_CLOSED);
		}
	}
	check(opened == 1 && closed == 1 && b.state == BREAKER_CLOSED,
		  "an outage with probes and late failures: exactly one OPENED and one CLOSED");
}

/* gateway text: bounded, sanitised, whole UTF-8 characters, credentials redacted */
static void
test_excerpt(void)
{
	char		out[EXCERPT_MAX_BYTES + 1];
	char	   *big = malloc(600001);

	memset(big, 'x', 600000);
	big[600000] = '\0';
	excerpt_make(big, "sk", out, EXCERPT_MAX_BYTES);
	check(strlen(out) == EXCERPT_MAX_BYTES, "600 kB of gateway text keeps 300 bytes");
	free(big);
	excerpt_make("bad\r\nline\x01", "", out, EXCERPT_MAX_BYTES);
	check(strcmp(out, "bad  line ") == 0, "control characters become spaces");
	/* "test_sk_1:" in base64 is dGVzdF9za18xOg== */
	excerpt_make("auth: Basic dGVzdF9za18xOg== key test_sk_1 end", "test_sk_1", out,
				 EXCERPT_MAX_BYTES);
	check(strcmp(out, "auth: Basic [redacted] key [redacted] end") == 0,
		  "the secret and its Basic credentials are redacted");
	excerpt_make("\xea\xb2\xb0\xec\xa0\x9c", "", out, 4);
	check(strcmp(out, "\xea\xb2\xb0") == 0, "a cut never splits a UTF-8 character");
	excerpt_make("a\xff\xc3" "b", "", out, EXCERPT_MAX_BYTES);
	check(strcmp(out, "a??b") == 0, "broken UTF-8 becomes question marks");
	excerpt_make(NULL, NULL, out, EXCERPT_MAX_BYTES);
	check(out[0] == '\0', "no text, no excerpt");
}

int
main(void)
{
	test_amounts();
	test_evaluate();
	test_stack();
	test_status_transitions();
	test_codes();
	test_currency_and_reasons();
	test_saga_steps();
	test_saga_classify();
	test_saga_transitions();
	test_saga_backoff_breaker();
	test_breaker_edges();
	test_excerpt();
	printf("1..%d\n", tests);
	return failures == 0 ? 0 : 1;
}
