/*
 * currency.h
 *		ISO 4217 currency codes.  Pure C, unit-tested on its own.
 */
#ifndef COUPON_CURRENCY_H
#define COUPON_CURRENCY_H

#include <stdbool.h>

/* is `code` an active ISO 4217 code (three upper-case letters)? */
extern bool currency_is_known(const char *code);

/* for the unit test: is the table sorted and free of duplicates? */
extern bool currency_table_sorted(void);

#endif							/* COUPON_CURRENCY_H */
