/* daemon/engine/backends/select.c - see select.h. */
#include "daemon/engine/backends/select.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/engine/model.h"

struct slm_backend *slm_backend_select(const char *name, int threads, double gpu_fraction, char *err)
{
    char why[SLM_ERR_LEN] = "";
    if (!strcmp(name, "cuda")) {
        struct slm_backend *be = slm_backend_cuda_create(0, gpu_fraction, why);
        if (!be) slm_err_set(err, "backend cuda: %s", why);
        return be;
    }
    if (!strcmp(name, "auto")) {
        /* SLM_AUTO_EMULATOR=1: the tests' way to see auto pick a CUDA backend (and fall back
         * from it, slm_service_load) on a machine without a GPU; a real build ignores it. */
        const char *emu_ok = getenv("SLM_AUTO_EMULATOR");
        if (emu_ok && *emu_ok && strcmp(emu_ok, "0") && strcmp(emu_ok, "1")) {
            slm_err_set(err, "backend auto: SLM_AUTO_EMULATOR '%.40s': expected 0 or 1 (1: auto may pick the SIMT "
                        "emulator's device, for tests)", emu_ok);
            return NULL;
        }
        if (slm_backend_cuda_emulated() && !(emu_ok && !strcmp(emu_ok, "1")))
            slm_log(SLM_LOG_INFO, "backend auto: this slmd's CUDA backend is the SIMT emulator; using the CPU "
                    "(backend cuda selects the emulator)");
        else if (slm_backend_cuda_devices(why) > 0)
            return slm_backend_select("cuda", threads, gpu_fraction, err);
        else
            slm_log(SLM_LOG_INFO, "backend auto: %s; using the CPU backend", why);
    } else if (strcmp(name, "cpu")) {
        slm_err_set(err, "backend '%s' is not one of auto, cpu, cuda", name);
        return NULL;
    }
    return slm_backend_cpu_create(threads, err);
}

int slm_backend_select_bind(struct slm_model *m, const char *name, int threads, double gpu_fraction,
                            struct slm_backend **out, char *err)
{
    *out = NULL;
    struct slm_backend *be = slm_backend_select(name, threads, gpu_fraction, err);
    if (!be) return -ENODEV;
    int rc = slm_model_bind(m, be, err);
    if (rc && !strcmp(name, "auto") && strcmp(be->ops->name, "cpu")) {
        /* What Ollama and llama.cpp users expect of "auto": a model the GPU cannot hold (its
         * memory, a weight type or an attention geometry it has no kernel for) runs on the CPU. */
        slm_log(SLM_LOG_WARNING, "backend auto: %s; using the CPU backend", err);
        slm_backend_destroy(&be);
        if (!(be = slm_backend_cpu_create(threads, err))) return -ENODEV;
        rc = slm_model_bind(m, be, err);
    }
    if (rc) {
        slm_backend_destroy(&be);
        return rc;
    }
    *out = be;
    return 0;
}

uint64_t slm_backend_kv_limit(struct slm_backend *be)
{
    if (strcmp(be->ops->name, "cuda")) return UINT64_MAX;
    return slm_backend_cuda_kv_budget(be);
}
