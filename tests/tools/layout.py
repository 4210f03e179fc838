#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks the shape of engine/ that issue 22 set down.

  layout.py SRC_DIR OBJ_DIR [--report]

- The call graph between modules has no cycle through more than two
  modules. A module is a file name's part before its first '_'
  (bridge_sub.c is the bridge module, conn_send.c the conn module). An edge
  A -> B means an object of A references a symbol an object of B defines
  (nm on OBJ_DIR/*.o): calls through a function pointer are not edges,
  which is the point of a callback table.
- No engine file over 900 lines; no function over 120 lines.
- The broker's choices stay in the broker and bridge files: no
  `->bridge` test of "is there a Redis" and no `redis_cluster` test
  outside broker*, bridge*, cluster* and the option parsing.

Prints each breach and exits 1 if there is one; --report also prints the
module graph's edges and its mutual pairs.
"""
import collections
import glob
import os
import re
import subprocess
import sys

MAX_FILE = 900
MAX_FUNC = 120
# Files where "which broker" may be asked: they implement the choice.
BROKER_FILES = re.compile(r"^(broker|bridge|cluster|main|opts)")
# The rest of engine/ reaches Redis only through broker.h.
BRIDGE_TEST = re.compile(r"->eng->bridge\b|\be->bridge\b|\beng->bridge\b|redis_cluster\b")


def module_of(path):
    base = os.path.basename(path)
    base = re.sub(r"^engine_", "", base)          # meson's object prefix
    base = base.split(".")[0]
    return base.split("_")[0]


def graph(obj_dir):
    defs, uses = {}, collections.defaultdict(set)
    for o in sorted(glob.glob(os.path.join(obj_dir, "*.o"))):
        m = module_of(o)
        if m.startswith("meson-generated"):
            continue
        out = subprocess.run(["nm", o], capture_output=True, text=True,
                             check=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDBRV":
                defs[f[2]] = m
            elif len(f) == 2 and f[0] == "U":
                uses[m].add(f[1])
    g = collections.defaultdict(set)
    why = {}
    for m, syms in uses.items():
        for s in sorted(syms):
            d = defs.get(s)
            if d and d != m:
                g[m].add(d)
                why.setdefault((m, d), s)
    return g, why


def sccs(g):
    """Tarjan's strongly connected components, iterative."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = 0
    nodes = set(g) | {w for v in g for w in g[v]}
    for root in sorted(nodes):
        if root in index:
            continue
        work = [(root, iter(sorted(g.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter
                counter += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(g.get(w, ())))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def functions(path):
    """(name, lines) of each top-level function body in a C file."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, head, start = [], None, None
    for i, line in enumerate(lines):
        if start is None:
            if re.match(r"^[A-Za-z_].*\(", line) and not line.rstrip().endswith(";"):
                head = line
            elif line.startswith("{") and head:
                start = i
        elif line.startswith("}"):
            name = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", head)
            out.append((name.group(1) if name else head, i - start - 1))
            start, head = None, None
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    src, obj = sys.argv[1], sys.argv[2]
    report = "--report" in sys.argv[3:]
    bad = []
    g, why = graph(obj)
    for comp in sccs(g):
        if len(comp) > 2:
            inside = [f"{a}->{b} ({why[(a, b)]})" for a in comp
                      for b in sorted(g[a]) if b in comp]
            bad.append(f"call cycle through {len(comp)} modules "
                       f"{' '.join(comp)}: " + ", ".join(inside))
    for path in sorted(glob.glob(os.path.join(src, "*.[ch]"))):
        name = os.path.basename(path)
        n = sum(1 for _ in open(path, encoding="utf-8"))
        if n > MAX_FILE:
            bad.append(f"{name}: {n} lines (at most {MAX_FILE})")
        if name.endswith(".c"):
            for fn, k in functions(path):
                if k > MAX_FUNC:
                    bad.append(f"{name}: {fn}() {k} lines (at most {MAX_FUNC})")
        if name.endswith(".c") and not BROKER_FILES.match(name):
            for i, line in enumerate(open(path, encoding="utf-8"), 1):
                if BRIDGE_TEST.search(line):
                    bad.append(f"{name}:{i}: broker choice outside broker "
                               f"files: {line.strip()}")
    if report:
        for a in sorted(g):
            print(f"{a} -> {' '.join(sorted(g[a]))}")
        pairs = sorted((a, b) for a in g for b in g[a] if a < b and a in g.get(b, ()))
        print(f"mutual pairs: {len(pairs)} " +
              " ".join(f"{a}<->{b}" for a, b in pairs))
    for b in bad:
        print("layout:", b)
    print(f"layout: {len(bad)} breaches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
