#!/bin/bash
# The A/B study (docs/studies/ab-cpu.md): a throwaway repository with a model and commits that add 10% and
# 20% more work, a non-saved and a saved activation; plain runs for the cost, A/A comparisons for false
# alarms, then each commit against the base. Usage: tools/ab_study.sh [OUT_DIR] [A/A RUNS]
# Run it on a quiet machine: it takes about 35 minutes on a 2-core VM with 10 A/A runs.
set -u
OUT=$(realpath -m "${1:-/tmp/ab-study}")
RUNS=${2:-10}
G=${GRADBENCH:-gradbench}
GRID="--models model.py:make --sizes small --batch-sizes 64 256 --steps forward"
REPO="$OUT/repo"
rm -rf "$OUT" && mkdir -p "$REPO" && cd "$REPO"
git init -q && git config user.email study@example.com && git config user.name study
cat > model.py <<'PY'
"""Ten identical blocks; EXTRA more calls of the first at the start of forward add work (discarded)."""
import torch
from torch import nn

EXTRA = 0
TANH = False
SIN = False


class Net(nn.Module):
    def __init__(self, width=512, depth=10):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Dropout(0.1))
                                    for _ in range(depth))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        for _ in range(EXTRA):
            _discarded = self.blocks[0](x)
        for block in self.blocks:
            x = block(x)
        if TANH:
            x = torch.tanh(x)
        if SIN:
            x = torch.sin(x)
        return self.head(x)


def make(size="small"):
    torch.manual_seed(0)
    return Net(), lambda b: torch.randn(b, 512)
PY
git add model.py && git commit -qm base && git tag base
for change in "slow10|s/^EXTRA = 0/EXTRA = 1/" "slow20|s/^EXTRA = 0/EXTRA = 2/" "mem|s/^TANH = False/TANH = True/" \
              "saved|s/^SIN = False/SIN = True/"; do
  name=${change%%|*} edit=${change#*|}
  git checkout -q base && git checkout -q -b "$name" && sed -i "$edit" model.py && git commit -qam "$name" \
    || { echo "cannot make commit $name" >&2; exit 1; }
done
git checkout -q -B main base
cd "$REPO"
for i in 1 2; do /usr/bin/time -f "plain-$i %e s" $G run $GRID --out "$OUT/plain-$i.jsonl" --no-report >/dev/null 2>>"$OUT/times.txt"; done
for i in $(seq 1 "$RUNS"); do
  /usr/bin/time -f "aa-$i %e s" $G ab HEAD HEAD $GRID --out "$OUT/aa-$i.jsonl" --no-report > "$OUT/aa-$i.txt" 2>>"$OUT/times.txt"
done
for commit in slow10 slow20; do
  /usr/bin/time -f "$commit %e s" $G ab base $commit $GRID --out "$OUT/$commit.jsonl" --no-report > "$OUT/$commit.txt" 2>>"$OUT/times.txt"
done
for commit in mem saved; do
  for i in 1 2 3; do
    /usr/bin/time -f "$commit-$i %e s" $G ab base $commit $GRID --max-rounds 6 --out "$OUT/$commit-$i.jsonl" \
      --no-report > "$OUT/$commit-$i.txt" 2>>"$OUT/times.txt"
  done
done
grep -E '^[a-z0-9-]+ [0-9.]+ s$' "$OUT/times.txt"
python3 - "$OUT" <<'PY'
import collections, glob, json, os, sys
from gradbench.report.ab import verdict_rows
out = sys.argv[1]
for path in sorted(glob.glob(os.path.join(out, "*.jsonl"))):
    name = os.path.basename(path)[:-6]
    if name.startswith("plain"):
        continue
    rows = verdict_rows([json.loads(line) for line in open(path)])
    verdicts = collections.Counter(v.time.verdict for _, v, _ in rows)
    grew = collections.Counter(f"{m.metric} {m.difference:+,} B" for _, v, _ in rows for m in v.memory_grew)
    print(f"{name}: {dict(verdicts)}; memory grew: {dict(grew) or 'none'}")
PY
