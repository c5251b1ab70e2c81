#!/usr/bin/env python3
"""Import cycles between the files of a crate (issue 11: "no import cycle between files
of different folders, parent/child module pairs aside").

    scripts/import-cycles.py jobs/src [pipelines/src ...]

Every `crate::a::b::…` path in a file (in `use` lines or inline) is resolved to the
deepest module file that exists (`a/b.rs`, `a/b/mod.rs`), `super::…` relative to the
file's module. Edges between a module and its own descendants or ancestors are left
out. Prints each strongly connected component of more than one file that spans more
than one folder; exits 1 if there is any.
"""
import os, re, sys


def module_of(root, path):
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def file_of(root, mod):
    for k in range(len(mod), -1, -1):
        base = os.path.join(root, *mod[:k]) if k else root
        for cand in ([base + ".rs", os.path.join(base, "mod.rs")] if k else [os.path.join(root, "lib.rs")]):
            if os.path.isfile(cand):
                return cand, mod[:k]
    return None, ()


def strip(src):
    src = re.sub(r'//[^\n]*', '', src)
    return re.sub(r'"(\\.|[^"\\])*"', '""', src)


def edges(root):
    files = []
    for d, _, fs in os.walk(root):
        files += [os.path.join(d, f) for f in fs if f.endswith(".rs")]
    out = {}
    for f in files:
        if os.sep + "tests" + os.sep in f or f.endswith(os.sep + "tests.rs"):
            continue
        me = module_of(root, f)
        src = strip(open(f).read())
        targets = set()
        paths = re.findall(r'\bcrate((?:::[a-z_][a-z0-9_]*)+)', src)
        for p in paths:
            mod = tuple(p.strip(':').split('::'))
            t, tmod = file_of(root, mod)
            if t:
                targets.add((t, tmod))
        for p in re.findall(r'\b((?:super::)+)((?:[a-z_][a-z0-9_]*::?)*)', src):
            ups = p[0].count('super')
            base = me[:len(me) - ups] if ups <= len(me) else ()
            rest = tuple(x for x in p[1].split('::') if x)
            t, tmod = file_of(root, base + rest)
            if t:
                targets.add((t, tmod))
        for child in re.findall(r'(?m)^\s*(?:pub(?:\([a-z]+\))? )?mod ([a-z_][a-z0-9_]*);', src):
            t, tmod = file_of(root, me + (child,))
            if t and tmod == me + (child,):
                targets.add((t, tmod))
        keep = set()
        for t, tmod in targets:
            if t == f:
                continue
            if me[:len(tmod)] == tmod:  # the file's own ancestor: the parent/child pair
                continue
            keep.add(t)
        out[f] = keep
    return out


def sccs(graph):
    index, low, stack, on, res, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            res.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return res


bad = 0
for root in sys.argv[1:]:
    g = edges(root)
    for comp in sccs(g):
        folders = {os.path.dirname(f) for f in comp}
        if len(comp) > 1 and len(folders) > 1:
            bad += 1
            print(f"cycle across folders ({len(comp)} files):")
            for f in sorted(comp):
                print("   ", os.path.relpath(f), "->", ", ".join(sorted(os.path.relpath(t) for t in g[f] if t in comp)))
if not bad:
    print("no import cycle between files of different folders")
sys.exit(1 if bad else 0)
