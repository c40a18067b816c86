#!/usr/bin/env python3
"""Where one thread's time inside one call goes, from a `perf record -g` profile.

    benches/scripts/perf-share.py PERF.DATA COMM ROOT SYMBOL[,SYMBOL...]

Takes the samples of thread COMM whose call chain holds ROOT (say `__sys_sendto`) and
prints, for each SYMBOL, the share of those samples with it anywhere in the chain
(inclusive, so shares of nested functions overlap). With `cpu-clock` sampling (no PMU in
a VM) time spent with interrupts off is charged where they are turned back on: a
wakeup shows up under `_raw_spin_unlock_irqrestore` in its caller.
"""

import subprocess
import sys


def samples(data, comm):
    out = subprocess.run(
        ["perf", "script", "-i", data, "--comm", comm, "-F", "comm,ip,sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for block in out.split("\n\n"):
        lines = block.strip().split("\n")[1:]
        yield {parts[1] for parts in (line.split() for line in lines) if len(parts) > 1}


def main():
    data, comm, root, symbols = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    inside = [s for s in samples(data, comm) if root in s]
    print(f"{comm}: {len(inside)} samples inside {root}")
    for sym in symbols:
        n = sum(1 for s in inside if sym in s)
        print(f"{sym:32s} {n:7d} {100 * n / max(len(inside), 1):5.1f}%")


if __name__ == "__main__":
    main()
