#!/usr/bin/env python3
"""Tests of scripts/gpu/summarize.py on the small fixture files in tests/scripts/fixtures/: the
verdicts it gives on gtest, compute-sanitizer and Google Benchmark outputs, the figures it puts in
results.json (ours/peer ratios), and its choice of the cases compute-sanitizer runs."""
import contextlib
import io
import json
import shutil
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIX = HERE / "fixtures"
sys.path.insert(0, str(HERE.parent.parent / "scripts" / "gpu"))
import summarize  # noqa: E402

SKIPPED_CASE = "Dense/OpsTest.CudaMatchesCpu/dense_forward_identity_m1_n1_k1_wnk_bias"


class Logs:
    """A logs/ folder as check.sh leaves it, assembled from fixtures."""

    def __init__(self, root: Path):
        self.root = root
        self.steps = []
        (root / "preflight").mkdir(parents=True)
        (root / "preflight" / "info.env").write_text(
            "gpu_name=NVIDIA H100 80GB HBM3\ndriver_version=580.65.06\ndriver_cuda=13.0\n"
            "bundle_commit=0123456789ab\nbundle_date=2026-12-08T09:00:00Z\nbundle_cuda=13.0\n")
        self.step("preflight")

    def step(self, name, status="passed", seconds=10, planned=20, timeout=60, reason=""):
        self.steps.append(f"{name}\t{status}\t{seconds}\t{planned}\t{timeout}\t{reason}")
        (self.root / "steps.tsv").write_text("step\tstatus\tseconds\tplanned\ttimeout\treason\n" + "\n".join(self.steps) + "\n")

    def run(self, step, stem, rc, json_fixture=None, log_fixture=None, log_text=None):
        d = self.root / step
        d.mkdir(exist_ok=True)
        if json_fixture:
            shutil.copy(FIX / json_fixture, d / f"{stem}.json")
        if log_fixture:
            shutil.copy(FIX / log_fixture, d / f"{stem}.log")
        elif log_text is not None:
            (d / f"{stem}.log").write_text(log_text)
        (d / f"{stem}.run.json").write_text(json.dumps({"rc": rc, "seconds": 3, "timeout": 100}))

    def peer(self, fixture="peer.json"):
        d = self.root / "bench"
        d.mkdir(exist_ok=True)
        shutil.copy(FIX / fixture, d / "peer.json")
        (d / "peer.run.json").write_text(json.dumps({"rc": 0, "seconds": 80, "timeout": 150}))


class SummarizeTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="summarize-test-"))
        self.logs = Logs(self.tmp / "logs")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def report(self):
        """Runs `summarize.py report`; returns (exit status, summary.json, results.json or None, stdout)."""
        out = self.tmp / "out"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = summarize.main(["report", "--logs", str(self.logs.root), "--out", str(out)])
        summary = json.loads((out / "summary.json").read_text())
        results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
        return rc, summary, results, buf.getvalue()

    def judge(self, step):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = summarize.main(["judge", "--logs", str(self.logs.root), "--step", step])
        return rc, buf.getvalue()

    def add_clean_set(self):
        self.logs.run("tests", "test_ops", 0, "gtest_clean.json", "gtest_clean.log")
        self.logs.step("tests", planned=90, timeout=170)
        self.logs.run("sanitizer", "memcheck__test_ops", 0, "gtest_clean.json", "memcheck_clean.log")
        self.logs.run("sanitizer", "racecheck__test_ops", 0, "gtest_clean.json", "racecheck_clean.log")
        self.logs.step("sanitizer", planned=120, timeout=170)
        self.logs.run("bench", "bench_train", 0, "bench_train.json", log_text="ok\n")
        self.logs.peer()
        self.logs.step("bench", planned=210, timeout=300)

    # -- gtest ------------------------------------------------------------------------------

    def test_a_skipped_cuda_case_fails_the_verdict_and_is_named(self):
        self.logs.run("tests", "test_ops", 0, "gtest_mixed.json", "gtest_mixed.log")
        self.logs.step("tests")
        rc, summary, _, table = self.report()
        self.assertEqual(rc, 1)
        self.assertEqual(summary["verdict"], "failed")
        self.assertEqual(summary["failed_steps"], ["tests"])
        prog = summary["steps"]["tests"]["programs"]["test_ops"]
        self.assertEqual((prog["run"], prog["passed"], prog["skipped"], prog["failed"]), (3, 2, 1, 0))
        self.assertEqual(prog["skipped_tests"], [{"name": SKIPPED_CASE, "reason": "no CUDA device: CUDA test skipped, not run"}])
        self.assertTrue(any(SKIPPED_CASE in r and "skipped" in r for r in summary["reasons"]), summary["reasons"])
        self.assertIn(SKIPPED_CASE, table)
        self.assertEqual(self.judge("tests")[0], 1)

    def test_the_clean_set_passes(self):
        self.add_clean_set()
        rc, summary, results, table = self.report()
        self.assertEqual(summary["reasons"], [])
        self.assertEqual((rc, summary["verdict"], summary["complete"]), (0, "passed", True))
        self.assertEqual(summary["steps"]["tests"]["totals"]["passed"], 3)
        self.assertEqual(summary["steps"]["sanitizer"]["per_tool"],
                         {"memcheck": {"runs": 1, "errors": 0}, "racecheck": {"runs": 1, "errors": 0}})
        self.assertEqual(summary["steps"]["bench"]["programs"]["bench_train"]["benchmarks"], 3)
        self.assertEqual(summary["steps"]["bench"]["peer"]["modes_in_error"], 1)  # recorded, not a failure
        self.assertEqual(summary["steps"]["tests"]["planned_s"], 90)
        self.assertEqual(summary["results_file"], "nvidia-h100-80gb-hbm3_2026-12-08_0123456789ab.json")
        self.assertEqual(results["device"], "NVIDIA H100 80GB HBM3")
        self.assertEqual((results["cudnn"], results["cublas"], results["driver"]), ("91900", "13.0 (130000)", "580.65.06"))
        self.assertEqual(results["ceilings"], {"copy_GBps": 3000.0})
        self.assertIn("verdict: PASSED", table)
        for s in ("tests", "sanitizer", "bench"):
            self.assertEqual(self.judge(s)[0], 0, s)

    def test_a_crashed_program_counts_as_failed(self):
        self.logs.run("tests", "test_ops_pool", 134, None, "gtest_crashed.log")
        self.logs.step("tests")
        _, summary, _, _ = self.report()
        prog = summary["steps"]["tests"]["programs"]["test_ops_pool"]
        self.assertEqual((prog["passed"], prog["crashed"], prog["json"]), (1, 1, False))
        reasons = " ".join(summary["reasons"])
        self.assertIn("max_unpool_n1_h5_w7_c1_win2x2_str2x2_pad0x0_write crashed", reasons)
        self.assertIn("crashed (exit 134)", reasons)
        self.assertIn("no complete gtest JSON", reasons)

    def test_a_timed_out_program_fails(self):
        self.logs.run("tests", "test_ops", 124, None, "gtest_crashed.log")
        self.logs.step("tests")
        _, summary, _, _ = self.report()
        self.assertEqual(summary["verdict"], "failed")
        self.assertTrue(summary["steps"]["tests"]["programs"]["test_ops"]["timed_out"])
        self.assertIn("timed out after 100 s", " ".join(summary["reasons"]))

    # -- compute-sanitizer ------------------------------------------------------------------

    def test_a_memcheck_log_with_errors_fails(self):
        self.logs.run("sanitizer", "memcheck__test_ops", 99, "gtest_clean.json", "memcheck_errors.log")
        self.logs.run("sanitizer", "racecheck__test_ops", 0, "gtest_clean.json", "racecheck_clean.log")
        self.logs.step("sanitizer")
        rc, summary, _, _ = self.report()
        self.assertEqual(rc, 1)
        san = summary["steps"]["sanitizer"]
        self.assertEqual(san["status"], "failed")
        self.assertEqual(san["per_tool"]["memcheck"]["errors"], 2)
        self.assertEqual(san["per_tool"]["racecheck"]["errors"], 0)
        self.assertIn("Invalid __global__ write of size 4 bytes", san["runs"]["memcheck"]["test_ops"]["messages"])
        self.assertTrue(any(r.startswith("sanitizer: memcheck test_ops: 2 error(s)") for r in summary["reasons"]))
        self.assertEqual(self.judge("sanitizer")[0], 1)

    def test_a_racecheck_hazard_fails(self):
        self.logs.run("sanitizer", "racecheck__test_graph", 99, "gtest_clean.json", "racecheck_hazard.log")
        self.logs.step("sanitizer")
        _, summary, _, _ = self.report()
        self.assertEqual(summary["steps"]["sanitizer"]["per_tool"]["racecheck"]["errors"], 1)
        self.assertEqual(summary["verdict"], "failed")

    def test_sanitizer_log_parsing(self):
        log = summarize.parse_sanitizer_log((FIX / "memcheck_errors.log").read_text())
        self.assertEqual(log["errors"], 2)
        self.assertIsNone(summarize.parse_sanitizer_log("cut short\n")["errors"])

    # -- benchmarks -------------------------------------------------------------------------

    def test_ratios_ours_to_peer(self):
        self.logs.run("bench", "bench_train", 0, "bench_train.json", log_text="")
        self.logs.peer()
        self.logs.step("bench")
        _, _, results, table = self.report()
        rows = {r["name"]: r for r in results["training"]}
        fp32 = rows["train/dense_deep_784/fp32"]
        self.assertEqual(fp32["batch"], 256)
        self.assertAlmostEqual(fp32["ours_images_per_s"], 128000.0)
        self.assertAlmostEqual(fp32["ours_ms_per_step"], 2.0)
        self.assertAlmostEqual(fp32["peer"]["eager"]["ratio_ours_to_peer"], 2.0)
        self.assertAlmostEqual(fp32["peer"]["compile"]["ratio_ours_to_peer"], 1.0)
        self.assertAlmostEqual(fp32["peer"]["compile_reduce_overhead"]["ratio_ours_to_peer"], 0.5)
        tf32 = rows["train/dense_deep_784/tf32"]
        self.assertAlmostEqual(tf32["peer"]["eager"]["ratio_ours_to_peer"], 2.0)
        self.assertIsNone(tf32["peer"]["compile"]["ratio_ours_to_peer"])
        self.assertIn("simulated", tf32["peer"]["compile"]["error"])
        self.assertIsNone(tf32["peer"]["compile_reduce_overhead"]["images_per_s"])
        conv = rows["train/conv_3x128x128/fp32"]
        self.assertAlmostEqual(conv["ours_images_per_s"], 8000.0)
        self.assertEqual(conv["peer"], {})
        self.assertEqual(results["peer"]["torch"], "2.11.0+cu130")
        figures = {(b["program"], b["name"]): b for b in results["benchmarks"]}
        self.assertAlmostEqual(figures[("bench_train", "train/dense_deep_784/tf32")]["median_ms"], 1.0)
        self.assertIn("train/dense_deep_784/fp32", table)

    def test_a_benchmark_in_error_fails_the_step(self):
        self.logs.run("bench", "bench_ops", 0, "bench_ops.json", log_text="")
        self.logs.step("bench")
        rc, summary, results, _ = self.report()
        self.assertEqual(rc, 1)
        prog = summary["steps"]["bench"]["programs"]["bench_ops"]
        self.assertEqual((prog["benchmarks"], prog["errors"]), (2, 1))
        self.assertIn("bench: bench_ops: dense_bwd/relu_m256_n1000_k784: correctness check failed: max error 3.5e-02 > 1e-03",
                      summary["reasons"])
        fwd = [b for b in results["benchmarks"] if b["name"] == "dense_fwd/relu_m256_n1000_k784"][0]
        self.assertEqual((fwd["time_unit"], fwd["counters"]["GB/s"], fwd["counters"]["TFLOP/s"]), ("us", 1500.0, 20.0))
        self.assertAlmostEqual(fwd["median_ms"], 0.02)
        self.assertEqual(results["ceilings"]["sgemm_fp32_TFLOPs"], 51.2)

    def test_a_program_without_results_fails(self):
        self.logs.run("bench", "bench_conv", 0, None,
                      log_text="bench_conv: no usable CUDA device on this machine; nothing was benchmarked.\n")
        self.logs.step("bench")
        _, summary, results, _ = self.report()
        self.assertIn("no usable CUDA device", " ".join(summary["reasons"]))
        self.assertIsNone(results)

    def test_a_benchmark_json_cut_short_keeps_what_finished(self):
        data, complete = summarize.load_partial_json(FIX / "bench_partial.json")
        self.assertFalse(complete)
        b = summarize.summarize_bench_json(data)
        self.assertAlmostEqual(b["train/dense_deep_784/fp32"]["median_ms"], 2.0)

    # -- sanitizer case selection -----------------------------------------------------------

    def test_the_sanitizer_cases_are_the_smallest_per_op(self):
        ops = summarize.parse_op_table((FIX / "ops_table.hpp").read_text())
        self.assertEqual(ops, ["dense_forward", "dense_backward", "max_unpool", "max_unpool_backward",
                               "conv_workspace", "rbm_free_energy"])
        listing = summarize.parse_gtest_list((FIX / "list_test_ops.txt").read_text())
        sel = summarize.select_sanitizer_cases(ops, {"test_ops": listing}, per_op=2)
        chosen = {}
        for c in sel["programs"]["test_ops"]:
            chosen.setdefault(c["op"] or c["group"], []).append(c["test"])
        self.assertEqual(chosen["dense_forward"], ["Dense/OpsTest.CudaMatchesCpu/dense_forward_relu_m1_n1_k1_wnk_bias",
                                                   "Dense/OpsTest.CudaMatchesCpu/dense_forward_relu_m7_n33_k1_wnk_bias"])
        self.assertEqual(chosen["dense_backward"], ["DenseBackward/OpsTest.CudaMatchesCpu/dense_backward_relu_m33_n1_k7_all"])
        self.assertEqual(chosen["max_unpool"], ["Pool/PoolOps.CudaMatchesCpu/max_unpool_n2_h7_w5_c3_win2x2_str2x2_pad1x1_write"])
        self.assertEqual(chosen["max_unpool_backward"], [
            "Pool/PoolOps.CudaMatchesCpu/max_unpool_backward_n1_h5_w7_c1_win2x2_str2x2_pad0x0_write",
            "Pool/PoolOps.CudaMatchesCpu/max_unpool_backward_n3_h9_w9_c5_win3x3_str2x2_pad1x1_acc"])
        # Cases named after no op still run, the smallest of each group.
        self.assertEqual(chosen["mask"], ["Random/OpsRandomCuda.MatchesCpu/mask_m3_n17"])
        self.assertEqual(sel["uncovered_ops"], ["conv_workspace", "rbm_free_energy"])
        self.assertNotIn("CpuMatchesDoubleReference", json.dumps(sel))

    def test_the_sanitizer_cases_command_prints_one_filter_per_program(self):
        buf, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
            rc = summarize.main(["sanitizer-cases", "--ops", str(FIX / "ops_table.hpp"), "--per-op", "1",
                                 "--list", f"test_ops={FIX / 'list_test_ops.txt'}"])
        self.assertEqual(rc, 0)
        prog, filt = buf.getvalue().strip().split("\t")
        self.assertEqual(prog, "test_ops")
        self.assertEqual(len(filt.split(":")), 5)  # 4 ops with a case, 1 per op, and the mask group
        self.assertIn("conv_workspace rbm_free_energy", err.getvalue())

    # -- steps not run ----------------------------------------------------------------------

    def test_steps_not_run_are_named_and_a_partial_run_can_pass(self):
        self.logs.run("tests", "test_ops", 0, "gtest_clean.json", "gtest_clean.log")
        self.logs.step("tests")
        rc, summary, _, table = self.report()
        self.assertEqual((rc, summary["verdict"], summary["complete"]), (0, "passed", False))
        self.assertEqual(summary["steps_not_run"], ["sanitizer", "bench"])
        self.assertIn("steps not run: sanitizer, bench", table)

    def test_a_step_the_shell_saw_fail_stays_failed(self):
        self.logs.step("sanitizer", status="failed", reason="compute-sanitizer not found")
        rc, summary, _, _ = self.report()
        self.assertEqual(rc, 1)
        self.assertIn("sanitizer: compute-sanitizer not found", summary["reasons"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
