#!/usr/bin/env python3
"""Lists import cycles between the modules of a crate: every `crate::a::b` path in a module's
source is an edge to the deepest module of that path that exists; a cycle is a strongly
connected group of two or more modules. Usage: .ci/module-cycles.py [server/src ...]
Exits 1 when a cycle exists (tests and `#[cfg(test)]` modules count too)."""
import os
import re
import sys

def modules(root):
    """module path (tuple) -> file."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)[:-3].split(os.sep)
            if rel[-1] in ('mod', 'lib', 'main'):
                rel = rel[:-1]
            found[tuple(rel)] = os.path.join(dirpath, f)
    return found

PATH = re.compile(r'\bcrate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)')
GROUP = re.compile(r'\bcrate::((?:[a-z_][a-z0-9_]*::)*)\{([^}]*)\}')

def edges(mods):
    out = {m: set() for m in mods}
    for m, path in mods.items():
        text = open(path, encoding='utf8').read()
        text = re.sub(r'//[^\n]*', '', text)
        refs = [p.split('::') for p in PATH.findall(text)]
        for prefix, inner in GROUP.findall(text):
            for item in inner.split(','):
                item = item.strip().split(' as ')[0].split('::{')[0]
                if item:
                    refs.append((prefix + item).split('::'))
        for parts in refs:
            for n in range(len(parts), 0, -1):
                target = tuple(parts[:n])
                if target in mods:
                    if target != m and not (m[:len(target)] == target):
                        out[m].add(target)
                    break
    return out

def cycles(graph):
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)
    def visit(v):
        index[v] = low[v] = counter[0]; counter[0] += 1
        stack.append(v); on.add(v)
        for w in graph[v]:
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
            if len(comp) > 1:
                comps.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    return comps

def main(roots):
    bad = 0
    for root in roots:
        mods = modules(root)
        graph = edges(mods)
        comps = cycles(graph)
        name = lambda m: '::'.join(m) or '(crate root)'
        print(f"{root}: {len(mods)} modules, {sum(len(e) for e in graph.values())} edges, {len(comps)} cycle groups")
        for comp in comps:
            bad += 1
            print('  cycle: ' + ' <-> '.join(name(m) for m in comp))
            for a in comp:
                for b in sorted(graph[a]):
                    if b in comp:
                        print(f"    {name(a)} -> {name(b)}")
    return 1 if bad else 0

if __name__ == '__main__':
    sys.exit(main(sys.argv[1:] or ['server/src']))
