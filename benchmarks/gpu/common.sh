# Sourced by the scripts of benchmarks/gpu/ on a lent GPU machine: the call's deadline and the wheels it carries.
#   BUDGET   seconds this call may use (default 560); `left` prints what remains of them
#   cells_timeout   prints the seconds to give one helio_table.py run, or fails once less than a minute is left:
#                   `timeout 0` would mean no limit at all, so a passed deadline must skip the run, never reach it
START=$(date +%s); END=$((START + ${BUDGET:-560}))
left() { echo $(( END - $(date +%s) )); }
cells_timeout() { [ "$(left)" -gt 60 ] && echo $(( $(left) - 30 )); }
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
# the wheels of what the machine lacks (open_clip_torch, ftfy, wcwidth), installed once per warm machine
[ -f /tmp/site/open_clip/__init__.py ] || python3 -m pip install -q --no-index --no-deps --no-compile \
  --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
