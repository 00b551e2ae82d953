"""The benchmarks run and print their tables (figures live in BENCHMARKS.md, not in tests)."""

from leave_one_out import benchmark


def test_step_benchmark_prints_a_row_per_kind():
  table = benchmark.bench_step(["moco", "supervised"], "resnet10", 4, 32, 8, "float32",
                               num_spaces=1, repeats=1, peak_tflops=0.0)
  rows = [line for line in table.splitlines() if line.startswith("| ")]
  assert [r.split(" | ")[0] for r in rows[1:]] == ["| moco", "| supervised"]
  moco = rows[1].split(" | ")
  assert float(moco[3]) > 0 and float(moco[6]) > 0  # step ms, "x supervised" filled in


def test_views_benchmark_prints_a_row_per_size():
  table = benchmark.bench_views(4, [32], source_factor=1.25, repeats=1)
  assert table.splitlines()[2].startswith("| 32 | 40 | 4 | 5 |")
