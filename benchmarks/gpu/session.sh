#!/bin/bash
# One call on a lent GPU machine (see benchmarks/gpu/README.md): CUDA tests, the suite with CUDA present, the -cuda
# speed benchmarks, then grid cells until the deadline. Usage there:
#   LIGHTLABEL_COMMIT=<hash> BUDGET=560 bash benchmarks/gpu/session.sh [helio_table.py arguments ...]
source benchmarks/gpu/common.sh
export LIGHTLABEL_DATA=$PWD/.carry/shared/data LIGHTLABEL_BENCH_CACHE=$PWD/.carry/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== CUDA tests"; timeout 150 python3 -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py tests/test_augment_batched.py tests/test_fastpath.py tests/test_teacher_module.py 2>&1 | tee $OUT/test_cuda.log | tail -15
echo "== suite"; timeout 240 python3 -m pytest -q -n 8 -p no:cacheprovider --timeout 180 tests > $OUT/suite.log 2>&1; tail -25 $OUT/suite.log
cd benchmarks
for b in labels_per_second.py "train_step.py --configs rn50 --batch 100 256 --compile" "augment_speed.py"; do
  echo "== $b ($(left) s left)"; timeout 150 python3 $b 2>&1 | tail -8
done
if [ $# -gt 0 ] && limit=$(cells_timeout); then
  echo "== cells ($(left) s left)"; timeout "$limit" python3 helio_table.py "$@" --quiet 2>&1 | grep -E "cell |Error" | tail -40
fi
cd ..
cp docs/results.md $OUT/results.md
NEW=$(LC_ALL=C comm -13 .carry/cache.lst <(cd .carry && find cache -mindepth 3 -maxdepth 3 | LC_ALL=C sort) | grep -v -e student-states -e '/data/' -e '\.work$' | sed 's|^|.carry/|')
tar czf $OUT/back.tgz benchmarks/results docs/*.png $NEW
echo "done in $(( $(date +%s) - START )) s"
