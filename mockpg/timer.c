/*-------------------------------------------------------------------------
 *
 * timer.c
 *	  Delayed wake-ups for suspended requests, kept in a binary min-heap
 *	  ordered by deadline (monotonic milliseconds).
 *
 *	  timer_add() suspends the request while holding the timer's lock, so
 *	  the wake-up can never run before the suspension.  Wake-ups run outside
 *	  the lock; "waking" counts those in progress so that timer_stop() can
 *	  return only when no request is left suspended.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "timer.h"
#include "util.h"

typedef struct TimerEntry
{
	int64_t		due_ms;
	uint64_t	order;			/* ties keep insertion order */
	WakeFn		wake;
	void	   *arg;
} TimerEntry;

static struct
{
	pthread_mutex_t lock;
	pthread_cond_t cond;		/* new earliest deadline, or stop */
	pthread_cond_t idle;		/* a wake-up finished */
	TimerEntry *heap;
	size_t		len;
	size_t		cap;
	uint64_t	next_order;
	int			waking;
	bool		stopped;
	bool		running;
	pthread_t	thread;
} T;

/* Heap order: earlier deadline first, then first come first served. */
static bool
entry_before(const TimerEntry *a, const TimerEntry *b)
{
	if (a->due_ms != b->due_ms)
		return a->due_ms < b->due_ms;
	return a->order < b->order;
}

/* Restore the heap after appending at the end. */
static void
sift_up(size_t i)
{
	while (i > 0)
	{
		size_t		parent = (i - 1) / 2;
		TimerEntry	tmp;

		if (!entry_before(&T.heap[i], &T.heap[parent]))
			break;
		tmp = T.heap[i];
		T.heap[i] = T.heap[parent];
		T.heap[parent] = tmp;
		i = parent;
	}
}

/* Restore the heap after moving the last entry to the root. */
static void
sift_down(size_t i)
{
	for (;;)
	{
		size_t		l = 2 * i + 1;
		size_t		r = l + 1;
		size_t		m = i;
		TimerEntry	tmp;

		if (l < T.len && entry_before(&T.heap[l], &T.heap[m]))
			m = l;
		if (r < T.len && entry_before(&T.heap[r], &T.heap[m]))
			m = r;
		if (m == i)
			break;
		tmp = T.heap[i];
		T.heap[i] = T.heap[m];
		T.heap[m] = tmp;
		i = m;
	}
}

/* Remove and return the earliest entry; the heap must not be empty. */
static TimerEntry
heap_pop(void)
{
	TimerEntry	top = T.heap[0];

	T.heap[0] = T.heap[--T.len];
	sift_down(0);
	return top;
}

/* Turn a monotonic deadline into the absolute time pthread_cond_timedwait wants. */
static struct timespec
deadline_timespec(int64_t due_ms)
{
	struct timespec ts;

	ts.tv_sec = due_ms / 1000;
	ts.tv_nsec = (due_ms % 1000) * 1000000;
	return ts;
}

/* The timer thread: sleep until the earliest deadline, then wake that request. */
static void *
timer_main(void *unused)
{
	pthread_mutex_lock(&T.lock);
	while (!T.stopped)
	{
		if (T.len == 0)
		{
			pthread_cond_wait(&T.cond, &T.lock);
			continue;
		}
		if (T.heap[0].due_ms > monotonic_ms())
		{
			struct timespec ts = deadline_timespec(T.heap[0].due_ms);

			pthread_cond_timedwait(&T.cond, &T.lock, &ts);
			continue;
		}
		{
			TimerEntry	e = heap_pop();

			T.waking++;
			pthread_mutex_unlock(&T.lock);
			e.wake(e.arg, false);
			pthread_mutex_lock(&T.lock);
			T.waking--;
			pthread_cond_broadcast(&T.idle);
		}
	}
	pthread_mutex_unlock(&T.lock);
	return NULL;
}

/* Create the lock, the condition variables (on the monotonic clock) and the thread. */
void
timer_start(void)
{
	pthread_condattr_t attr;
	int			rc;

	pthread_mutex_init(&T.lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&T.cond, &attr);
	pthread_condattr_destroy(&attr);
	pthread_cond_init(&T.idle, NULL);
	T.cap = 64;
	T.heap = xmalloc(T.cap * sizeof(TimerEntry));
	rc = pthread_create(&T.thread, NULL, timer_main, NULL);
	if (rc != 0)
		fatal("cannot start the timer thread: error %d", rc);
	T.running = true;
}

/*
 * Suspend a request and wake it at due_ms.  Returns false, without
 * suspending, once the server is stopping: the caller then drops the request.
 */
bool
timer_add(int64_t due_ms, SuspendFn suspend, WakeFn wake, void *arg)
{
	pthread_mutex_lock(&T.lock);
	if (T.stopped)
	{
		pthread_mutex_unlock(&T.lock);
		return false;
	}
	if (T.len == T.cap)
	{
		T.cap *= 2;
		T.heap = xrealloc(T.heap, T.cap * sizeof(TimerEntry));
	}
	suspend(arg);
	T.heap[T.len].due_ms = due_ms;
	T.heap[T.len].order = T.next_order++;
	T.heap[T.len].wake = wake;
	T.heap[T.len].arg = arg;
	sift_up(T.len);
	T.len++;
	if (T.heap[0].arg == arg)
		pthread_cond_signal(&T.cond);
	pthread_mutex_unlock(&T.lock);
	return true;
}

/*
 * Shutdown: refuse new delays, wake every waiting request as aborted, wait
 * for wake-ups in progress, and join the thread.  Nobody waits out a stall.
 */
void
timer_stop(void)
{
	TimerEntry *pending;
	size_t		n;

	if (!T.running)
		return;
	pthread_mutex_lock(&T.lock);
	T.stopped = true;
	pending = T.heap;
	n = T.len;
	T.heap = NULL;
	T.len = T.cap = 0;
	T.waking += (int) n;
	pthread_cond_signal(&T.cond);
	pthread_mutex_unlock(&T.lock);

	for (size_t i = 0; i < n; i++)
		pending[i].wake(pending[i].arg, true);
	free(pending);

	pthread_mutex_lock(&T.lock);
	T.waking -= (int) n;
	while (T.waking > 0)
		pthread_cond_wait(&T.idle, &T.lock);
	pthread_mutex_unlock(&T.lock);

	pthread_join(T.thread, NULL);
	T.running = false;
	pthread_cond_destroy(&T.cond);
	pthread_cond_destroy(&T.idle);
	pthread_mutex_destroy(&T.lock);
}
