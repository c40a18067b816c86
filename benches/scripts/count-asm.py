#!/usr/bin/env python3
"""Own costs from a callgrind dump written with --dump-instr=yes (THRONG_COUNT_DUMP_INSTR=1).

  count-asm.py DUMP 'FUNCTION REGEX' MESSAGES BINARY   machine code of the matching
                                                      function, instructions per message
  count-asm.py DUMP --functions MESSAGES              own cost per function, per message

MESSAGES is the "echoes counted" figure `throng-bench count` prints for that dump.
"""
import collections
import re
import subprocess
import sys


def own_costs(path):
    """(cost per (function, address), names): self cost only; a call's inclusive cost
    (the line after `calls=`) is left out."""
    cost = collections.Counter()
    names = {}
    fn = None
    addr = line = 0
    skip = False

    def pos(tok, prev):
        if tok == '*':
            return prev
        if tok[0] in '+-':
            return prev + int(tok, 0)
        return int(tok, 0)

    for raw in open(path):
        l = raw.rstrip('\n')
        if not l:
            continue
        m = re.match(r'(c?fn)=\((\d+)\)(?: (.*))?$', l)
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            if m.group(1) == 'fn':
                fn = names.get(m.group(2))
            continue
        if l.startswith('calls='):
            skip = True
            continue
        if l[0] in '0123456789+-*':
            parts = l.split()
            addr = pos(parts[0], addr)
            if len(parts) >= 2:
                line = pos(parts[1], line)
            if skip:
                skip = False
                continue
            if fn and len(parts) >= 3:
                cost[(fn, addr)] += int(parts[2])
    return cost


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    cost = own_costs(sys.argv[1])
    if sys.argv[2] == '--functions':
        msgs = float(sys.argv[3])
        per_fn = collections.Counter()
        for (fn, _), c in cost.items():
            per_fn[fn] += c
        for fn, c in per_fn.most_common(30):
            print(f'{c / msgs:8.1f}  {fn}')
        return
    pattern, msgs, binary = re.compile(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    mine = {a: c for (fn, a), c in cost.items() if pattern.search(fn)}
    if not mine:
        sys.exit('no such function in the dump (was it written with --dump-instr=yes?)')
    lo, hi = min(mine), max(mine)
    print(f'own cost {sum(mine.values()) / msgs:.1f} per message, {lo:#x}..{hi:#x}')
    out = subprocess.run(['objdump', '-d', '--no-show-raw-insn', '-C', '-l',
                          f'--start-address={lo:#x}', f'--stop-address={hi + 16:#x}', binary],
                         capture_output=True, text=True, check=True).stdout
    source = None
    for l in out.splitlines():
        m = re.match(r'\s*([0-9a-f]+):\s', l)
        if m:
            c = mine.get(int(m.group(1), 16), 0) / msgs
            if c >= 0.05:
                if source:
                    print(f'        {source}')
                    source = None
                print(f'{c:6.2f}  {l.strip()}')
        elif l.startswith('/'):
            source = l


if __name__ == '__main__':
    main()
