/*
 * worker.h
 *		What the extension's background workers share.
 */
#ifndef COUPON_WORKER_H
#define COUPON_WORKER_H

/* register one background worker of this library (function: its entry point) */
extern void worker_register(const char *function, const char *name, const char *type, int32 arg);

/*
 * A worker's step: start a transaction and open a VOLATILE call context in
 * it (reporting the activity); then close both, commit and switch back to
 * the worker's loop context.
 */
extern void worker_step_begin(const char *activity);
extern void worker_step_end(MemoryContext loop_cxt);

/* is the extension installed in the worker's database? (a transaction of its own) */
extern bool worker_extension_present(void);

#endif							/* COUPON_WORKER_H */
