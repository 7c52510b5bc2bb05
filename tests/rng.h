/* tests/rng.h - the tests' xorshift64 generator. Define TEST_RNG_SEED before including it
 * to pick the sequence; include once per test program. */
#ifndef SLM_TESTS_RNG_H
#define SLM_TESTS_RNG_H

#include <stdint.h>

#ifndef TEST_RNG_SEED
#define TEST_RNG_SEED 0x2545f4914f6cdd1dull
#endif

static uint64_t rng_state = TEST_RNG_SEED;

static inline uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Uniform in [-1, 1). */
static inline float frand(void)
{
    return (float)((double)(rnd() >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#endif
