/*
 * test_unit.c
 *		Unit tests of the pure C parts (discount engine, stacking, code text,
 *		currencies, reason table), built and run without a server.
 *		Prints TAP.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codefmt.h"
#include "currency.h"
#include "discount.h"
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
	check(discount_evaluate(&f, 99, 10000, 1000, &d) == REASON_MERCHANT_NOT_FOUND,
		  "an unknown merchant is not found");
	f = base_facts();
	check(discount_evaluate(&f, 2, 10000, 1000, &d) == REASON_MERCHANT_NOT_ALLOWED,
		  "only the issuer when allowed_merchants is NULL");
	f.allowed = allowed;
	f.n_allowed = 2;
	check(discount_evaluate(&f, 9, 10000, 1000, &d) == REASON_NONE, "a listed merchant");
	check(discount_evaluate(&f, 1, 10000, 1000, &d) == REASON_MERCHANT_NOT_ALLOWED,
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
	printf("1..%d\n", tests);
	return failures == 0 ? 0 : 1;
}
