/*-------------------------------------------------------------------------
 *
 * faults.c
 *	  Fault settings, the seeded random source and magic paymentKeys.
 *
 *	  The settings are read by every request and written rarely, so they sit
 *	  behind their own small mutex rather than the store's.  The random
 *	  source is splitmix64: with --seed the sequence of draws is repeatable
 *	  (which request gets which draw still depends on arrival order).
 *
 *-------------------------------------------------------------------------
 */
#include <pthread.h>
#include <string.h>

#include "faults.h"

/* the names of the ListFault values, as POST /__mock/faults takes them */
const char *const list_fault_names[LIST_FAULT_COUNT] = {
	"none", "not_json", "not_array", "no_key", "bad_amount"
};

static pthread_mutex_t faults_lock = PTHREAD_MUTEX_INITIALIZER;
static FaultConfig current;
static uint64_t rng_state;

/* Install the settings from the command line and seed the random source. */
void
faults_init(const FaultConfig *initial, uint64_t seed)
{
	pthread_mutex_lock(&faults_lock);
	current = *initial;
	rng_state = seed;
	pthread_mutex_unlock(&faults_lock);
}

/* Nothing is allocated; kept so that shutdown reads symmetrically. */
void
faults_destroy(void)
{
}

/* A consistent copy of the settings for one request. */
FaultConfig
faults_get(void)
{
	FaultConfig c;

	pthread_mutex_lock(&faults_lock);
	c = current;
	pthread_mutex_unlock(&faults_lock);
	return c;
}

/* Replace all settings at once (POST /__mock/faults validates first). */
void
faults_set(const FaultConfig *config)
{
	pthread_mutex_lock(&faults_lock);
	current = *config;
	pthread_mutex_unlock(&faults_lock);
}

/* One step of splitmix64; the caller holds faults_lock. */
static uint64_t
next_random(void)
{
	uint64_t	z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/*
 * True with probability rate.  Rates of 0 and 1 never draw, so exact tests
 * and the seeded sequence are not disturbed by switched-off faults.
 */
bool
faults_roll(double rate)
{
	double		u;

	if (rate <= 0.0)
		return false;
	if (rate >= 1.0)
		return true;
	pthread_mutex_lock(&faults_lock);
	u = (double) (next_random() >> 11) * (1.0 / 9007199254740992.0);
	pthread_mutex_unlock(&faults_lock);
	return u < rate;
}

/* Magic paymentKeys make a single payment fail in a chosen way, every time. */
MagicKey
faults_magic(const char *payment_key)
{
	if (strncmp(payment_key, "decline_", 8) == 0)
		return MAGIC_DECLINE;
	if (strncmp(payment_key, "error_", 6) == 0)
		return MAGIC_ERROR;
	if (strncmp(payment_key, "timeout_", 8) == 0)
		return MAGIC_TIMEOUT;
	if (strncmp(payment_key, "badtotal_", 9) == 0)
		return MAGIC_BAD_TOTAL;
	if (strncmp(payment_key, "badcurrency_", 12) == 0)
		return MAGIC_BAD_CURRENCY;
	if (strncmp(payment_key, "expire_", 7) == 0)
		return MAGIC_EXPIRE;
	return MAGIC_NONE;
}
