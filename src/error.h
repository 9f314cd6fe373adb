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

/* raise a business error: message, DETAIL {"reason": ..., ids}, HINT */
extern void coupon_error(CouponReason reason, const char *ids, const char *fmt,...)
			pg_attribute_printf(3, 4) pg_attribute_noreturn();

/* a JSON member "key": value, to pass as the ids of coupon_error */
extern char *json_id(const char *key, int64 value);

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
