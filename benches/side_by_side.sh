#!/usr/bin/env bash
# genmodels (flex) and PyTorch on the CPU, case by case and in turns: on a shared or throttled
# machine the speed drifts by tens of percent over minutes, so each case is measured on both
# sides back to back, `ROUNDS` times, and the table keeps the median of each side's medians.
#
#   PYTHON=/path/to/venv/bin/python benches/side_by_side.sh [CASE ...]
#
# A case is `model:workload:batch` as `benches/training.rs --case` and
# `benches/pytorch_reference.py --cases` read it (default: the training iterations at batch 128,
# generation, and DDIM-50 sampling of 64 images). Environment: PYTHON (with torch), ROUNDS (2),
# RUNS (5), WARMUP (2), MAX_SECONDS (60: fewer runs once a side has timed that long), SAMPLING_STEPS (5: our DDIM rows time 5 reverse steps and scale them to
# 50; PyTorch runs all 50). Prints a Markdown table; writes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
rounds=${ROUNDS:-2}
runs=${RUNS:-5}
warmup=${WARMUP:-2}
max_seconds=${MAX_SECONDS:-60}
sampling_steps=${SAMPLING_STEPS:-5}
cases=("$@")
if [ ${#cases[@]} -eq 0 ]; then
    cases=(dcgan:train:128 dcgan:generate:128 vae:train:128 vae:generate:128
        unet-small:train:128 unet-small:ddim50:64 unet-full:train:128 unet-full:ddim50:64)
fi

bench=$(cargo bench --profile dev --bench training --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "training" and m.get("executable"):
        print(m["executable"])')

median() { python3 -c 'import statistics, sys; print(statistics.median(float(v) for v in sys.argv[1:]))' "$@"; }
field() { python3 -c 'import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), nproc $(nproc); $rounds rounds, median of $runs runs after $warmup"
echo
echo "| case | genmodels (flex) s | PyTorch CPU s | genmodels / PyTorch speed |"
echo "|---|---:|---:|---:|"
for case in "${cases[@]}"; do
    ours=()
    theirs=()
    for _ in $(seq "$rounds"); do
        ours+=("$("$bench" --case "flex:$case" --runs "$runs" --warmup "$warmup" --max-seconds "$max_seconds" \
            --max-sampling-steps "$sampling_steps" | field median_s)")
        theirs+=("$("$python" benches/pytorch_reference.py --cases "$case" --runs "$runs" \
            --warmup "$warmup" --max-seconds "$max_seconds" | field median_s)")
    done
    a=$(median "${ours[@]}")
    b=$(median "${theirs[@]}")
    printf '| %s | %.4f | %.4f | %.2fx |\n' "$case" "$a" "$b" "$(python3 -c "print($b / $a)")"
done
