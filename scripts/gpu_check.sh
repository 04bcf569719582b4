#!/usr/bin/env bash
# The full-size benchmarks on one GPU, in one command, written to one JSON file.
#
#   bash scripts/gpu_check.sh [--device cuda] [--out gpu_check.json] [--smoke]
#
# Runs, each step under its own time limit so the whole stays under 10 minutes on one H100:
#   teacher   LlamaGen-B and -L and VAR-d16 AR sampling, batch 1 and 16 (random weights)
#   sample    the same presets: teacher vs DD 1-step and 2-step (and teacher-involved), VQ incl.
#   student   DD 1- and 2-step student forward passes alone
#   flow      the flow map at batch 256 and 2048 vs one LlamaGen-B decode step
#   train     a short bf16 DD training step of the LlamaGen-B student, with MFU
# Every step's JSON (and its printed log) lands in OUT under "steps"; "machine" holds
# nvidia-smi's line, torch and CUDA versions. A failed or timed-out step is recorded as such and
# the others still run. --smoke: the embedded MNIST presets with --quick settings (checks the
# script itself on a CPU in a minute or two; the test suite runs it with --device cpu).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
device=cuda
out=gpu_check.json
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
done
py="${PYTHON:-python}"
if [ -x "$root/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then py="$root/.venv/bin/python"; fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"
trap 'rm -rf "$work"' EXIT

if [ "$smoke" = 1 ]; then
  big=mnist-llamagen,mnist-var; lg=mnist-llamagen; q=--quick; limit=300
  flow_args=(--quick --batches 256 --agreement-rows 50 --teacher-batch 0)
  train_args=(--presets mnist-llamagen --dtype fp32 --repeats 1 --batch 4)
else
  big=llamagen-b,llamagen-l,var-d16; lg=llamagen-b; q=""; limit=150
  flow_args=(--batches 256,2048 --agreement-rows 200 --teacher-batch 256 --repeats 5)
  train_args=(--presets llamagen-b --dtype bf16 --repeats 5 --batch 32)
fi

step() {  # step NAME LIMIT_S ARGS... -> $work/NAME.json (+ .log, .status)
  local name="$1" lim="$2"; shift 2
  echo "== gpu_check: $name (limit ${lim} s): ardistill bench $*" >&2
  local t0=$SECONDS
  timeout "$lim" "$py" -m ardistill bench "$@" >"$work/$name.log" 2>&1
  local rc=$?
  cat "$work/$name.log" >&2
  echo "{\"rc\": $rc, \"seconds\": $((SECONDS - t0))}" >"$work/$name.status"
}

step teacher "$limit" teacher --presets "$big" --device "$device" --batch 16 --repeats 3 $q \
  --json "$work/teacher.json"
step sample "$limit" sample --presets "$big" --device "$device" --batch 16 --repeats 5 $q \
  --json "$work/sample.json"
step student 90 student --presets "$big" --steps 1,2 --device "$device" --batch 16 \
  --repeats 10 $q --json "$work/student.json"
step flow 90 flow --device "$device" "${flow_args[@]}"
step train 90 train --device "$device" "${train_args[@]}" --json "$work/train.json"

"$py" - "$work" "$out" "$device" <<'EOF'
import json, subprocess, sys, time
from pathlib import Path

import torch

work, out, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True,
                         timeout=20).stdout.strip()
except (OSError, subprocess.TimeoutExpired):
    smi = None
doc = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "device": device,
       "machine": {"nvidia_smi": smi, "torch": torch.__version__, "cuda": torch.version.cuda,
                   "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
       "steps": {}}
ok = True
for status in sorted(work.glob("*.status")):
    name = status.stem
    st = json.loads(status.read_text())
    res = work / f"{name}.json"
    doc["steps"][name] = {**st, "timed_out": st["rc"] == 124,
                          "result": json.loads(res.read_text()) if res.is_file() else None,
                          "log_tail": (work / f"{name}.log").read_text()[-4000:]}
    ok &= st["rc"] == 0
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(doc, indent=1) + "\n")
print(f"gpu_check: wrote {out}: " + ", ".join(
    f"{k} {'ok' if v['rc'] == 0 else 'FAILED rc ' + str(v['rc'])} ({v['seconds']} s)"
    for k, v in doc["steps"].items()))
sys.exit(0 if ok else 1)
EOF
