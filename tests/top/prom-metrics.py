#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Read a Prometheus text exposition (version 0.0.4) for the top tests.

  prom-metrics.py check FILE
      what promtool does not check: each family's HELP and TYPE come once,
      before its samples, which are contiguous; no series repeats; every
      histogram's buckets are cumulative and its +Inf bucket equals _count.
  prom-metrics.py value FILE NAME [LABEL=VALUE | LABEL~SUFFIX]...
      print the value of the one series of NAME whose labels match (~: the
      label value ends with SUFFIX); fail unless exactly one matches.
Exit 0, or 1 with the reason on stderr."""
import re
import sys

LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
UNESCAPE = {'\\\\': '\\', '\\"': '"', '\\n': '\n'}


def fail(msg):
    print(f'prom-metrics: {msg}', file=sys.stderr)
    sys.exit(1)


def parse_labels(text, lineno):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            fail(f'line {lineno}: bad labels: {text[pos:]!r}')
        value = re.sub(r'\\.', lambda e: UNESCAPE.get(e.group(0), '?'), m.group(2))
        if m.group(1) in labels:
            fail(f'line {lineno}: label {m.group(1)} twice')
        labels[m.group(1)] = value
        pos = m.end()
    return labels


def parse(path):
    """[(name, labels, value, lineno)] and {family: type}."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    samples, types, helps, order = [], {}, set(), []
    for n, line in enumerate(lines, 1):
        if line.startswith('# HELP '):
            name = line.split(' ')[2]
            if name in helps:
                fail(f'line {n}: HELP for {name} again')
            helps.add(name)
        elif line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ')
            if name in types:
                fail(f'line {n}: TYPE for {name} again')
            types[name] = typ
            order.append(name)
        elif line.startswith('#'):
            continue
        else:
            m = LINE.match(line)
            if not m:
                fail(f'line {n}: not a sample: {line!r}')
            samples.append((m.group(1), parse_labels(m.group(2) or '', n), float(m.group(3)), n))
    return samples, types, helps, order


def family_of(name, types):
    if name in types:
        return name
    for suffix in ('_bucket', '_sum', '_count'):
        base = name[:-len(suffix)]
        if name.endswith(suffix) and types.get(base) == 'histogram':
            return base
    return None


def check(path):
    samples, types, helps, order = parse(path)
    seen, last_family, done = set(), None, set()
    hist = {}
    for name, labels, value, n in samples:
        fam = family_of(name, types)
        if fam is None or fam not in helps:
            fail(f'line {n}: {name} has no TYPE and HELP before it')
        if fam != last_family:
            if fam in done:
                fail(f'line {n}: samples of {fam} are not together')
            if last_family:
                done.add(last_family)
            last_family = fam
        key = (name, tuple(sorted(labels.items())))
        if key in seen:
            fail(f'line {n}: series repeated: {name}{labels}')
        seen.add(key)
        if types[fam] == 'histogram':
            series = tuple(sorted((k, v) for k, v in labels.items() if k != 'le'))
            h = hist.setdefault((fam, series), {'buckets': [], 'count': None})
            if name.endswith('_bucket'):
                le = labels.get('le')
                if le is None:
                    fail(f'line {n}: bucket without le')
                h['buckets'].append((float(le), value, n))
            elif name.endswith('_count'):
                h['count'] = value
    for (fam, series), h in hist.items():
        b = h['buckets']
        if not b or b[-1][0] != float('inf'):
            fail(f'{fam}{dict(series)}: no +Inf bucket last')
        for (le0, v0, _), (le1, v1, n) in zip(b, b[1:]):
            if not (le1 > le0 and v1 >= v0):
                fail(f'line {n}: {fam} buckets not increasing and cumulative')
        if h['count'] != b[-1][1]:
            fail(f'{fam}{dict(series)}: _count {h["count"]} != +Inf bucket {b[-1][1]}')


def select(path, name, conds):
    samples, _, _, _ = parse(path)
    want = []
    for c in conds:
        m = re.match(r'^([a-zA-Z_]\w*)([=~])(.*)$', c, re.S)
        if not m:
            fail(f'bad selector {c!r}')
        want.append(m.groups())
    found = []
    for sname, labels, value, _ in samples:
        if sname != name:
            continue
        ok = all(k in labels and (labels[k] == v if op == '=' else labels[k].endswith(v))
                 for k, op, v in want)
        if ok:
            found.append(value)
    if len(found) != 1:
        fail(f'{len(found)} series of {name} match {conds}')
    return found[0]


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == 'check':
        check(sys.argv[2])
    elif len(sys.argv) >= 4 and sys.argv[1] == 'value':
        value = select(sys.argv[2], sys.argv[3], sys.argv[4:])
        print(int(value) if value == int(value) else value)
    else:
        fail(__doc__)


main()
