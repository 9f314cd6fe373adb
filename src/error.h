/*
 * error.h
 *		Raising errors of the contract (PTnnn, reason in DETAIL) and reading
 *		checked arguments.
 */
#ifndef COUPON_ERROR_H
#define COUPON_ERROR_H

#include "fmgr.h"
#include "reason.h"

/* the PTnnn SQLSTATE of a reason */
extern int	reason_sqlstate(CouponReason reason);

/* the DETAIL of a business error: {"reason": ..., ids} */
extern char *reason_detail(CouponReason reason, const char *ids);

/*
 * Raise a business error: SQLSTATE PTnnn, the message (printf-style), DETAIL
 * {"reason": ..., ids} and the reason's HINT.  A macro, so that the error's
 * location is the raiser's.  `ids` are JSON members made by json_id,
 * json_text and json_join (or NULL), so every value is escaped.
 */
#define coupon_error(reason, ids, ...) \
	ereport(ERROR, \
			(errcode(reason_sqlstate(reason)), \
			 errmsg(__VA_ARGS__), \
			 errdetail_internal("%s", reason_detail((reason), (ids))), \
			 reason_hint(reason) ? errhint("%s", reason_hint(reason)) : 0))

/* JSON members for the ids of coupon_error: a number, a string, two lists */
extern char *json_id(const char *key, int64 value);
extern char *json_text(const char *key, const char *value);
extern char *json_join(const char *a, const char *b);

/* argument readers: raise PT400 with the given reason on bad input */
extern void require_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern int32 arg_int32_range(FunctionCallInfo fcinfo, int argno, const char *name,
							 int32 lo, int32 hi, CouponReason reason);
extern int64 arg_int64(FunctionCallInfo fcinfo, int argno, const char *name);
extern int64 arg_amount(FunctionCallInfo fcinfo, int argno, const char *name);
extern char *arg_id_text(FunctionCallInfo fcinfo, int argno, const char *name,
						 CouponReason reason);
extern void check_amount(int64 value, const char *name);

#endif							/* COUPON_ERROR_H */
