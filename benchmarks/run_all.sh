#!/usr/bin/env bash
# All benchmarks of issues #3-#6, ours vs Siril 1.0.6, end to end; writes RESULTS.md.
#
#   bash benchmarks/run_all.sh            # nights of 20 and 40 lights, 3 repetitions
#   REPS=1 LIGHTS="20" bash benchmarks/run_all.sh   # a quick pass
#
# Environment: PYTHON (default: the venv's python), BENCH_DATA (default
# /work/bench-data: simulated nights and scratch, outside the repository; a night
# needs ~0.5 GB, scratch up to ~4 GB), REPS, LIGHTS, NAPARI_ASTRO (our CLI command).
# Needs siril-cli 1.0.x (apt-get install siril) and psutil in that Python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
PYTHON="${PYTHON:-$root/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)"
REPS="${REPS:-3}"
LIGHTS="${LIGHTS:-20 40}"
export BENCH_DATA="${BENCH_DATA:-/work/bench-data}"

command -v siril-cli >/dev/null || { echo "siril-cli not found: apt-get install siril" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "GNU time not found: apt-get install time" >&2; exit 2; }
"$PYTHON" -c "import psutil" 2>/dev/null || "$PYTHON" -m pip install -q psutil
echo "== $(date -Is)  $(siril-cli --version | tail -1)  load: $(cut -d' ' -f1-3 /proc/loadavg)"

# the nights (kept between runs; remade only if missing or different)
# shellcheck disable=SC2086
"$PYTHON" "$here/make_nights.py" $LIGHTS
rm -rf "$here/results"
first="${LIGHTS%% *}"

# issue #3 and #4: the 20-light night (as the issues ask)
"$PYTHON" "$here/bench_calibration.py" --lights "$first" --reps "$REPS"
"$PYTHON" "$here/bench_registration.py" --lights "$first" --reps "$REPS"
# issue #5: every night (memory must stay flat as frames grow)
# shellcheck disable=SC2086
"$PYTHON" "$here/bench_integration.py" --lights $LIGHTS --reps "$REPS"
# issue #6 (the headline): the whole run on every night
# shellcheck disable=SC2086
"$PYTHON" "$here/bench_stack.py" --lights $LIGHTS --reps "$REPS"

# issue #4 on real frames: the Seestar M94 sessions (skipped when the data are absent);
# last, so that report.py appends its results/seestar_registration.md to RESULTS.md
"$PYTHON" "$here/seestar_registration.py" --work "$BENCH_DATA/seestar-reg"

"$PYTHON" "$here/report.py"
echo "== done $(date -Is)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
