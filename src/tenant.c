/*
 * tenant.c
 *		Who the caller acts for: the merchant_id claim of the JWT that
 *		PostgREST puts in request.jwt.claims.  A session without claims is a
 *		trusted backend (role coupon_app or coupon_admin) acting for any
 *		merchant.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "coupon.h"
#include "error.h"
#include "tenant.h"

/* the merchant the caller is limited to, or -1 for a trusted caller */
int64
tenant_merchant(void)
{
	const char *claims = GetConfigOption("request.jwt.claims", true, false);
	Jsonb	   *jb;
	JsonbValue *v;

	if (claims == NULL || claims[0] == '\0')
		return -1;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return -1;
	v = getKeyJsonValueFromContainer(&jb->root, "merchant_id",
									 strlen("merchant_id"), NULL);
	if (v == NULL || v->type == jbvNull)
		return -1;
	if (v->type == jbvNumeric)
		return DatumGetInt64(DirectFunctionCall1(numeric_int8,
												 NumericGetDatum(v->val.numeric)));
	if (v->type == jbvString)
		return DatumGetInt64(DirectFunctionCall1(int8in,
												 CStringGetDatum(pnstrdup(v->val.string.val,
																		  v->val.string.len))));
	coupon_error(REASON_WRONG_TENANT, NULL, "the merchant_id claim is not a number");
}

/* raise PT403 wrong_tenant unless the caller may act for merchant_id */
void
tenant_check(int64 merchant_id)
{
	int64		acting = tenant_merchant();

	if (acting >= 0 && acting != merchant_id)
		coupon_error(REASON_WRONG_TENANT,
					 psprintf("%s, %s", json_id("merchant_id", merchant_id),
							  json_id("acting_merchant_id", acting)),
					 "merchant %lld may not act on merchant %lld's data",
					 (long long) acting, (long long) merchant_id);
}
