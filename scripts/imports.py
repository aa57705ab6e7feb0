#!/usr/bin/env python3
"""Who uses whom in src/: the import graph between modules (top-level modules, and the
worker's own layers), its cycles, the imports that run back up the worker's layers, the
largest files, and the files one request crosses.

    scripts/imports.py            # summary
    scripts/imports.py --edges    # every edge with the files that make it

A module "uses" another when its code names a path into it (`use crate::x::..`,
`crate::x::y(..)`, `super::x`). Test code (tests.rs, testing.rs, the `mod tests` at a
file's end) is left out.
"""
import os
import re
import sys

SRC = os.environ.get("SRC") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# The worker's layers, top (what runs first) to bottom. A layer may use the ones below it;
# a use of one above it "runs back up". Modules not listed are support (leaves).
WORKER_LAYERS = [
    ["worker", "worker::gauges"],  # event loop (worker/mod.rs), the context, its gauges
    ["worker::session"],
    ["worker::exchange"],
    ["worker::filters", "worker::upstream"],
    ["worker::sinks"],
    ["worker::access_log", "worker::export"],
    ["worker::events"],
    ["worker::transport", "worker::buffer", "worker::timer", "worker::clock", "worker::token",
     "worker::record", "worker::route", "worker::env", "worker::output"],
]


def node_of(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel[0] in ("lib", "main") or rel[0] == "bin":
        return None
    if rel[0] == "worker" and len(rel) > 1:
        return "worker::" + rel[1]
    return rel[0]


def module_path(path):
    rel = os.path.relpath(path, SRC)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def strip_tests(text):
    m = re.search(r"\n#\[cfg\(test\)\]\nmod tests \{", text)
    return text[: m.start()] if m else text


def targets(path, text, nodes):
    """The nodes this file's code names."""
    me = module_path(path)
    found = set()
    for m in re.finditer(r"\bcrate::([a-z_]+)(?:::([a-z_]+))?", text):
        top, sub = m.group(1), m.group(2)
        if top == "worker" and sub and "worker::" + sub in nodes:
            found.add("worker::" + sub)
        elif top in nodes:
            found.add(top)
    for m in re.finditer(r"\b((?:super::)+)([a-z_]+)?", text):
        ups = m.group(1).count("super::")
        # `super` from a file `a/b.rs` is `a`; from `a/b/mod.rs` it is `a` too.
        base = me[: len(me) - ups]
        name = m.group(2)
        full = base + ([name] if name else [])
        if full and full[0] == "worker" and len(full) > 1 and "worker::" + full[1] in nodes:
            found.add("worker::" + full[1])
        elif full and full[0] == "worker":
            found.add("worker")
        elif full and full[0] in nodes:
            found.add(full[0])
    return found


def main():
    files = []
    for root, _, names in os.walk(SRC):
        for n in names:
            if n.endswith(".rs") and n not in ("tests.rs", "testing.rs"):
                files.append(os.path.join(root, n))
    nodes = {node_of(f) for f in files} - {None}
    edges = {}
    sizes = []
    for f in files:
        text = open(f, encoding="utf-8").read()
        sizes.append((text.count("\n"), os.path.relpath(f, SRC)))
        n = node_of(f)
        if n is None:
            continue
        for t in targets(f, strip_tests(text), nodes):
            if t != n:
                edges.setdefault((n, t), set()).add(os.path.relpath(f, SRC))
    # Cycles: strongly connected components of more than one node.
    graph = {}
    for (a, b) in edges:
        graph.setdefault(a, set()).add(b)
    index, low, stack, on, sccs = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    rank = {}
    for i, layer in enumerate(WORKER_LAYERS):
        for m in layer:
            rank[m] = i
    upward = sorted(
        (a, b) for (a, b) in edges if a in rank and b in rank and rank[b] < rank[a]
    )
    if "--edges" in sys.argv:
        for (a, b), fs in sorted(edges.items()):
            print(f"{a} -> {b}: {', '.join(sorted(fs))}")
        return
    print(f"{len(nodes)} modules, {len(edges)} edges")
    print(f"cycles: {len(sccs)}")
    for c in sccs:
        print("  " + " <-> ".join(c))
    print(f"imports running back up a worker layer: {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b} ({', '.join(sorted(edges[(a, b)]))})")
    sizes.sort(reverse=True)
    print("largest files: " + ", ".join(f"{p} {n}" for n, p in sizes[:5]))
    over = [p for n, p in sizes if n > 900]
    print(f"files over 900 lines: {len(over)} {over}")


if __name__ == "__main__":
    main()
