#!/usr/bin/env bash
# The device check of issue 13, for a machine with a GPU (or any accelerator JAX sees): every
# case of bench_device.py in a process of its own under a time limit (a case whose compile runs
# past it is reported, not fatal), then the compile-time table. Results go to $OUT (default
# runs/device): one markdown table per case, all.md with all of them, and the log.
#
#   bash benchmarks/device_check.sh               # from the repository root; about 10 minutes
#   LIMIT=90 bash benchmarks/device_check.sh      # seconds per case (default 150)
set -u
out="${OUT:-runs/device}"
limit="${LIMIT:-150}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import jax, optax; print(jax.__version__, optax.__version__, jax.devices())" | tee "$out/devices.txt"
cases=("256M leaf" "ResNet-50" "GPT-2 medium" "GPT-2 XL" "2,000 x 1,000" "GPT-2 medium, bf16 params")
for i in "${!cases[@]}"; do
  case_out="$out/case$i"
  if timeout "$limit" python benchmarks/bench_device.py --case "${cases[$i]}" --out "$case_out" \
    >> "$out/log.txt" 2>&1; then
    cat "$case_out/bench_device.md" >> "$out/all.md"
  else
    echo "| ${cases[$i]} | did not finish in ${limit} s (exit $?) |" | tee -a "$out/all.md"
  fi
  echo >> "$out/all.md"
done
timeout "$limit" python benchmarks/bench_compile.py --rounds 1 --tree ResNet-50 --tree "GPT-2 XL" \
  --out "$out/compile" >> "$out/log.txt" 2>&1 && cat "$out/compile/bench_compile.md" >> "$out/all.md"
cat "$out/all.md"
