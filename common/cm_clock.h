/*
 * cm_clock.h - the clocks both programs read. Monotonic for durations and
 * deadlines (never goes back), wall clock for what leaves the process
 * (timestamps, stream ids). Any thread.
 */
#ifndef CM_CLOCK_H
#define CM_CLOCK_H

#include <stdint.h>

uint64_t cm_now_ms(void);  /* CLOCK_MONOTONIC, milliseconds */
uint64_t cm_now_us(void);  /* CLOCK_MONOTONIC, microseconds */
uint64_t cm_wall_ms(void); /* CLOCK_REALTIME, milliseconds since the epoch */

#endif
