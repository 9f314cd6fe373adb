/*
 * tenant.c
 *		Who the caller acts for.
 *
 * The calling role is the one PostgREST (or SET ROLE) chose, which a
 * SECURITY DEFINER function still sees as the outer user.  Web roles are
 * bound to their JWT claims as PostgREST puts them in request.jwt.claims:
 * coupon_merchant to the merchant_id claim, coupon_customer to the sub
 * claim.  Trusted roles (superuser, coupon_admin, coupon_app) act for
 * anyone, unless claims narrow them to one merchant.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/typcache.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "fmgr.h"

#include "coupon.h"
#include "error.h"
#include "tenant.h"

/* is `role` one of the caller's privileges (by name; false if it does not exist) */
static bool
caller_has_role(Oid caller, const char *role)
{
	Oid			oid = get_role_oid(role, true);

	return OidIsValid(oid) && has_privs_of_role(caller, oid);
}

/* the kind of the calling role */
CallerKind
caller_kind(void)
{
	Oid			caller = GetOuterUserId();

	if (superuser_arg(caller) ||
		caller_has_role(caller, "coupon_admin") ||
		caller_has_role(caller, "coupon_app"))
		return CALLER_TRUSTED;
	if (caller_has_role(caller, "coupon_merchant"))
		return CALLER_MERCHANT;
	if (caller_has_role(caller, "coupon_customer"))
		return CALLER_CUSTOMER;
	return CALLER_TRUSTED;
}

/*
 * The member `key` of a JSON object that PostgREST puts in a setting
 * (request.jwt.claims, request.headers), or NULL: no such setting, not an
 * object, no such member, or JSON null.
 */
JsonbValue *
request_setting_member(const char *setting, const char *key)
{
	const char *json = GetConfigOption(setting, true, false);
	Jsonb	   *jb;
	JsonbValue *v;

	if (json == NULL || json[0] == '\0')
		return NULL;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(json)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return NULL;
	v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	return v;
}

/* the claim `key` of request.jwt.claims, or NULL (no claims, no such key) */
static JsonbValue *
claim(const char *key)
{
	return request_setting_member("request.jwt.claims", key);
}

/* a claim's text (a string, or a number's canonical form), or NULL */
static char *
claim_text(JsonbValue *v)
{
	if (v == NULL)
		return NULL;
	if (v->type == jbvString)
		return pnstrdup(v->val.string.val, v->val.string.len);
	if (v->type == jbvNumeric)
		return DatumGetCString(DirectFunctionCall1(numeric_out,
												   NumericGetDatum(v->val.numeric)));
	return "";
}

/*
 * The merchant the claims bind the caller to: -1 without a merchant_id
 * claim; PT403 when the claim is not a whole number.
 */
static int64
claimed_merchant(void)
{
	char	   *s = claim_text(claim("merchant_id"));
	char	   *end;
	long long	id;

	if (s == NULL)
		return -1;
	errno = 0;
	id = strtoll(s, &end, 10);
	if (s[0] == '\0' || *end != '\0' || errno != 0 || id < 0)
		coupon_error(REASON_WRONG_TENANT, NULL, "the merchant_id claim is not a merchant id");
	return (int64) id;
}

/* raise PT403 wrong_tenant unless the caller may act for merchant_id */
void
tenant_check(int64 merchant_id)
{
	CallerKind kind = caller_kind();
	int64		acting;

	if (kind == CALLER_CUSTOMER)
		coupon_error(REASON_WRONG_TENANT, json_id("merchant_id", merchant_id),
					 "a customer may not act for merchant %lld", (long long) merchant_id);
	acting = claimed_merchant();
	if (acting < 0 && kind == CALLER_MERCHANT)
		coupon_error(REASON_WRONG_TENANT, json_id("merchant_id", merchant_id),
					 "a merchant session needs a merchant_id claim");
	if (acting >= 0 && acting != merchant_id)
		coupon_error(REASON_WRONG_TENANT,
					 json_join(json_id("merchant_id", merchant_id),
							  json_id("acting_merchant_id", acting)),
					 "merchant %lld may not act on merchant %lld's data",
					 (long long) acting, (long long) merchant_id);
}

/*
 * May the caller see merchant_id's rows in a shared view?  Quietly false
 * where tenant_check would raise: a view filters, it does not fail.
 */
bool
tenant_sees(int64 merchant_id)
{
	CallerKind kind = caller_kind();
	int64		acting;

	if (kind == CALLER_CUSTOMER)
		return false;
	acting = claimed_merchant();
	if (acting < 0)
		return kind == CALLER_TRUSTED;
	return acting == merchant_id;
}

/*
 * Is the caller the platform itself: a trusted role not narrowed to one
 * merchant by a merchant_id claim?
 */
bool
tenant_is_platform(void)
{
	return caller_kind() == CALLER_TRUSTED && claimed_merchant() < 0;
}

/* raise PT403 wrong_tenant unless the caller may act for user_id */
void
tenant_check_user(const char *user_id)
{
	char	   *sub;

	if (caller_kind() != CALLER_CUSTOMER)
		return;
	sub = claim_text(claim("sub"));
	if (sub == NULL || strcmp(sub, user_id) != 0)
		coupon_error(REASON_WRONG_TENANT, NULL,
					 "a customer may act only on their own coupons");
}

/* customers for themselves (user_id), everyone else for merchant_id */
void
tenant_check_for(int64 merchant_id, const char *user_id)
{
	if (caller_kind() == CALLER_CUSTOMER)
		tenant_check_user(user_id);
	else
		tenant_check(merchant_id);
}

PG_FUNCTION_INFO_V1(coupon_check_acting_user);

/* coupon.check_acting_user(user_id): true, or PT403 (for SQL-language readers) */
Datum
coupon_check_acting_user(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		coupon_error(REASON_MISSING_ARGUMENT, json_text("argument", "user_id"),
					 "user_id must not be null");
	tenant_check_user(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(coupon_check_acting_merchant);

/* coupon.check_acting_merchant(merchant_id): true, or PT403 (for SQL-language readers) */
Datum
coupon_check_acting_merchant(PG_FUNCTION_ARGS)
{
	tenant_check(arg_int64(fcinfo, 0, "merchant_id"));
	PG_RETURN_BOOL(true);
}

PG_FUNCTION_INFO_V1(coupon_sees_merchant);

/* coupon.sees_merchant(merchant_id): may the caller see that merchant's rows (for views) */
Datum
coupon_sees_merchant(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_BOOL(false);
	PG_RETURN_BOOL(tenant_sees(PG_GETARG_INT64(0)));
}

PG_FUNCTION_INFO_V1(coupon_sees_coupon);

/*
 * coupon.sees_coupon(issuer_id, allowed_merchants): may the caller see a
 * coupon of a policy with this issuer and list (user_coupons)?  A customer
 * sees its own coupons wherever they are spent (the reader checks the
 * user); a session bound to a merchant sees those it can take (issued by
 * it, or naming it); the platform sees all; a merchant role without a
 * claim, none.
 */
Datum
coupon_sees_coupon(PG_FUNCTION_ARGS)
{
	CallerKind	kind = caller_kind();
	int64		acting;
	ArrayType  *allowed;
	Datum	   *elems;
	bool	   *enulls;
	int			n;

	if (kind == CALLER_CUSTOMER)
		PG_RETURN_BOOL(true);
	/* what the session may see of the issuer's rows, it may see of its coupons */
	if (!PG_ARGISNULL(0) && tenant_sees(PG_GETARG_INT64(0)))
		PG_RETURN_BOOL(true);
	/* and a session bound to a merchant, the coupons its merchant can take */
	acting = claimed_merchant();
	if (acting < 0 || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	allowed = PG_GETARG_ARRAYTYPE_P(1);
	deconstruct_array(allowed, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &enulls, &n);
	for (int i = 0; i < n; i++)
		if (!enulls[i] && DatumGetInt64(elems[i]) == acting)
			PG_RETURN_BOOL(true);
	PG_RETURN_BOOL(false);
}

/*
 * Who acts, within a merchant, for idempotency keys: "client:<client_id>"
 * for a merchant's server signed in with client credentials (pre_request()
 * puts client_id in the claims), "user:<sub>" for a customer, "" for a
 * trusted caller.
 */
char *
tenant_actor(void)
{
	char	   *client = claim_text(claim("client_id"));
	char	   *sub;

	if (client != NULL && client[0] != '\0')
		return psprintf("client:%s", client);
	if (caller_kind() == CALLER_CUSTOMER && (sub = claim_text(claim("sub"))) != NULL)
		return psprintf("user:%s", sub);
	return "";
}

/*
 * A row returned to the caller, with the columns `names` (internal ones:
 * a code's HMAC, the gateway's error text) set NULL when the caller is a
 * web role (a customer or a merchant's session); as it is otherwise.
 */
static Datum
hide_internal(Datum row, int n, const char *const *names)
{
	HeapTupleHeader th;
	TupleDesc	desc;
	HeapTupleData tuple;
	Datum	   *values;
	bool	   *nulls;
	HeapTuple	shown;

	if (caller_kind() == CALLER_TRUSTED)
		return row;
	th = DatumGetHeapTupleHeader(row);
	desc = lookup_rowtype_tupdesc(HeapTupleHeaderGetTypeId(th), HeapTupleHeaderGetTypMod(th));
	tuple.t_len = HeapTupleHeaderGetDatumLength(th);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = th;
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(&tuple, desc, values, nulls);
	for (int i = 0; i < n; i++)
	{
		int			attnum = SPI_fnumber(desc, names[i]);

		if (attnum > 0)
			nulls[attnum - 1] = true;
	}
	shown = heap_form_tuple(desc, values, nulls);
	ReleaseTupleDesc(desc);
	return HeapTupleGetDatum(shown);
}

/* a coupon as returned: a web role does not see the code's HMAC */
Datum
tenant_coupon_shown(Datum row)
{
	static const char *const internal[] = {"code_hash"};

	return hide_internal(row, lengthof(internal), internal);
}

/* a payment as returned: a web role does not see the gateway's error text */
Datum
tenant_payment_shown(Datum row)
{
	static const char *const internal[] = {"last_error"};

	return hide_internal(row, lengthof(internal), internal);
}
