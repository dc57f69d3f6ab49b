#!/usr/bin/env python3
"""The import graph of src/ must have no cycle: imports run one way, from app.rs down through
the stages to the plain types (README, "Development and tests").

One node per file; an edge for each `crate::…`, `super::…` or `self::…` path a file names
outside its unit tests, resolved to the deepest file that exists. Prints each cycle (its
files, and which of them import which) and exits 1 if there is one.

    python3 .ci/import_graph.py [src]
"""
import os, re, sys
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
files = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.rs'):
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)[:-3]
            parts = rel.split(os.sep)
            if parts[-1] == 'mod': parts = parts[:-1]
            if parts == ['lib'] or parts == ['main']: parts = [parts[0]]
            files['::'.join(parts)] = p
def resolve(path):
    segs = path.split('::')
    for i in range(len(segs), 0, -1):
        m = '::'.join(segs[:i])
        if m in files: return m
    return None
def expand(text):
    # crate::a::{b, c::d} -> crate::a::b, crate::a::c::d (one level of braces is enough here)
    out = []
    for m in re.finditer(r'crate::([A-Za-z0-9_:]*?)(?:::)?\{([^{}]*)\}', text):
        for item in m.group(2).split(','):
            item = item.strip().split(' as ')[0]
            if item: out.append(m.group(1) + '::' + item if m.group(1) else item)
    for m in re.finditer(r'crate::([A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*)', text):
        out.append(m.group(1))
    return out
def super_paths(mod, text):
    out = []
    base = mod.split('::') if mod not in ('lib', 'main') else []
    for m in re.finditer(r'(?<![A-Za-z0-9_:])super::([A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*)', text):
        out.append('::'.join(base[:-1] + [m.group(1)]))
    for m in re.finditer(r'(?<![A-Za-z0-9_:])self::([A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)*)', text):
        out.append('::'.join(base + [m.group(1)]))
    return out
graph = {}
for mod, p in files.items():
    text = open(p).read()
    text = text.split('#[cfg(test)]')[0]  # unit tests may reach anywhere
    text = re.sub(r'//.*', '', text)
    deps = set()
    for path in expand(text) + super_paths(mod, text):
        r = resolve(path)
        if r and r != mod and r not in ('lib',):
            deps.add(r)
    graph[mod] = deps
# Tarjan SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
sys.setrecursionlimit(10000)
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in graph[v]:
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        if len(c) > 1: sccs.append(sorted(c))
for v in graph:
    if v not in index: strong(v)
for c in sccs:
    print('cycle:', ' <-> '.join(c))
    for a in c:
        print('   ', a, '->', sorted(d for d in graph[a] if d in c))
print(f'{len(graph)} files, {sum(len(d) for d in graph.values())} imports, {len(sccs)} cycles')
sys.exit(1 if sccs else 0)
