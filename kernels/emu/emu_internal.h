/* Shared between the emulator's core (emu.cpp) and its runtime stand-ins; not for kernels. */
#ifndef SLM_EMU_INTERNAL_H
#define SLM_EMU_INTERNAL_H

#include "kernels/emu/emu.h"

#include <string>

namespace slm_emu {

/* Which fiber runs next after a switch, and in which order blocks are taken. */
enum schedule { SCHED_FORWARD, SCHED_REVERSE };

/* The knobs, read from the environment at the first call. */
const slm_emu_options &options();

/* Runs every block of the launch; `serial` keeps it on the calling thread (a
 * reproducible order). Returns cudaSuccess, or cudaErrorLaunchFailure after reporting
 * a deadlock or a misuse of an intrinsic. */
cudaError_t run_grid(const launch_desc &d, int sched, bool serial);
/* True while the launch log measures bytes (launch_log.cpp): grids then run on one thread. */
bool launch_log_serial();

/* True on a fiber of a programmatic dependent launch that has not yet called slm_pdl_begin:
 * read by the launch log's fault handler (async-signal-safe: thread-local reads only). */
bool pdl_before_wait(void);

/* Records `text` as the last report and prints it on stderr unless quiet. */
void report(const std::string &text);
/* printf-style formatting into a std::string. */
std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} /* namespace slm_emu */

#endif
