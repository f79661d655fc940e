#!/usr/bin/env bash
# The GPU check: one H100/H200, about 9 minutes (each step has a time limit, 11.5 minutes in all), no model hub (full-size architectures
# with random weights, benchmarks/full_size.py). Writes one JSON file (default gpu_check.json):
#   flux:        FLUX.1-dev 1024 px 28 steps, images/GPU-hour of the bare diffusers loop and of the
#                generator stage (ratio), then the stage compiled, with diffusers' first-block cache and
#                with float8 weights
#   judge:       a 7B VLM (LLaVA-1.5-7B architecture, vLLM load_format=dummy) on 1024 px views,
#                verdicts/s of the judge stage and of one bare LLM.chat (ratio), and the engine's busy
#                fraction in the stage (share of its wall time inside LLM.chat)
#   every step:  the GPU's mean and peak utilisation while it ran, model load included (nvidia-smi, every 0.5 s)
#   wan:         Wan2.1 T2V 1.3B at 480p, 81 frames: seconds per clip at 50 steps
# The plan's cost table (vipo_build/generate/registry.yaml) cites these figures once measured.
#
#   bash benchmarks/gpu_check.sh [OUT.json]
#   bash benchmarks/gpu_check.sh --tiny [OUT.json]    # the same steps on the tiny CPU models
set -euo pipefail
cd "$(dirname "$0")/.."
tiny=0
if [[ "${1:-}" == "--tiny" ]]; then tiny=1; shift; fi
out=$(realpath -m "${1:-gpu_check.json}")
python=${PYTHON:-python}
[[ -x .venv/bin/python && -z "${PYTHON:-}" ]] && python=.venv/bin/python
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if (( tiny )); then
  flux=(--images 4 --batch-size 2 --steps 2 --repeats 1)
  judge=(--pairs 8 --unit 4 --units-per-call 2 --repeats 1)
  wan=(--steps 2)
else
  flux=(--full-size --images 4 --batch-size 4 --repeats 1)
  "$python" -c "import sys; sys.path.insert(0, 'benchmarks'); from full_size import llava_7b_folder; from pathlib import Path; llava_7b_folder(Path('$work/llava-7b'))"
  judge=(--model "$work/llava-7b" --dummy --image-size 1024 --pairs 128 --unit 16 --units-per-call 8 --repeats 1)
  wan=(--full-size --steps 6)
fi

step() {  # name, seconds allowed, command...: a step that fails or runs out of time is recorded, the rest go on
  local name=$1 limit=$2 rc=0 sampler=; shift 2
  echo "== $name" >&2
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 500 > "$work/$name.util" 2>/dev/null &
    sampler=$!
  fi
  timeout "$limit" "$@" >&2 || rc=$?
  [[ -n "$sampler" ]] && kill "$sampler" 2>/dev/null || true
  if (( rc )); then echo "{\"failed\": \"exit $rc (limit $limit s)\"}" > "$work/$name.json"; fi
}
# the fast paths time the stage only: their ratio is against the plain run's bare loop
step flux 150 "$python" benchmarks/bench_generate.py "${flux[@]}" --json-out "$work/flux.json"
step flux_compile 170 "$python" benchmarks/bench_generate.py "${flux[@]}" --skip-bare --compile --json-out "$work/flux_compile.json"
step flux_first_block_cache 90 "$python" benchmarks/bench_generate.py "${flux[@]}" --skip-bare --first-block-cache 0.12 --json-out "$work/flux_first_block_cache.json"
step flux_fp8_weights 90 "$python" benchmarks/bench_generate.py "${flux[@]}" --skip-bare --fp8-weights --json-out "$work/flux_fp8_weights.json"
step judge 110 "$python" benchmarks/bench_judge.py "${judge[@]}" --json-out "$work/judge.json"
step wan 70 "$python" benchmarks/bench_video.py "${wan[@]}" --json-out "$work/wan.json"

"$python" - "$work" "$out" <<'PY'
import json, sys, time
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
names = ["flux", "flux_compile", "flux_first_block_cache", "flux_fp8_weights", "judge", "wan"]
figures = {"date": time.strftime("%Y-%m-%d"), **{n: json.loads((work / f"{n}.json").read_text()) for n in names}}
bare = figures["flux"].get("bare_images_per_s")
for name in ("flux_compile", "flux_first_block_cache", "flux_fp8_weights"):
    stage = figures[name].get("stage_images_per_s")
    if bare and stage:
        figures[name]["ratio_stage_to_plain_bare"] = round(stage / bare, 4)
for name in names:  # the GPU's utilisation while the step ran, where nvidia-smi sampled it
    samples = [int(line.split()[0]) for line in (work / f"{name}.util").read_text().splitlines()
               if line.strip().split()[0].isdigit()] if (work / f"{name}.util").exists() else []
    if samples:
        figures[name]["gpu_utilisation"] = {"mean": round(sum(samples) / len(samples) / 100, 3),
                                            "peak": max(samples) / 100, "samples": len(samples)}
out.write_text(json.dumps(figures, indent=1))
print(f"wrote {out}")
PY
