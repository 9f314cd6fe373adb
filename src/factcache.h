/*
 * factcache.h
 *		validate()'s and issue()'s backend-local copies of policy and
 *		merchant facts, kept only while no committed change can have made
 *		them stale.
 */
#ifndef COUPON_FACTCACHE_H
#define COUPON_FACTCACHE_H

#include "discount.h"
#include "policy.h"

/*
 * May this call use and fill the copies?  Only under READ COMMITTED, on a
 * primary, with the extension's fact-change triggers enabled, and while no
 * change of a policy or merchant is in flight.  A true answer holds for
 * the rest of the call: rows missing from the cache must then be read with
 * a newer snapshot (FETCH_NEWEST).
 */
extern bool factcache_open(void);

/* *f as read from policy_id (the rest zero), from its copy; false if none */
extern bool factcache_get_policy(int64 policy_id, CouponFacts *f);

/* keep *f, holding only policy_id's part (a budgeted policy is not kept) */
extern void factcache_put_policy(int64 policy_id, const CouponFacts *f);

/*
 * Is the merchant active (and does it exist)?  From its copy when `cached`
 * (factcache_open() said so), else read under the call's snapshot.
 */
extern bool factcache_load_merchant(int64 merchant_id, bool cached, bool *exists);

/* *info as issue() read it from policy_id, from its copy; false if none */
extern bool factcache_get_issue_info(int64 policy_id, PolicyIssueInfo *info);

/* keep what issue() read of a policy */
extern void factcache_put_issue_info(int64 policy_id, const PolicyIssueInfo *info);

/* forget every copy (on an invalidation of the extension's tables) */
extern void factcache_reset(void);

#endif							/* COUPON_FACTCACHE_H */
