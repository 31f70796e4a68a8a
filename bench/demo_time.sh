#!/usr/bin/env bash
# The demo's wall time, step by step: `make demo` on a fresh clone of this checkout's HEAD, in a temporary folder,
# every recipe line timed (make's SHELL is this script itself, called with -c). Prints one line a step and the total;
# appends the run to bench/results/demo_time.jsonl (date, commit, load, seconds per step, rc).
# Usage: bench/demo_time.sh            (run it alone: the budget is 10 minutes on 2 quiet cores)
set -uo pipefail
if [ "${1:-}" = "-c" ]; then  # a recipe line, run by make
  t0=$(date +%s.%N); /bin/bash "$@"; rc=$?; t1=$(date +%s.%N)
  printf '%s\t%.1f\t%s\t%s\n' "$rc" "$(echo "$t1 - $t0" | bc)" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$(echo "$2" | tr '\n\t' '  ' | sed 's/  */ /g' | cut -c1-120)" >> "$DEMO_STEPS"
  exit $rc
fi
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"; export DEMO_STEPS="$work/steps.tsv"
git clone -q "$here" "$work/clone" || exit 1
commit="$(git -C "$work/clone" rev-parse --short HEAD)"
load0="$(cut -d' ' -f1-3 /proc/loadavg)"; s=$(date +%s)
(cd "$work/clone" && make demo SHELL="$here/bench/demo_time.sh" > "$work/demo.log" 2>&1); rc=$?
total=$(( $(date +%s) - s )); load1="$(cut -d' ' -f1-3 /proc/loadavg)"
awk -F'\t' '{printf "%7.1f s  rc=%s  load=%s  %s\n", $2, $1, $3, $4}' "$DEMO_STEPS"
echo "make demo: rc=$rc, ${total} s, commit $commit, load before $load0, after $load1 (log: $work/demo.log)"
python3 - "$DEMO_STEPS" "$here/bench/results/demo_time.jsonl" "$commit" "$rc" "$total" "$load0" "$load1" <<'PY'
import datetime, json, sys
steps_file, out, commit, rc, total, load0, load1 = sys.argv[1:]
steps = [dict(zip(("rc", "seconds", "load", "command"), line.rstrip("\n").split("\t"))) for line in open(steps_file)]
for st in steps:
    st["rc"], st["seconds"], st["load"] = int(st["rc"]), float(st["seconds"]), float(st["load"])
row = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
       "rc": int(rc), "seconds": int(total), "load_before": load0, "load_after": load1, "steps": steps}
with open(out, "a") as f:
    f.write(json.dumps(row) + "\n")
print(f"appended to {out}")
PY
exit $rc
