/*
 * tenant.h
 *		Who the caller acts for.  Every function that touches a merchant's
 *		rows goes through tenant_check, so tenancy rules live in one place.
 */
#ifndef COUPON_TENANT_H
#define COUPON_TENANT_H

/* the merchant the caller is limited to, or -1 for a trusted caller */
extern int64 tenant_merchant(void);

/* raise PT403 wrong_tenant unless the caller may act for merchant_id */
extern void tenant_check(int64 merchant_id);

#endif							/* COUPON_TENANT_H */
