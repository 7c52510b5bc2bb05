#!/usr/bin/env python3
"""tests/gpu_compare/make_samples.py - writes the sample outputs that tests/test_gpu_bench.sh feeds
to bench/gpu/compare-llama-cpp.sh --dry-run: llama-bench -o json (llama-bench.json) and its
markdown table (md/llama-bench.md), bench_engine --json, llama-batched-bench --output-format jsonl
and batched_bench --json, and slm-bench --json of the serving runs (llama-server.N.json,
slmd.N.json). Their layout follows the printers of llama.cpp as vendored by
llama-cpp-python 0.3.36 (tools/llama-bench/llama-bench.cpp: json_printer, markdown_printer;
tools/batched-bench/batched-bench.cpp) and of bench/bench_engine.c, bench/batched_bench.c and bench/slm-bench.c.
The figures are invented round numbers, chosen so that each ratio is exact: nothing here was
measured (no GPU has run these programs for this project yet). Run from this folder."""
import json
import os

FIELDS = ["build_commit", "build_number", "cpu_info", "gpu_info", "backends", "model_filename", "model_type",
          "model_size", "model_n_params", "n_batch", "n_ubatch", "n_threads", "cpu_mask", "cpu_strict", "poll",
          "type_k", "type_v", "n_gpu_layers", "n_cpu_moe", "split_mode", "main_gpu", "no_kv_offload", "flash_attn",
          "devices", "tensor_split", "tensor_buft_overrides", "load_mode", "lazy_mode", "embeddings",
          "no_op_offload", "no_host", "repack", "fit_target", "fit_min_ctx", "n_prompt", "n_gen", "n_depth",
          "test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts"]


def record(fa, n_prompt, n_gen, ts, sd, when):
    n = n_prompt or n_gen
    samples_ts = [ts - 2 * sd, ts - sd, ts, ts + sd, ts + 2 * sd]
    samples_ns = [int(n * 1e9 / x) for x in samples_ts]
    avg_ns = int(sum(samples_ns) / 5)
    sd_ns = int((sum((x - avg_ns) ** 2 for x in samples_ns) / 4) ** 0.5)
    v = dict(build_commit="0c1e570", build_number=1, cpu_info="Intel(R) Xeon(R) Platinum 8480+",
             gpu_info="NVIDIA H200", backends="CUDA",
             model_filename="/root/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf",
             model_type="llama 256M Q4_1", model_size=96576768, model_n_params=134515008, n_batch=2048,
             n_ubatch=512, n_threads=8, cpu_mask="0x0", cpu_strict=False, poll=50, type_k="f16", type_v="f16",
             n_gpu_layers=99, n_cpu_moe=0, split_mode="layer", main_gpu=0, no_kv_offload=False, flash_attn=fa,
             devices="auto", tensor_split="0.00", tensor_buft_overrides="none", load_mode="mmap", lazy_mode="off",
             embeddings=False, no_op_offload=0, no_host=False, repack=True, fit_target=1024, fit_min_ctx=4096,
             n_prompt=n_prompt, n_gen=n_gen, n_depth=0, test_time=when, avg_ns=avg_ns, stddev_ns=sd_ns,
             avg_ts=ts, stddev_ts=sd)
    assert list(v) == FIELDS
    return v, samples_ns, samples_ts


def value(x):
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return json.dumps(x)
    if isinstance(x, float):
        return f"{x:f}"
    return str(x)


# llama-bench -fa 0,1 -p 512 -n 128: per flash-attention setting, pp then tg
RECS = [record(0, 512, 0, 30000.0, 300.0, "2026-12-04T12:00:00Z"), record(0, 0, 128, 800.0, 8.0, "2026-12-04T12:00:01Z"),
        record(1, 512, 0, 40000.0, 400.0, "2026-12-04T12:00:02Z"), record(1, 0, 128, 900.0, 9.0, "2026-12-04T12:00:03Z")]

out = "[\n"
for i, (v, ns, ts) in enumerate(RECS):
    out += ",\n" if i else ""
    out += "  {\n" + "".join(f'    "{k}": {value(x)},\n' for k, x in v.items())
    out += f'    "samples_ns": [ {", ".join(str(x) for x in ns)} ],\n'
    out += f'    "samples_ts": [ {", ".join(f"{x:f}" for x in ts)} ]\n'
    out += "  }"
out += "\n]\n"
json.loads(out)
with open("llama-bench.json", "w") as f:
    f.write(out)

# the markdown table: model, size, params, backend, ngl (not a CPU backend), fa (not the default), test, t/s
rows = ["| model                          |       size |     params | backend    | ngl |  fa |            test |                  t/s |",
        "| ------------------------------ | ---------: | ---------: | ---------- | --: | --: | --------------: | -------------------: |"]
for v, _, _ in RECS:
    test = f"pp{v['n_prompt']}" if v["n_prompt"] else f"tg{v['n_gen']}"
    ts = f"{v['avg_ts']:.2f} ± {v['stddev_ts']:.2f}"
    rows.append(f"| {v['model_type']:<30} | {'92.10 MiB':>10} | {'134.52 M':>10} | {'CUDA':<10} | {99:>3} | "
                f"{v['flash_attn']:>3} | {test:>15} | {ts:>20} |")
os.makedirs("md", exist_ok=True)
with open("md/llama-bench.md", "w", encoding="utf-8") as f:
    f.write("\n".join(rows) + "\n\nbuild: 0c1e570 (1)\n")

with open("bench_engine.json", "w") as f:
    f.write('{"engine": "slmd", "backend": "cuda", "decode_weight_bytes": 91512832}\n'
            '{"engine": "slmd", "backend": "cuda", "test": "pp512", "threads": 2, "tokens_per_s": 10000.00, "sd": 100.00}\n'
            '{"engine": "slmd", "backend": "cuda", "test": "tg128", "threads": 2, "tokens_per_s": 450.00, "sd": 5.00}\n')

# B, llama.cpp S_TG and S_PP, slmd S_TG and S_PP
BATCHED = ((1, 500, 25000, 200, 8000), (16, 4000, 60000, 1600, 20000), (64, 10000, 80000, 2500, 30000),
           (256, 20000, 90000, 5000, 32000))
llama, slmd = "", ""
for pl, tg_l, pp_l, tg_s, pp_s in BATCHED:
    t_pp, t_tg = pl * 128 / pp_l, pl * 128 / tg_l
    llama += ('{"n_kv_max": 65536, "n_batch": 2048, "n_ubatch": 512, "flash_attn": -1, "is_pp_shared": 0, '
              '"n_gpu_layers": 99, "n_threads": 8, "n_threads_batch": 8, '
              f'"pp": 128, "tg": 128, "pl": {pl}, "n_kv": {pl * 256}, "t_pp": {t_pp:f}, "speed_pp": {pp_l:f}, '
              f'"t_tg": {t_tg:f}, "speed_tg": {tg_l:f}, "t": {t_pp + t_tg:f}, "speed": {2 * pl * 128 / (t_pp + t_tg):f}}}\n')
    t_pp, t_tg = pl * 128 / pp_s, pl * 128 / tg_s
    slmd += (f'{{"engine": "slmd", "threads": 2, "pp": 128, "tg": 128, "pl": {pl}, "t_pp": {t_pp:f}, '
             f'"speed_pp": {pp_s:f}, "t_tg": {t_tg:f}, "speed_tg": {tg_s:f}}}\n')
with open("llama-batched-bench.jsonl", "w") as f:
    f.write(llama)
with open("batched_bench.json", "w") as f:
    f.write(slmd)

# slm-bench --json of the serving runs (bench/slm-bench.c, bench/lib/report.c, bench/lib/target.c):
# one document per engine and client count, one run each (its figures also at the top level, as
# slm-bench writes a single load point). Clients, llama-server out tok/s, TTFT p50, p99, TPOT p50;
# then slmd's: invented, ratios exact; at 256 clients slmd's 16,000 tok/s is 4.45x 3,597 and its
# TTFT p99 400 ms (both targets met).
SERVING = ((1, 500, 10, 20, 2, 400, 8, 16, 2.5), (16, 4000, 40, 80, 4, 4800, 20, 40, 3.2),
           (64, 10000, 100, 200, 6, 12000, 50, 100, 5), (256, 16000, 400, 800, 16, 16000, 200, 400, 16))


def dist(n, p50, p99):
    return dict(n=n, mean=p50, p50=p50, p90=(p50 + p99) / 2, p99=p99, min=p50 / 2, max=p99 * 1.25)


def serving_doc(engine, clients, toks, ttft50, ttft99, tpot50):
    requests = max(2 * clients, 8)
    span = requests * 128 / toks
    run = dict(requests=requests, completed=requests, failed=0, span_s=span, requests_per_s=requests / span,
               output_tokens_per_s=float(toks), total_tokens_per_s=2.0 * toks, input_tokens=128 * requests,
               cached_tokens=0, output_tokens=128 * requests, good=requests, goodput_per_s=requests / span,
               ttft_ms=dist(requests, ttft50, ttft99), tpot_ms=dist(requests, tpot50, tpot50 * 1.5),
               itl_ms=dist(127 * requests, tpot50, tpot50 * 2), e2e_ms=dist(requests, ttft50 + 127 * tpot50,
                                                                             ttft99 + 127 * tpot50 * 1.5),
               concurrency=clients)
    if engine == "slmd":
        server = dict(engine="slmd", model="SmolLM2-135M-Instruct.Q4_1", arch="llama", backend="cuda", n_ctx=512,
                      n_vocab=49152, max_seqs=clients, max_batch_tokens=4096, kv_blocks=clients * 32, block_size=16)
        config = dict(target="slmd", socket="/tmp/slmd.sock")
    else:
        server = dict(engine="llama-server", model="/root/.cache/slmd/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                      build="b1-0c1e570", slots=clients, n_ctx_per_slot=512, n_vocab=49152, n_params=134515008)
        config = dict(target="llama-server", url="http://127.0.0.1:40000")
    config.update(mode="closed", concurrency=clients, requests=requests, duration_s=None, warmup=clients,
                  prompts="random", input_len=dict(lo=128, hi=128), output_len=dict(lo=128, hi=128), prefix_len=0,
                  prefix_count=0, seed=1, ignore_eos=True, temperature=0.0, timeout_s=600.0,
                  slo=dict(ttft_ms=500.0, tpot_ms=50.0, e2e_ms=0.0), sweep=[float(clients)])
    doc = dict(tool="slm-bench", label=engine, build=dict(slm_bench_git="sample", compiler="sample", libslm="static"),
               config=config, server=server, machine=dict(cpu="Intel(R) Xeon(R) Platinum 8480+", cpus_online=16),
               runs=[run])
    doc.update(run)
    return doc


for n, tl, fl50, fl99, pl, ts, fs50, fs99, ps in SERVING:
    for engine, args in (("llama-server", (tl, fl50, fl99, pl)), ("slmd", (ts, fs50, fs99, ps))):
        with open(f"{engine}.{n}.json", "w") as f:
            json.dump(serving_doc(engine, n, *args), f, indent=1)
            f.write("\n")
