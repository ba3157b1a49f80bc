#!/bin/bash
# Imagenette cells on a lent GPU machine, over calls to one warm machine (see benchmarks/gpu/README.md).
#
# Here, once:   bash benchmarks/gpu/imagenette.sh prepare      -> .imn/a (quarter 0) and .imn/b (quarters 1-3)
# Call 1:       carry [".whl", ".imn/a"]:  bash benchmarks/gpu/imagenette.sh stash
# Call 2..n:    carry [".whl", ".imn/b"] (later calls: [".whl"]), each sent within the machine's 30 warm seconds:
#               LIGHTLABEL_COMMIT=<hash> BUDGET=540 bash benchmarks/gpu/imagenette.sh cells "--ipc 10 --seeds 0 1 2" ...
#               A spec "select --ipc 10 --seed 0" runs select_validation.py on the same trajectory and set instead.
# Back here:    untar $OUT/imagenette.tgz into benchmarks/results/helio/imagenette (new cells only; results/select/*
#               into benchmarks/results/select), then --report.
#
# The archive (63 MiB) does not fit beside the repository in one call's 64 MiB, so it travels in quarters. Data,
# caches and finished cells live in /tmp/imn on the machine between calls; `cells` tars the cells into $OUT before
# and after its runs, so a call that runs out of time still returns what earlier calls finished.
set -u
ARCHIVE_NAME=imagenette-128.tar.gz
case "${1:-}" in
prepare)
  data=${LIGHTLABEL_DATA:-../shared/data}
  grep -qx '/.imn/' .git/info/exclude || echo /.imn/ >> .git/info/exclude
  rm -rf .imn && mkdir -p .imn/a .imn/b/data
  split -n 4 -d -a 1 "$data/$ARCHIVE_NAME" .imn/part
  mv .imn/part0 .imn/a/ && mv .imn/part1 .imn/part2 .imn/part3 .imn/b/
  cp "$data/README.md" "$data/clip-vit-b32-imagenet1k-text.safetensors" "$data/imagenet1k_wnids.txt" .imn/b/data/
  sha256sum "$data/$ARCHIVE_NAME" | cut -c1-64 > .imn/b/sha256
  du -sh .imn/a .imn/b ;;
stash)
  cp .imn/a/part0 /tmp/imn.part0 && ls -la /tmp/imn.part0 ;;
cells)
  shift
  source benchmarks/gpu/common.sh
  export LIGHTLABEL_DATA=/tmp/imn/data LIGHTLABEL_BENCH_CACHE=/tmp/imn/cache
  if [ ! -f /tmp/imn/data/$ARCHIVE_NAME ]; then
    mkdir -p /tmp/imn/data /tmp/imn/results && cp .imn/b/data/* /tmp/imn/data/ || exit 1
    cat /tmp/imn.part0 .imn/b/part1 .imn/b/part2 .imn/b/part3 > /tmp/imn/data/$ARCHIVE_NAME.part || exit 1
    echo "$(cat .imn/b/sha256)  /tmp/imn/data/$ARCHIVE_NAME.part" | sha256sum -c || exit 1
    mv /tmp/imn/data/$ARCHIVE_NAME.part /tmp/imn/data/$ARCHIVE_NAME
  fi
  rm -rf benchmarks/results/helio/imagenette && ln -s /tmp/imn/results benchmarks/results/helio/imagenette
  tar czf "$OUT/imagenette.tgz" -C /tmp/imn results
  cd benchmarks
  for spec in "$@"; do
    limit=$(cells_timeout) || { echo "== skipped: $spec (deadline)"; continue; }
    echo "== $spec ($(left) s left)"
    if [ "${spec%% *}" = select ]; then  # "select --ipc 10 --seed 0": ll.select_teachers' validation (issue 30)
      # shellcheck disable=SC2086
      timeout "$limit" python3 select_validation.py --dataset imagenette ${spec#select} --threads 8 --quiet 2>&1 \
        | grep -E "chose|Error|error" | tail -5
      mkdir -p /tmp/imn/results/select && cp results/select/imagenette-*.json /tmp/imn/results/select/ 2>/dev/null
      continue
    fi
    # shellcheck disable=SC2086  # $spec is a list of helio_table.py arguments
    timeout "$limit" python3 helio_table.py --dataset imagenette $spec --threads 8 --quiet 2>&1 \
      | grep -E "cell |Error|error|teacher epoch" | tail -40
  done
  cd ..
  python3 - <<'P'
import glob, hashlib, json, torch
out = {}
for p in sorted(glob.glob("/tmp/imn/cache/helio/imagenette/teachers-*/teacher-epoch*.pt")):
    d = torch.load(p, map_location="cpu", weights_only=False)
    out["/".join(p.split("/")[-2:])] = {"epoch": d["epoch"], "history": d["history"],
                                        "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
if out:
    json.dump(out, open("/tmp/imn/results/teacher-trajectory.json", "w"), indent=1)
P
  tar czf "$OUT/imagenette.tgz" -C /tmp/imn results
  echo "done in $(( $(date +%s) - START )) s" ;;
*)
  echo "usage: bash benchmarks/gpu/imagenette.sh prepare | stash | cells \"helio_table.py arguments\" ..." >&2; exit 2 ;;
esac
