/*
 * codefmt.h
 *		Coupon code text: alphabet, check character, display form.
 *		Pure C, no PostgreSQL headers, unit-tested on its own.
 *
 * A code is CODE_BODY_LEN characters drawn from a 32-character alphabet
 * without look-alikes (no 0, 1, I, O) plus one Luhn mod 32 check character,
 * shown in groups of four: XXXX-XXXX-XXXX-XXXX (75 random bits).
 */
#ifndef COUPON_CODEFMT_H
#define COUPON_CODEFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CODE_ALPHABET		"23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
#define CODE_BODY_LEN		15
#define CODE_LEN			(CODE_BODY_LEN + 1)
#define CODE_DISPLAY_LEN	(CODE_LEN + CODE_LEN / 4 - 1)

/* the check character for a body of `len` alphabet characters */
extern char code_check_char(const char *body, size_t len);

/* turn CODE_BODY_LEN random bytes into a canonical code (CODE_LEN + NUL) */
extern void code_from_random(const uint8_t *random, char *out);

/* canonical code -> XXXX-XXXX-XXXX-XXXX (CODE_DISPLAY_LEN + NUL) */
extern void code_display(const char *code, char *out);

/*
 * Typed text -> canonical code: case, spaces and dashes ignored.  False if
 * the length, a character or the check character is wrong.
 */
extern bool code_normalize(const char *in, size_t len, char *out);

#endif							/* COUPON_CODEFMT_H */
