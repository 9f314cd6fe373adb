/*
 * coupon.c
 *		Module initialisation and the coupon.* settings.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "coupon.h"
#include "fetch.h"

PG_MODULE_MAGIC;

char	   *coupon_code_secret = NULL;
int			coupon_reservation_ttl = 900;
int			coupon_expire_lookback = 30;
int			coupon_code_max_failures = 5;
int			coupon_code_failure_window = 600;

void		_PG_init(void);

/* declare the coupon.* settings and reserve the prefix */
static void
coupon_guc_init(void)
{
	DefineCustomStringVariable("coupon.code_secret",
							   "Key of the HMAC-SHA256 under which coupon codes are stored.",
							   "Changing it makes every unredeemed code unusable.",
							   &coupon_code_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.reservation_ttl",
							"Seconds a reservation holds its coupon when reserve() is given no ttl.",
							NULL,
							&coupon_reservation_ttl,
							900, 1, 7 * 24 * 3600,
							PGC_USERSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.expire_lookback",
							"Days back that expire_coupons() looks for coupons to mark expired.",
							"Run expire_coupons() at least this often.",
							&coupon_expire_lookback,
							30, 1, 3650,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.code_max_failures",
							"Wrong codes one user may enter within coupon.code_failure_window.",
							NULL,
							&coupon_code_max_failures,
							5, 1, 1000,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("coupon.code_failure_window",
							"Seconds over which wrong codes are counted.",
							NULL,
							&coupon_code_failure_window,
							600, 1, 7 * 24 * 3600,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);
	MarkGUCPrefixReserved("coupon");
}

/* module entry point: each part's init, nothing else */
void
_PG_init(void)
{
	coupon_guc_init();
	coupon_shmem_init();
	coupon_issue_init();
	coupon_fetch_init();
}
