/*
 * tenant.h
 *		Who the caller acts for.  Every function that touches a merchant's or
 *		a user's rows goes through these checks, so tenancy lives in one place.
 */
#ifndef COUPON_TENANT_H
#define COUPON_TENANT_H

/* what kind of caller this is, from its role */
typedef enum CallerKind
{
	CALLER_TRUSTED,				/* superuser, coupon_admin, coupon_app, or a role granted directly */
	CALLER_MERCHANT,			/* coupon_merchant: a merchant's web session */
	CALLER_CUSTOMER				/* coupon_customer: a customer's web session */
} CallerKind;

/* the kind of the calling role (the role SET ROLE chose, not the definer) */
extern CallerKind caller_kind(void);

/* raise PT403 wrong_tenant unless the caller may act for merchant_id */
extern void tenant_check(int64 merchant_id);

/* raise PT403 wrong_tenant unless the caller may act for user_id */
extern void tenant_check_user(const char *user_id);

/* customers for themselves (user_id), everyone else for merchant_id */
extern void tenant_check_for(int64 merchant_id, const char *user_id);

/* may the caller see merchant_id's rows (false rather than an error) */
extern bool tenant_sees(int64 merchant_id);

/* is the caller the platform (trusted, not bound to one merchant)? */
extern bool tenant_is_platform(void);

/* a member of PostgREST's JSON settings (request.jwt.claims, request.headers) */
extern struct JsonbValue *request_setting_member(const char *setting, const char *key);

/* who acts within a merchant, for idempotency keys (see tenant.c) */
extern char *tenant_actor(void);

/* a returned coupon or payment without its internal columns, for a web role */
extern Datum tenant_coupon_shown(Datum row);
extern Datum tenant_payment_shown(Datum row);

#endif							/* COUPON_TENANT_H */
