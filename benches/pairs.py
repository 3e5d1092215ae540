#!/usr/bin/env python3
"""Alternated runs of two variants of a microgpt command, A B A B: the median of the pairs'
ratios of the `training time` lines, for the comparisons in docs/performance.md.

    python3 benches/pairs.py BINARY PAIRS COMMON... -- A... -- B...

e.g. `python3 benches/pairs.py target/release/microgpt 9 train --no-save --model small
--batch-size 1 --steps 100 -- --threads 1 -- --threads 2` runs `microgpt train … --threads 1`
and `… --threads 2` nine times each, in turn, and prints both medians and the median of B/A
with its range. A second binary for B: `B...` may start with `@PATH`.
"""
import re
import statistics
import subprocess
import sys

binary, pairs, rest = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
first = rest.index("--")
second = rest.index("--", first + 1)
common, a, b = rest[:first], rest[first + 1 : second], rest[second + 1 :]
binary_b = binary
if b and b[0].startswith("@"):
    binary_b, b = b[0][1:], b[1:]


def run(exe, extra):
    out = subprocess.run([exe, *common, *extra], capture_output=True, text=True, check=True).stdout
    m = re.search(r"training time: ([\d.]+) (ms|s)", out)
    return float(m.group(1)) * (1 if m.group(2) == "ms" else 1000)


ta, tb = [], []
for _ in range(pairs):
    ta.append(run(binary, a))
    tb.append(run(binary_b, b))
r = [y / x for x, y in zip(ta, tb)]
med = statistics.median
print(
    f"A {' '.join(a)}: {med(ta):.2f} ms | B {' '.join(b)}: {med(tb):.2f} ms | "
    f"B/A median {med(r):.3f} (range {min(r):.3f}-{max(r):.3f}, {pairs} pairs)"
)
# on a machine whose runs fall into a fast and a slow mode at random, the fastest run of each
# (interference only ever adds time) is the steadier estimate
print(f"fastest A {min(ta):.2f} ms | fastest B {min(tb):.2f} ms | B/A {min(tb) / min(ta):.3f}")
