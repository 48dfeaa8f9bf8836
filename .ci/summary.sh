#!/usr/bin/env bash
# Adds up the cargo test and node test results into one closing line: "N passed, N failed".
set -euo pipefail
passed=0; failed=0; skipped=0
for log in "$@"; do
  [ -f "$log" ] || continue
  while read -r p f i; do
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + i))
  done < <(sed -n 's/^test result: [a-zA-Z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' "$log")
  p=$(sed -n 's/^ℹ pass \([0-9]*\)$/\1/p; s/^# pass \([0-9]*\)$/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^ℹ fail \([0-9]*\)$/\1/p; s/^# fail \([0-9]*\)$/\1/p' "$log" | tail -1)
  s=$(sed -n 's/^ℹ skipped \([0-9]*\)$/\1/p; s/^# skip \([0-9]*\)$/\1/p' "$log" | tail -1)
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
done
echo
echo "keyward: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
