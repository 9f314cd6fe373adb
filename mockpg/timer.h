/*-------------------------------------------------------------------------
 *
 * timer.h
 *	  One thread that wakes suspended requests when their delay is over
 *	  (latency before handling, stall after a timeout fault), so that a
 *	  sleeping request never holds a server thread.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MOCKPG_TIMER_H
#define MOCKPG_TIMER_H

#include <stdbool.h>
#include <stdint.h>

/* Suspends the caller's request; runs under the timer's lock. */
typedef void (*SuspendFn) (void *arg);

/* Resumes it; aborted is true when the server is shutting down. */
typedef void (*WakeFn) (void *arg, bool aborted);

extern void timer_start(void);
extern bool timer_add(int64_t due_ms, SuspendFn suspend, WakeFn wake, void *arg);
extern void timer_stop(void);

#endif							/* MOCKPG_TIMER_H */
