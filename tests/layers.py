#!/usr/bin/env python3
"""tests/layers.py - the include directions of docs/architecture.md ("Layers"), checked.

Reads every #include "..." of the project's sources (written from the repository root) and
fails when a file includes a layer above its own, includes a file that does not exist, or
when modules include each other in a loop. A module is a source file and its header (x.c and
x.h); a header without a source file of its own (an internal header, a header of macros or
inline functions) is seen through: its includes count as its includer's.
Usage: layers.py [ROOT]; exit 0 clean, 1 with one line per violation.
"""
import os
import re
import sys

# Layer of a path: the first prefix that matches. The layers each may include, itself among them.
LAYERS = [
    ("common/", "common"),
    ("ipc/", "ipc"),
    ("kernels/emu/", "kernels/emu"),
    ("kernels/cpu/", "kernels/cpu"),
    ("kernels/cuda/", "kernels/cuda"),
    ("kernels/", "kernels"),
    ("daemon/engine/", "engine"),
    ("daemon/", "daemon"),
    ("client/", "client"),
    ("gateway/", "gateway"),
    ("python/", "python"),
    ("bench/", "bench"),
    ("tests/", "tests"),
]
KERNELS = {"kernels", "kernels/cpu", "kernels/cuda", "kernels/emu"}
MAY = {
    "common": {"common"},
    "ipc": {"common", "ipc"},
    "kernels": {"common", "kernels"},
    "kernels/cpu": {"common", "kernels", "kernels/cpu"},
    # CUDA sources compiled by the host compiler take the SIMT emulator in place of CUDA.
    "kernels/cuda": {"common", "kernels", "kernels/cuda", "kernels/emu"},
    "kernels/emu": {"common", "kernels", "kernels/emu"},
    "engine": {"common"} | KERNELS | {"engine"},
    "daemon": {"common", "ipc", "daemon"} | KERNELS | {"engine"},
    "client": {"common", "ipc", "client"},
    "gateway": {"common", "client", "gateway"},
    "python": {"common", "client", "python"},
    "bench": {"common", "ipc", "daemon", "engine", "client", "bench"} | KERNELS,
    "tests": None,   # tests may include anything
}
SOURCE = (".c", ".h", ".cpp", ".cu", ".cuh")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer(path):
    for prefix, name in LAYERS:
        if path.startswith(prefix):
            return name
    return None


def sources(root):
    for top in sorted({p.split("/")[0] for p, _ in LAYERS}):
        for dirpath, dirnames, files in os.walk(os.path.join(root, top)):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(files):
                if f.endswith(SOURCE):
                    yield os.path.relpath(os.path.join(dirpath, f), root)


def module(path):
    return os.path.splitext(path)[0]


def loops(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def check(root):
    bad = []
    edges = {}
    for path in sources(root):
        lay = layer(path)
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            if not os.path.exists(os.path.join(root, inc)):
                bad.append(f"{path}:{line}: includes \"{inc}\", which is not a path from the repository root")
                continue
            to = layer(inc)
            allowed = MAY.get(lay)
            if allowed is not None and to not in allowed:
                bad.append(f"{path}:{line}: layer {lay} includes {inc} of layer {to} (allowed: {', '.join(sorted(allowed))})")
            if module(inc) != module(path):
                edges.setdefault(module(path), set()).add(module(inc))
    implemented = {module(p) for p in sources(root) if not p.endswith((".h", ".cuh"))}

    def targets(m, seen):
        for n in edges.get(m, ()):
            if n in seen:
                continue
            seen.add(n)
            if n in implemented:
                yield n
            else:
                yield from targets(n, seen)

    through = {m: {n for n in targets(m, {m}) if n != m} for m in edges if m in implemented}
    for comp in loops(through):
        bad.append("modules include each other in a loop: " + " -> ".join(comp))
    return bad


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = check(root)
    for b in bad:
        print(b)
    print(f"layers: {len(bad)} violation(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
