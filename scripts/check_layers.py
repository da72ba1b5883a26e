#!/usr/bin/env python3
"""The "never" arrows of shared/DESIGN.md, checked on every #include "..." edge.

DESIGN.md draws the layers: tools -> include/edgelm.h -> engine -> quant, and
engine -> backends/backend.h <- backends/cpu, backends/vulkan -> quant. This
script holds that picture as a table (LAYERS below: for each layer, the
layers it may include) and fails on any edge the table does not allow, e.g.
an engine file including a backend's own header, a backend including engine
headers, or quant depending on anything in the project.

Usage: check_layers.py [ROOT]       check the tree (exit 1 on a violation)
       check_layers.py --self-test  check that forbidden edges are caught
"""
import os
import re
import sys

PUBLIC = "public"  # include/*.h
# A file's layer, from its path (first match wins).
CLASSIFY = [
    ("include/", PUBLIC),
    ("common/", "common"),
    ("quant/", "quant"),
    ("engine/", "engine"),
    ("backends/registry.c", "registry"),
    ("backends/cpu/", "cpu"),
    ("backends/vulkan/", "vulkan"),
    ("backends/", "interface"),  # backend.h, backend.c
    ("tools/", "tools"),
    ("bench/", "bench"),
    ("examples/", "examples"),
    ("tests/", "tests"),
    ("fuzz/", "tests"),
    ("bindings/", "bindings"),
]
# Headers a backend exposes to the registry and to op benchmarks (never its
# internals: vk_internal.h, ops_impl.h, ...).
BACKEND_FACADES = {"backends/vulkan/vk_backend.h"}
# Who may include whom. Headers generated at build time (SPIR-V tables,
# push-constant layouts) belong to the Vulkan backend.
LAYERS = {
    PUBLIC: {PUBLIC},
    "common": {"common", PUBLIC},
    "quant": {"quant"},
    "engine": {"engine", "common", "quant", "interface", PUBLIC},
    "interface": {"interface", "common", "quant", PUBLIC},
    "registry": {"interface", "common", PUBLIC, "facade"},
    "cpu": {"cpu", "interface", "common", "quant", PUBLIC},
    "vulkan": {"vulkan", "interface", "common", "quant", PUBLIC, "generated", "facade"},
    "tools": {"tools", "bench", PUBLIC},
    "bench": {"bench", "common", "quant", "interface", "facade", PUBLIC},
    "examples": {PUBLIC},
    "bindings": {PUBLIC},
    "tests": None,  # tests may reach anything they test
}
GENERATED = {"pc_layout.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def layer_of_file(rel):
    for prefix, layer in CLASSIFY:
        if rel == prefix or rel.startswith(prefix):
            return layer
    return None


def layer_of_target(inc, src_rel):
    if inc in BACKEND_FACADES:
        return "facade"
    if "/" not in inc:
        if inc.startswith("edgelm"):
            return PUBLIC
        if inc in GENERATED:
            return "generated"
        # a file beside the includer
        return layer_of_file(os.path.join(os.path.dirname(src_rel), inc))
    return layer_of_file(inc)


def violations(edges):
    """edges: (source path, included path) pairs, paths relative to the root."""
    out = []
    for src, inc in edges:
        s = layer_of_file(src)
        if s is None or LAYERS.get(s) is None:
            continue
        t = layer_of_target(inc, src)
        if t is None:
            out.append((src, inc, "an include outside every layer"))
        elif t != s and t not in LAYERS[s]:
            out.append((src, inc, f"{s} may not include {t}"))
    return out


def tree_edges(root):
    for top in ("include", "common", "quant", "engine", "backends", "tools", "bench", "examples"):
        for dirpath, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for inc in INCLUDE.findall(f.read()):
                        yield rel, inc


def self_test():
    bad = [
        ("engine/context.c", "backends/vulkan/vk_backend.h"),
        ("engine/devices.c", "backends/cpu/cpu_backend.h"),
        ("backends/vulkan/graph.c", "engine/internal.h"),
        ("backends/cpu/ops.c", "backends/vulkan/vk_internal.h"),
        ("quant/quant.c", "common/alloc.h"),
        ("tools/cmd_run.c", "engine/internal.h"),
        ("bench/bench_ops_vk.c", "backends/vulkan/vk_internal.h"),
        ("examples/ops_block.c", "backends/backend.h"),
        ("include/edgelm.h", "engine/internal.h"),
    ]
    good = [
        ("engine/context.c", "backends/backend.h"),
        ("backends/registry.c", "backends/vulkan/vk_backend.h"),
        ("backends/vulkan/graph.c", "vk_internal.h"),
        ("bench/bench_ops_vk.c", "backends/vulkan/vk_backend.h"),
        ("tests/test_vk_ops.c", "backends/vulkan/vk_internal.h"),
    ]
    missed = [e for e in bad if not violations([e])]
    false = [(e, violations([e])) for e in good if violations([e])]
    for e in missed:
        print(f"self-test: {e[0]} -> {e[1]} was not caught")
    for e, v in false:
        print(f"self-test: {e[0]} -> {e[1]} was refused: {v[0][2]}")
    return 1 if missed or false else 0


def main(argv):
    if len(argv) > 1 and argv[1] == "--self-test":
        rc = self_test()
        print("check_layers self-test:", "FAILED" if rc else "ok")
        return rc
    root = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    edges = list(tree_edges(root))
    bad = violations(edges)
    for src, inc, why in bad:
        print(f"{src}: #include \"{inc}\": {why} (shared/DESIGN.md, scripts/check_layers.py)")
    print(f"check_layers: {len(edges)} include edges, {len(bad)} forbidden")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
