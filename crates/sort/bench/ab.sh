#!/usr/bin/env bash
# Interleaved before/after comparison of two triton binaries on one input:
# ROUNDS rounds of (cp, OLD sort, NEW sort), the output removed and `sync`
# before every command (untimed), so slow drifts of the machine (other
# engineers' load, page-cache state) hit all three alike. Prints the median
# wall and CPU seconds of each and the raw wall times.
# Write INPUT with `triton gensort` right before: a file read back from disk
# (this VM's DAMON pages idle page cache out) or copied with cp/cat is cached
# in small folios, and sorts it much more slowly (docs/BENCHMARKS.md).
# Usage: crates/sort/bench/ab.sh OLD_TRITON NEW_TRITON INPUT ROUNDS [sort args...]
# Example: crates/sort/bench/ab.sh /tmp/old/triton target/release/triton in1g 7
#          crates/sort/bench/ab.sh /tmp/old/triton target/release/triton in4g 3 --memory 1GB
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
OLD=$1 NEW=$2 INPUT=$3 ROUNDS=$4
shift 4
OUT=$(dirname "$INPUT")/ab.out
TIMES=$(mktemp)
trap 'rm -f "$OUT" "$TIMES"' EXIT
for _ in $(seq "$ROUNDS"); do
    for name in cp old new; do
        case $name in
            cp) cmd=(cp "$INPUT" "$OUT") ;;
            old) cmd=("$OLD" sort "$INPUT" "$OUT" "$@") ;;
            new) cmd=("$NEW" sort "$INPUT" "$OUT" "$@") ;;
        esac
        rm -f "$OUT"; sync
        /usr/bin/time -f "%e %U %S" -o "$TIMES" "${cmd[@]}" >/dev/null 2>&1
        echo "$name $(cat "$TIMES")"
    done
done | python3 -c "
import sys, statistics as st
d = {}
for line in sys.stdin:
    k, w, u, s = line.split()
    d.setdefault(k, []).append((float(w), float(u) + float(s)))
for k, v in d.items():
    print('%-4s median wall %.3f s, median CPU %.2f s; walls %s' % (k, st.median(x[0] for x in v), st.median(x[1] for x in v), ' '.join('%.2f' % x[0] for x in v)))
"
