#!/bin/bash
# Here, before a session.sh call (see benchmarks/gpu/README.md): what the GPU machine lacks, into two git-ignored
# folders the call carries ("carry": [".carry", ".whl"]).
#   .whl     wheels of open_clip_torch and what it needs beyond the machine's packages (skipped with NO_WHEELS=1)
#   .carry   shared/data (CIFAR-10's archives, README, the CLIP text file, the wnids), shared/models, the CIFAR-10
#            distilled sets of the benchmark cache (so the GPU cells train on the images of the committed CPU cells)
#            and its adapter fits, finished or not (a fit begun here finishes there),
#            and cache.lst, the cache entries sent (session.sh returns only the new ones)
# Usage, from the repository root:  bash benchmarks/gpu/prepare.sh
# Reads $LIGHTLABEL_DATA (default ../shared/data; its models beside it in ../models) and $LIGHTLABEL_BENCH_CACHE
# (default benchmarks/.cache).
set -euo pipefail
data=${LIGHTLABEL_DATA:-../shared/data}
cache=${LIGHTLABEL_BENCH_CACHE:-benchmarks/.cache}
[ -d "$data/cifar10" ] || { echo "no $data/cifar10: set LIGHTLABEL_DATA to the shared data folder" >&2; exit 2; }
mkdir -p .git/info && touch .git/info/exclude
for d in /.whl/ /.carry/; do grep -qx "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
if [ -z "${NO_WHEELS:-}" ]; then
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4
fi
rm -rf .carry && mkdir -p .carry/shared/data .carry/shared/models .carry/cache/helio/cifar10
cp -r "$data/cifar10" "$data/README.md" "$data/clip-vit-b32-imagenet1k-text.safetensors" "$data/imagenet1k_wnids.txt" \
  .carry/shared/data/
cp "$data/../models/"* .carry/shared/models/
for d in "$cache"/helio/cifar10/distilled-*; do
  [ -d "$d" ] && [ "${d%.work}" = "$d" ] && cp -r "$d" .carry/cache/helio/cifar10/
done
# the adapter fits (about 1 MB each): a finished one is reused there, an unfinished one resumes from its last epoch
# (a fit's resume settings name no device); their folders go back only if they are new
for d in "$cache"/helio/cifar10/fit-*; do
  [ -f "$d/fit-state.pt" ] && cp -r "$d" .carry/cache/helio/cifar10/
done
(cd .carry && find cache -mindepth 3 -maxdepth 3 | LC_ALL=C sort) > .carry/cache.lst
echo "distilled sets carried: $(grep -c distilled- .carry/cache.lst || true), fits: $(grep -c fit- .carry/cache.lst || true)"
du -sh .carry $( [ -d .whl ] && echo .whl )
