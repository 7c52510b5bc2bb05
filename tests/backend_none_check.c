/*
 * tests/backend_none_check.c (CTest test_backend_none) - the CUDA backend's variant for builds
 * without CUDA (slm_backend_cuda_none, what slmd links when neither nvcc nor the emulator is
 * there): asked for a device it says in one line that this slmd has no CUDA backend, reports
 * no device and no KV budget. Linked against that variant alone (not slm_daemon, which holds
 * this build's real variant), so it runs in every build.
 */
#include <stdio.h>
#include <string.h>

#include "tests/check.h"
#include "daemon/engine/backends/backend.h"
#include "common/log.h"

int main(void)
{
    char err[SLM_ERR_LEN] = "";
    CHECK(slm_backend_cuda_devices(err) == 0, "devices: expected 0");
    CHECK(strstr(err, "built without the CUDA backend") != NULL, "devices: err '%s'", err);
    err[0] = 0;
    struct slm_backend *be = slm_backend_cuda_create(0, 0.9, err);
    CHECK(be == NULL, "create: expected NULL");
    CHECK(strstr(err, "built without the CUDA backend") && !strchr(err, '\n'), "create: err '%s'", err);
    CHECK(slm_backend_cuda_emulated() == 0, "emulated: expected 0");
    CHECK(slm_backend_cuda_kv_budget(NULL) == 0, "kv budget: expected 0");
    printf(failures ? "test_backend_none: %d failures\n" : "test_backend_none: ok\n", failures);
    return failures ? 1 : 0;
}
