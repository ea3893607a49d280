#!/usr/bin/env bash
# All pre-processing benchmarks (issues #3-#6, 13), ours vs Siril 1.0.6, end to end;
# writes RESULTS.md (the other areas' sections in it are kept, see report.py).
#
#   bash benchmarks/run_all.sh            # nights of 20 and 40 lights, 3 repetitions
#   REPS=1 LIGHTS="20" bash benchmarks/run_all.sh   # a quick pass
#   PIP_VENV=/work/bench-data/venv-pip bash benchmarks/run_all.sh   # + first run after a
#                                         # plain `pip install` into that (new) venv
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
# only the pre-processing figures are remade: other areas' results/ files stay
mkdir -p "$here/results"
( cd "$here/results" && rm -f calibration_*.json registration_*.json integration_*.json \
    stack_*.json seestar_registration.* first_run.* distributed.* profile_seestar.* )
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

# issue 13: the real lights-only Seestar sessions, whole run, apart and together
"$PYTHON" "$here/bench_stack.py" --seestar --reps "$REPS"
# issue 13: first run after install (empty numba cache) vs warm, Seestar M94 session
"$PYTHON" "$here/bench_first_run.py" --reps "$REPS" --warm-up ${PIP_VENV:+--pip-venv "$PIP_VENV"}
# issue 13: stack on a Dask cluster of 1 and 2 local worker processes vs local
"$PYTHON" "$here/bench_distributed.py" --lights "$first" --reps "$REPS"
# issue 13: where a small session's time goes (cProfile of the Seestar M94 run)
"$PYTHON" "$here/profile_seestar.py"

# issue #4 on real frames: the Seestar M94 sessions (skipped when the data are absent)
"$PYTHON" "$here/seestar_registration.py" --work "$BENCH_DATA/seestar-reg"

"$PYTHON" "$here/report.py"
echo "== done $(date -Is)  load: $(cut -d' ' -f1-3 /proc/loadavg)"
