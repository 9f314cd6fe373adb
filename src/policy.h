/*
 * policy.h
 *		What issuance needs to know of a policy, shared by issue() and
 *		redeem_code().
 */
#ifndef COUPON_POLICY_H
#define COUPON_POLICY_H

#include "utils/timestamp.h"

#include "discount.h"

typedef struct PolicyIssueInfo
{
	int64		id;
	int64		merchant_id;
	char		issue_method[8];
	PolicyStatus status;
	bool		merchant_active;
	bool		has_total;
	int64		total_quantity;
	bool		has_limit;
	int32		per_user_limit;
	bool		has_issue_start;
	TimestampTz issue_starts_at;
	bool		has_issue_end;
	TimestampTz issue_ends_at;
	bool		has_valid_until;
	TimestampTz valid_until;
	bool		has_valid_days;
	int32		valid_days;
	bool		is_balance;		/* a stored-value policy */
	int64		discount_value;
	TimestampTz created_at;
} PolicyIssueInfo;

/* load a policy for issuance by primary key; raises PT404 when missing */
extern void policy_load_issue_info(int64 policy_id, PolicyIssueInfo *info);

/* raise unless coupons of the policy may be issued now */
extern void policy_check_issuable(const PolicyIssueInfo *info);

/*
 * Serialise the user's issuance of this policy and check per_user_limit;
 * returns the user_seq for the new coupon (0 when unlimited).
 */
extern int32 policy_take_user_slot(const PolicyIssueInfo *info, const char *user_id);

#endif							/* COUPON_POLICY_H */
