/*
 * outbox.h
 *		The outbox's capture trigger and the relay worker's wake-up.
 */
#ifndef COUPON_OUTBOX_H
#define COUPON_OUTBOX_H

/* register the commit-time wake-up of the relay worker */
extern void coupon_outbox_init(void);

/* forget the policies' merchants (cacheinval.c) */
extern void outbox_reset(void);

#endif							/* COUPON_OUTBOX_H */
