#!/bin/bash
# One call on a lent GPU machine (see benchmarks/gpu/README.md; prepare it here with prepare.sh): the CUDA tests, the
# -cuda speed benchmarks, grid cells until the deadline, then (if time is left) augment_speed.py and the suite.
# Every stage's output goes to $OUT as it runs, and the results are tarred into $OUT after each stage, so a call cut
# off at its limit still returns what finished. Usage there:
#   LIGHTLABEL_COMMIT=<hash> BUDGET=540 bash benchmarks/gpu/session.sh ["helio_table.py arguments" ...]
# Each quoted argument is one helio_table.py run, in order, e.g.
#   "--dataset cifar10 --ipc 10 --seeds 0 1 2 --rows projector_full --workers 8 --threads 8 --quiet"
# STAGES (default "tests bench cells extra") picks the stages, e.g. STAGES="cells" for a call of grid cells alone:
#   tests  the CUDA tests;  bench  labels_per_second.py and train_step.py --compile (about 5 minutes);
#   cells  the helio_table.py runs given;  extra  augment_speed.py and the suite, if time is left
STAGES=" ${STAGES:-tests bench cells extra} "
want() { [[ "$STAGES" == *" $1 "* ]]; }
source benchmarks/gpu/common.sh
export LIGHTLABEL_DATA=$PWD/.carry/shared/data LIGHTLABEL_BENCH_CACHE=$PWD/.carry/cache
mkdir -p .carry/cache && touch .carry/cache.lst
save() {  # the cells, the results page, the charts and the new cache entries (not the students' resume states)
  local new
  new=$(LC_ALL=C comm -13 .carry/cache.lst <(cd .carry && find cache -mindepth 3 -maxdepth 3 | LC_ALL=C sort) \
        | grep -v -e student-states -e '/data/' -e '\.work$' | sed 's|^|.carry/|')
  cp docs/results.md "$OUT/results.md"
  # shellcheck disable=SC2086
  tar czf "$OUT/back.tgz" benchmarks/results docs/*.png $new 2>/dev/null
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
if want tests; then
  echo "== CUDA tests"
  timeout 120 python3 -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_augment_batched.py \
    tests/test_fastpath.py tests/test_teacher_module.py > "$OUT/test_cuda.log" 2>&1
  tail -25 "$OUT/test_cuda.log"
fi
cd benchmarks
if want bench; then
  echo "== labels_per_second.py ($(left) s left)"
  timeout 100 python3 labels_per_second.py --configs rn50 --batch 100 256 2>&1 | tee "$OUT/labels_per_second.log" \
    | tail -12
  echo "== train_step.py ($(left) s left)"
  timeout 260 python3 train_step.py --configs rn50 --batch 100 256 --compile --patches-per-side 2 2>&1 | tee "$OUT/train_step.log" | tail -20
  cd .. && save && cd benchmarks
fi
want cells || set --
for spec in "$@"; do
  limit=$(cells_timeout) || { echo "== skipped: $spec (deadline)"; continue; }
  echo "== cells: $spec ($(left) s left)"
  # shellcheck disable=SC2086
  timeout "$limit" python3 helio_table.py $spec 2>&1 | tee -a "$OUT/cells.log" | grep -E "cell |Error|fit" | tail -20
  cd .. && save && cd benchmarks
done
if want extra && [ "$(left)" -gt 120 ]; then
  echo "== augment_speed.py ($(left) s left)"
  timeout 60 python3 augment_speed.py --device cuda 2>&1 | tee "$OUT/augment_speed.log" | tail -8
fi
cd ..
if want extra && [ "$(left)" -gt 150 ]; then
  echo "== suite ($(left) s left)"
  timeout $(( $(left) - 30 )) python3 -m pytest -q -n 8 -p no:cacheprovider tests > "$OUT/suite.log" 2>&1
  tail -15 "$OUT/suite.log"
fi
save
echo "done in $(( $(date +%s) - START )) s"
