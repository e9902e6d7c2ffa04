"""The benchmark scripts a device check runs still run: each on its --quick cases, on this
machine's default device. They print measurements, not pass/fail: what is checked here is that
every variant produced a number and that the reported ratios are the ratios of those numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path, *args: str) -> dict:
  done = subprocess.run(
    [sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--out", str(out), *args],
    capture_output=True,
    text=True,
    timeout=600,
    check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  (result,) = out.glob("*.json")
  return json.loads(result.read_text())


def test_bench_compile_quick(tmp_path):
  result = _run("bench_compile.py", tmp_path)
  (row,) = result["rows"]
  assert (row["tree"], row["leaves"]) == ("ResNet-50", 161)
  assert set(row["s"]) == {
    "plain adds",
    "ours: update+apply_updates",
    "ours: apply_gradients",
    "ours, flat state: update+apply_updates",
    "optax: update+apply_updates",
  }
  assert all(0 < s < 600 for s in row["s"].values())
  table = (tmp_path / "bench_compile.md").read_text()
  ours = row["s"]["ours: apply_gradients"]
  assert f"| {ours:.2f} | {ours / row['s']['plain adds']:.2f}x |" in table


def test_bench_device_quick(tmp_path):
  result = _run("bench_device.py", tmp_path, "--budget", "0.2", "--min-reps", "3")
  assert result["meta"]["copy_GBps"] > 0
  assert [row["case"] for row in result["rows"]] == ["1M leaf", "200 x 1,000"]
  for row in result["rows"]:
    # The floor: 28 B per float32 param at the copy bandwidth measured in the same run.
    expected = 1e3 * row["params"] * 28 / (result["meta"]["copy_GBps"] * 1e9)
    assert math.isclose(row["floor_ms"], expected, rel_tol=1e-9)
    # The flat-state row only for trees (one leaf is already one buffer).
    flat_row = ["ours, flat state: update+apply_updates"] if row["leaves"] > 1 else []
    assert list(row["ms"]) == [
      "ours: apply_gradients",
      "ours: update+apply_updates",
      "optax: update+apply_updates",
      *flat_row,
    ]
    assert all(ms > 0 for ms in row["ms"].values())
