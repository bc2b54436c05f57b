#!/usr/bin/env python3
"""Reads what scripts/gpu/check.sh wrote on the GPU machine and judges it (standard library only).

  summarize.py report --logs DIR --out DIR
      writes OUT/summary.json (per step: status, time, counts; one overall verdict) and
      OUT/results.json (the benchmark figures to keep under bench/results/), then prints a short
      table; exit 0 when the verdict is "passed", 1 otherwise
  summarize.py judge --logs DIR --step tests|sanitizer|bench
      one step's status on one line; exit 0 when it passed (or was skipped), 1 when it failed
  summarize.py sanitizer-cases --ops kernels/ops.hpp --list PROGRAM=LISTFILE ... [--per-op N]
                               [--out selection.json]
      chooses the CUDA op cases compute-sanitizer runs: for every op of the op table, the N
      smallest parameterised cases (test name containing "Cuda", parameter name beginning with the
      op's name) among the `--gtest_list_tests` outputs given; prints "PROGRAM<TAB>FILTER" lines

The layout of DIR (check.sh's logs/ folder):
  steps.tsv                    step, status, seconds, planned, timeout, reason (one line a step)
  preflight/info.env           KEY=VALUE: GPU, driver, CUDA versions, bundle, library folders
  tests/<program>.json|.log|.run.json         gtest JSON, console, {"rc", "seconds", "timeout"}
  sanitizer/<tool>__<program>.json|.log|.run.json, sanitizer/selection.json
  bench/<program>.json|.log|.run.json          Google Benchmark JSON and console
  bench/peer.json|.log|.run.json, bench/peer.skip   the PyTorch peer (bench/peer/train_peer.py)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from pathlib import Path

STEPS = ("preflight", "tests", "sanitizer", "bench")
TIMEOUT_RCS = (124, 137)
PEER_MODES = ("eager", "compile", "compile_reduce_overhead")


# ---------------------------------------------------------------------------------------------
# small readers
# ---------------------------------------------------------------------------------------------

def read_json(path: Path):
    """The parsed file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def read_env(path: Path) -> dict:
    out = {}
    try:
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip().strip("'\"")
    except OSError:
        pass
    return out


def read_steps(logs: Path) -> dict:
    """steps.tsv: the shell's record of each step (the last line of a step wins)."""
    steps = {}
    try:
        lines = (logs / "steps.tsv").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return steps
    for line in lines:
        f = line.split("\t")
        if len(f) < 5 or f[0] == "step":
            continue

        def num(s):
            try:
                return int(float(s))
            except ValueError:
                return None

        steps[f[0]] = {"status": f[1], "seconds": num(f[2]), "planned_s": num(f[3]), "timeout_s": num(f[4]),
                       "reason": f[5].strip() if len(f) > 5 and f[5].strip() else None}
    return steps


def run_info(path: Path) -> dict:
    """A <name>.run.json written by check.sh: rc (None: not started), seconds, timeout."""
    info = read_json(path)
    return info if isinstance(info, dict) else {"rc": None, "seconds": 0, "note": "no record of the run"}


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def load_partial_json(path: Path):
    """Google Benchmark's JSON, also when the program was stopped before it closed the file: the
    benchmarks written so far are kept. Returns (data or None, complete)."""
    text = read_text(path)
    if not text.strip():
        return None, False
    try:
        return json.loads(text), True
    except ValueError:
        pass
    # Cut after the last complete benchmark object and close the array and the document.
    for m in reversed(list(re.finditer(r"\n    \}", text))):
        try:
            return json.loads(text[: m.end()] + "\n  ]\n}\n"), False
        except ValueError:
            continue
    m = re.search(r'"benchmarks"\s*:\s*\[', text)
    if m:
        try:
            return json.loads(text[: m.end()] + "]}"), False
        except ValueError:
            pass
    return None, False


# ---------------------------------------------------------------------------------------------
# gtest
# ---------------------------------------------------------------------------------------------

def parse_gtest_log(text: str) -> dict:
    """From a gtest console log: per test its outcome (ok, failed, skipped, or None: started and
    never finished, i.e. the program died in it) and, for skipped tests, the reason printed."""
    outcome, reasons, order = {}, {}, []
    current, body = None, []
    for line in text.splitlines():
        m = re.match(r"\[ RUN      \] (\S+)", line)
        if m:
            current, body = m.group(1), []
            outcome[current] = None
            order.append(current)
            continue
        m = re.match(r"\[ {7}OK \] (\S+)|\[  FAILED  \] (\S+) \(|\[  SKIPPED \] (\S+) \(", line)
        if m:
            name = m.group(1) or m.group(2) or m.group(3)
            kind = "ok" if m.group(1) else "failed" if m.group(2) else "skipped"
            if name in outcome:
                outcome[name] = kind
                if kind == "skipped":
                    msg = [b.strip() for b in body if b.strip() and not re.search(r":\d+: Skipped$", b.strip())]
                    reasons[name] = " ".join(msg)[:300] or "(no reason printed)"
            current = None
            continue
        if current is not None:
            body.append(line)
    return {"outcome": outcome, "reasons": reasons, "order": order}


def gtest_results(json_path: Path, log_path: Path) -> dict:
    """Every test of one program run: name -> {"result": passed|failed|skipped|crashed, "message"}."""
    data = read_json(json_path)
    log = parse_gtest_log(read_text(log_path))
    tests = {}
    if isinstance(data, dict):
        for suite in data.get("testsuites", []):
            for t in suite.get("testsuite", []):
                if t.get("status") == "NOTRUN":
                    continue
                name = f"{suite.get('name', '')}.{t.get('name', '')}"
                failures = t.get("failures") or []
                if failures:
                    msg = " ".join(str(f.get("failure", "")).strip() for f in failures)
                    tests[name] = {"result": "failed", "message": msg[:500]}
                elif t.get("result") == "SKIPPED":
                    tests[name] = {"result": "skipped", "message": log["reasons"].get(name, "(reason not in the log)")}
                else:
                    tests[name] = {"result": "passed", "message": None}
    else:
        # No JSON (the program died): what the console log shows.
        for name in log["order"]:
            kind = log["outcome"][name]
            if kind == "ok":
                tests[name] = {"result": "passed", "message": None}
            elif kind == "failed":
                tests[name] = {"result": "failed", "message": "failed (see the log)"}
            elif kind == "skipped":
                tests[name] = {"result": "skipped", "message": log["reasons"].get(name)}
            else:
                tests[name] = {"result": "crashed", "message": "the program died in this test"}
    return {"tests": tests, "json": isinstance(data, dict)}


def judge_program(name: str, run: dict, res: dict, cuda_pattern: str = "Cuda") -> dict:
    """One test program's counts and problems. A CUDA test (full name containing "Cuda") that
    failed or was skipped, any failed test, a crash, a timeout or a missing JSON are problems."""
    tests = res["tests"]
    count = {k: sum(1 for t in tests.values() if t["result"] == k) for k in ("passed", "failed", "skipped", "crashed")}
    problems = []
    rc = run.get("rc")
    bad = [(n, t) for n, t in sorted(tests.items()) if t["result"] in ("failed", "crashed")]
    skipped = [(n, t) for n, t in sorted(tests.items()) if t["result"] == "skipped" and cuda_pattern in n]
    for n, t in bad[:3]:
        problems.append(f"{name}: {n} {t['result']}: {t['message'] or ''}".rstrip(": "))
    if len(bad) > 3:
        problems.append(f"{name}: and {len(bad) - 3} more failed tests")
    for n, t in skipped[:3]:
        problems.append(f"{name}: CUDA test skipped: {n}: {t['message']}")
    if len(skipped) > 3:
        problems.append(f"{name}: and {len(skipped) - 3} more CUDA tests skipped")
    if rc is None:
        problems.append(f"{name}: not run ({run.get('note', 'no record')})")
    elif rc in TIMEOUT_RCS:
        problems.append(f"{name}: timed out after {run.get('timeout')} s")
    elif rc >= 128 or rc < 0:
        problems.append(f"{name}: crashed (exit {rc})")
    elif rc != 0 and not count["failed"]:
        problems.append(f"{name}: exit {rc}")
    if rc is not None and not res["json"]:
        problems.append(f"{name}: no complete gtest JSON (counted as failed)")
    return {"run": len(tests), **count, "rc": rc, "seconds": run.get("seconds"),
            "timed_out": rc in TIMEOUT_RCS, "json": res["json"],
            "skipped_tests": [{"name": n, "reason": t["message"]} for n, t in sorted(tests.items()) if t["result"] == "skipped"],
            "failed_tests": [{"name": n, "result": t["result"], "message": t["message"]} for n, t in bad],
            "problems": problems}


def summarize_tests(logs: Path) -> dict | None:
    d = logs / "tests"
    if not d.is_dir():
        return None
    programs = {}
    for run_path in sorted(d.glob("*.run.json")):
        name = run_path.name[: -len(".run.json")]
        programs[name] = judge_program(name, run_info(run_path), gtest_results(d / f"{name}.json", d / f"{name}.log"))
    problems = [p for v in programs.values() for p in v["problems"]]
    totals = {k: sum(v[k] for v in programs.values()) for k in ("run", "passed", "failed", "skipped", "crashed")}
    if not programs:
        problems.append("no test program was run")
    return {"status": "failed" if problems else "passed", "programs": programs, "totals": totals, "problems": problems}


# ---------------------------------------------------------------------------------------------
# sanitizer
# ---------------------------------------------------------------------------------------------

def parse_sanitizer_log(text: str) -> dict:
    """compute-sanitizer's verdict: errors from "ERROR SUMMARY: N errors", or from racecheck's
    "RACECHECK SUMMARY: N hazards displayed (E errors, W warnings)" (None when neither is there:
    the run was cut short); racecheck's warnings; the first messages."""
    errors = None
    for m in re.finditer(r"=+ ERROR SUMMARY: (\d+) errors?", text):
        errors = (errors or 0) + int(m.group(1))
    race = re.findall(r"RACECHECK SUMMARY: (\d+) hazards? displayed \((\d+) errors?, (\d+) warnings?\)", text)
    first = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("=========") and re.search(r"Invalid|Error|error|Race|Hazard|Uninitialized|Leak", s) \
                and "SUMMARY" not in s and s not in first:
            first.append(s.lstrip("= ").strip())
            if len(first) >= 5:
                break
    race_errors = sum(int(r[1]) for r in race) if race else None
    if errors is None:
        errors = race_errors
    return {"errors": errors, "race_errors": race_errors,
            "race_warnings": sum(int(r[2]) for r in race) if race else None, "messages": first}


def summarize_sanitizer(logs: Path) -> dict | None:
    d = logs / "sanitizer"
    if not d.is_dir():
        return None
    runs, problems = {}, []
    for run_path in sorted(d.glob("*__*.run.json")):
        stem = run_path.name[: -len(".run.json")]
        tool, prog = stem.split("__", 1)
        run = run_info(run_path)
        log = parse_sanitizer_log(read_text(d / f"{stem}.log"))
        res = gtest_results(d / f"{stem}.json", d / f"{stem}.log")
        g = judge_program(f"{tool} {prog}", run, res)
        rc = run.get("rc")
        entry = {"errors": log["errors"], "messages": log["messages"], "rc": rc, "seconds": run.get("seconds"),
                 "tests_run": g["run"], "tests_failed": g["failed"] + g["crashed"], "tests_skipped": g["skipped"],
                 "timed_out": rc in TIMEOUT_RCS}
        if log["race_warnings"] is not None:
            entry["race_warnings"] = log["race_warnings"]
        runs.setdefault(tool, {})[prog] = entry
        if log["errors"]:
            problems.append(f"{tool} {prog}: {log['errors']} error(s): " + "; ".join(log["messages"][:2]))
        elif rc is not None and rc not in TIMEOUT_RCS and log["errors"] is None:
            problems.append(f"{tool} {prog}: no ERROR SUMMARY in the log (exit {rc})")
        problems += [p for p in g["problems"] if not (log["errors"] and p.endswith(f"exit {rc}"))]
        if rc is not None and res["json"] and g["run"] == 0:
            problems.append(f"{tool} {prog}: the filter matched no test")
    sel = read_json(d / "selection.json") or {}
    warnings = []
    if sel.get("uncovered_ops"):
        warnings.append("ops without a CUDA case named after them: " + ", ".join(sel["uncovered_ops"]))
    if sel.get("groups_without_op_name"):
        warnings.append("CUDA cases whose names begin with no op name (their smallest case ran): "
                        + ", ".join(sel["groups_without_op_name"]))
    if not runs:
        problems.append("no compute-sanitizer run was made")
    per_tool = {t: {"runs": len(v), "errors": sum(e["errors"] or 0 for e in v.values())} for t, v in runs.items()}
    return {"status": "failed" if problems else "passed", "runs": runs, "per_tool": per_tool,
            "selection": sel.get("programs", {}), "uncovered_ops": sel.get("uncovered_ops", []),
            "problems": problems, "warnings": warnings}


# ---------------------------------------------------------------------------------------------
# sanitizer case selection
# ---------------------------------------------------------------------------------------------

def parse_op_table(text: str) -> list[str]:
    """The op names of the X-macro CUAE_OP_TABLE, in table order."""
    m = re.search(r"#define\s+CUAE_OP_TABLE\s*\(\s*X\s*\)((?:[^\n]*\\\n)*[^\n]*)", text)
    if not m:
        raise ValueError("no #define CUAE_OP_TABLE(X) found")
    return re.findall(r"\bX\(\s*([A-Za-z_]\w*)\s*,", m.group(1))


def parse_gtest_list(text: str) -> list[str]:
    """Full test names from `--gtest_list_tests` output."""
    names, suite = [], None
    for line in text.splitlines():
        if not line.strip() or line.startswith("Running main()") or line.startswith("Note:"):
            continue
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        elif suite:
            names.append(suite + line.split("#")[0].strip())
    return names


def case_size(param: str) -> tuple:
    nums = [int(n) for n in re.findall(r"\d+", param)]
    prod = 1
    for n in nums:
        prod *= max(n, 1)
    return (prod, sum(nums), len(param), param)


def select_sanitizer_cases(ops: list[str], listings: dict, per_op: int = 2) -> dict:
    """For each op, its per_op smallest CUDA cases (the second of other sizes when there is one).
    A case is a parameterised test of an op-test program whose full name contains "Cuda" and whose
    parameter (after the last '/') begins with the op's name; the longest op name that fits wins
    (max_unpool_backward_..., not max_unpool). CUDA cases that name no op are grouped by their
    parameter up to the first part with a digit ("conv_bwd_n3_7x5..." -> conv_bwd), and the
    smallest case of each group runs too, so kernels whose tests do not follow the naming yet are
    still covered; the ops without a case are listed."""
    by_len = sorted(ops, key=len, reverse=True)
    cands = {op: [] for op in ops}
    groups = {}
    for prog, names in listings.items():
        for full in names:
            if "/" not in full or "Cuda" not in full:
                continue
            param = full.rsplit("/", 1)[1]
            for op in by_len:
                if param == op or param.startswith(op + "_"):
                    cands[op].append((case_size(param[len(op):]), prog, full))
                    break
            else:
                parts = param.split("_")
                head = []
                for part in parts:
                    if re.search(r"\d", part) and head:
                        break
                    head.append(part)
                groups.setdefault((prog, "_".join(head)), []).append((case_size(param), prog, full))
    chosen, uncovered = {}, []
    for op in ops:
        c = sorted(cands[op])
        if not c:
            uncovered.append(op)
            continue
        # The smallest case, then the smallest of other sizes, then the next smallest.
        pick = [c[0]]
        for cand in c[1:]:
            if len(pick) < per_op and all(cand[0][:2] != p[0][:2] for p in pick):
                pick.append(cand)
        for cand in c[1:]:
            if len(pick) < per_op and cand not in pick:
                pick.append(cand)
        for _, prog, full in pick:
            chosen.setdefault(prog, []).append({"op": op, "test": full})
    unnamed = []
    for (prog, group), c in sorted(groups.items()):
        _, _, full = min(c)
        chosen.setdefault(prog, []).append({"op": None, "group": group, "test": full})
        unnamed.append(f"{prog}:{group}")
    return {"per_op": per_op, "ops": ops, "programs": chosen, "uncovered_ops": uncovered,
            "groups_without_op_name": unnamed}


# ---------------------------------------------------------------------------------------------
# benchmarks
# ---------------------------------------------------------------------------------------------

_NAME_ARGS = re.compile(r"^(min_time:.*|min_warmup_time:.*|repeats:\d+|iterations:\d+|threads:\d+|manual_time|real_time|process_time)$")
_STD_KEYS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type", "repetitions",
             "repetition_index", "threads", "iterations", "real_time", "cpu_time", "time_unit", "aggregate_name",
             "aggregate_unit", "error_occurred", "error_message", "label"}
_TIME_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def base_name(entry: dict) -> str:
    """A benchmark's own name: run_name without Google Benchmark's /min_time:../repeats:../manual_time."""
    name = entry.get("run_name") or entry.get("name", "")
    return "/".join(p for p in name.split("/") if not _NAME_ARGS.match(p))


def summarize_bench_json(data: dict) -> dict:
    """Per benchmark (base name): the median time (or the only run's), its unit, the counters,
    and the error if the benchmark stopped with one."""
    out = {}
    for e in data.get("benchmarks", []):
        name = base_name(e)
        b = out.setdefault(name, {"name": name, "median": None, "time_unit": e.get("time_unit"), "median_ms": None,
                                  "counters": {}, "error": None})
        if e.get("error_occurred"):
            b["error"] = e.get("error_message") or "error"
            continue
        is_median = e.get("run_type") == "aggregate" and e.get("aggregate_name") == "median"
        is_single = e.get("run_type", "iteration") == "iteration" and b.get("_from") != "median"
        if is_median or is_single:
            b["median"] = e.get("real_time")
            b["time_unit"] = e.get("time_unit")
            b["median_ms"] = (e["real_time"] * _TIME_MS.get(e.get("time_unit"), 1.0)) if e.get("real_time") is not None else None
            b["counters"] = {k: v for k, v in e.items() if k not in _STD_KEYS and isinstance(v, (int, float))}
            b["_from"] = "median" if is_median else "iteration"
    for b in out.values():
        b.pop("_from", None)
    return out


def summarize_bench(logs: Path) -> dict | None:
    d = logs / "bench"
    if not d.is_dir():
        return None
    programs, problems, contexts = {}, [], {}
    for run_path in sorted(d.glob("*.run.json")):
        name = run_path.name[: -len(".run.json")]
        if name == "peer":
            continue
        run = run_info(run_path)
        rc = run.get("rc")
        data, complete = load_partial_json(d / f"{name}.json")
        benches = summarize_bench_json(data) if isinstance(data, dict) else {}
        errs = {n: b["error"] for n, b in benches.items() if b["error"]}
        programs[name] = {"benchmarks": len(benches), "errors": len(errs), "error_names": sorted(errs),
                          "rc": rc, "seconds": run.get("seconds"), "timed_out": rc in TIMEOUT_RCS,
                          "complete_json": complete}
        if isinstance(data, dict):
            contexts[name] = data.get("context", {})
        if rc is None:
            problems.append(f"{name}: not run ({run.get('note', 'no record')})")
        elif rc in TIMEOUT_RCS:
            problems.append(f"{name}: timed out after {run.get('timeout')} s ({len(benches)} benchmarks finished)")
        elif rc != 0:
            problems.append(f"{name}: exit {rc}")
        if rc is not None and not benches:
            tail = read_text(d / f"{name}.log").strip().splitlines()[-1:] or [""]
            problems.append(f"{name}: no benchmark results ({tail[0][:200]})")
        for n, msg in sorted(errs.items()):
            problems.append(f"{name}: {n}: {msg}")
    peer = summarize_peer(d)
    if peer["status"] == "failed":
        problems += [f"peer: {p}" for p in peer["problems"]]
    if not programs:
        problems.append("no benchmark program was run")
    return {"status": "failed" if problems else "passed", "programs": programs, "peer": peer,
            "problems": problems, "contexts": contexts}


def summarize_peer(d: Path) -> dict:
    skip = read_text(d / "peer.skip").strip()
    if skip:
        return {"status": "skipped", "reason": skip, "problems": []}
    run_path = d / "peer.run.json"
    if not run_path.exists():
        return {"status": "skipped", "reason": "not run", "problems": []}
    run = run_info(run_path)
    data = read_json(d / "peer.json")
    problems = []
    rc = run.get("rc")
    if rc in TIMEOUT_RCS:
        problems.append(f"timed out after {run.get('timeout')} s")
    elif rc not in (0, None):
        problems.append(f"exit {rc}")
    if not isinstance(data, dict):
        problems.append("no peer JSON")
        return {"status": "failed", "problems": problems, "rc": rc, "seconds": run.get("seconds")}
    modes_ok = modes_err = modes_skipped = 0
    errors = []
    for bname, b in data.get("benchmarks", {}).items():
        for mode, m in b.get("modes", {}).items():
            if m.get("skipped"):
                modes_skipped += 1
            elif m.get("error"):
                modes_err += 1
                errors.append(f"{bname} {mode}: {m['error'][:200]}")
            elif m.get("images_per_s"):
                modes_ok += 1
    # A compilation failure in one mode is recorded, not a failure of the step.
    return {"status": "failed" if problems else "passed", "problems": problems, "rc": rc,
            "seconds": run.get("seconds"), "modes_measured": modes_ok, "modes_in_error": modes_err,
            "modes_skipped": modes_skipped,
            "mode_errors": errors, "torch": data.get("torch"), "device": data.get("device")}


# ---------------------------------------------------------------------------------------------
# results.json
# ---------------------------------------------------------------------------------------------

def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "unknown"


def training_rows(ours: dict, peer: dict | None) -> list[dict]:
    """For each training benchmark (train/...): our images/s and, per peer mode, the peer's and
    the ratio ours/peer (> 1: cuae is faster)."""
    rows = []
    pbench = (peer or {}).get("benchmarks", {})
    for name in sorted(set(n for n in ours if n.startswith("train/")) | set(pbench)):
        b = ours.get(name)
        mine = None
        if b and not b["error"]:
            mine = b["counters"].get("images/s")
            batch = pbench.get(name, {}).get("batch")
            if mine is None and b["median_ms"] and batch:
                mine = batch / (b["median_ms"] * 1e-3)
        row = {"name": name, "batch": pbench.get(name, {}).get("batch"), "ours_images_per_s": mine,
               "ours_ms_per_step": b["median_ms"] if b else None, "peer": {}}
        for mode in PEER_MODES:
            m = pbench.get(name, {}).get("modes", {}).get(mode)
            if m is None:
                continue
            ips = m.get("images_per_s")
            row["peer"][mode] = {"images_per_s": ips, "ms_per_step": m.get("ms_per_step"),
                                 "ratio_ours_to_peer": (mine / ips) if (mine and ips) else None,
                                 "error": m.get("error")}
        rows.append(row)
    return rows


def build_results(logs: Path, bench: dict | None, info: dict) -> dict | None:
    if not bench:
        return None
    d = logs / "bench"
    figures, ours_all = [], {}
    for prog in sorted(bench["programs"]):
        data, _ = load_partial_json(d / f"{prog}.json")
        if not isinstance(data, dict):
            continue
        for name, b in summarize_bench_json(data).items():
            figures.append({"program": prog, **b})
            ours_all[name] = b
    ctx = {}
    for prog in ("bench_ops", "bench_conv", "bench_train"):
        ctx.update({k: v for k, v in bench["contexts"].get(prog, {}).items() if k not in ctx})
    for c in bench["contexts"].values():
        ctx.update({k: v for k, v in c.items() if k not in ctx})
    ceilings = {k[len("ceiling_"):]: _num(v) for k, v in ctx.items() if k.startswith("ceiling_")}
    peer = read_json(d / "peer.json")
    date = str(ctx.get("date") or "")[:10] or _dt.date.today().isoformat()
    commit = ctx.get("cuae_commit") or info.get("bundle_commit") or "unknown"
    device = ctx.get("device") or info.get("gpu_name") or "unknown"
    return {
        "schema": 1,
        "device": device,
        "compute_capability": ctx.get("compute_capability"),
        "sm_count": _num(ctx.get("sm_count")),
        "driver": info.get("driver_version"),
        "cuda_driver": ctx.get("cuda_driver") or info.get("driver_cuda"),
        "cuda_runtime": ctx.get("cuda_runtime") or info.get("bundle_cuda"),
        "cublas": ctx.get("cublas"),
        "cublasLt": ctx.get("cublasLt"),
        "cudnn": ctx.get("cudnn"),
        "date": date,
        "commit": commit,
        "host": ctx.get("host_name"),
        "ceilings": ceilings,
        "benchmarks": figures,
        "peer": peer if isinstance(peer, dict) else None,
        "training": training_rows(ours_all, peer if isinstance(peer, dict) else None),
        "file_name": f"{slug(device)}_{date}_{slug(commit)}.json",
    }


def _num(v):
    try:
        f = float(v)
        return int(f) if f.is_integer() and "." not in str(v) else f
    except (TypeError, ValueError):
        return v


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------

def judge_step(logs: Path, step: str) -> dict | None:
    return {"tests": summarize_tests, "sanitizer": summarize_sanitizer, "bench": summarize_bench}[step](logs)


def build_summary(logs: Path) -> tuple[dict, dict | None]:
    shell = read_steps(logs)
    info = read_env(logs / "preflight" / "info.env")
    steps, reasons, not_run = {}, [], []
    for step in STEPS:
        rec = shell.get(step)
        detail = judge_step(logs, step) if step != "preflight" else None
        if rec is None:
            pre = shell.get("preflight", {}).get("status")
            why = "the preflight failed" if step != "preflight" and pre == "failed" else "not in STEPS"
            steps[step] = {"status": "skipped", "reason": f"not run: {why}"}
            not_run.append(step)
            continue
        entry = {"status": rec["status"], "seconds": rec["seconds"], "planned_s": rec["planned_s"],
                 "timeout_s": rec["timeout_s"]}
        if rec["reason"]:
            entry["reason"] = rec["reason"]
        if detail is not None and rec["status"] not in ("skipped",):
            entry.update({k: v for k, v in detail.items() if k not in ("status", "contexts")})
            # The files decide; a step the shell saw fail (time limit, missing tool) stays failed.
            entry["status"] = "failed" if (detail["status"] == "failed" or rec["status"] == "failed") else "passed"
        steps[step] = entry
        if entry["status"] == "failed":
            why = entry.get("problems") or [entry.get("reason") or "failed"]
            reasons += [f"{step}: {w}" for w in why]
    bench = judge_step(logs, "bench") if "bench" in shell else None
    results = build_results(logs, bench, info)
    failed = [s for s in STEPS if steps[s]["status"] == "failed"]
    ran = [s for s in STEPS if s not in not_run]
    verdict = "failed" if failed or not ran else "passed"
    summary = {
        "verdict": verdict,
        "failed_steps": failed,
        "steps_not_run": not_run,
        "complete": not not_run,
        "reasons": reasons,
        "device": {"gpu": info.get("gpu_name"), "driver": info.get("driver_version"),
                   "driver_cuda": info.get("driver_cuda")},
        "bundle": {"commit": info.get("bundle_commit"), "date": info.get("bundle_date"),
                   "cuda_runtime": info.get("bundle_cuda")},
        "steps": steps,
        "results_file": results["file_name"] if results and results["benchmarks"] else None,
    }
    return summary, results


def fmt_num(v, digits=0):
    if v is None:
        return "-"
    if isinstance(v, (int, float)):
        return f"{v:,.{digits}f}"
    return str(v)


def table(summary: dict, results: dict | None) -> str:
    lines = []
    dev = summary["device"]
    b = summary["bundle"]
    lines.append(f"cuae GPU check: {dev.get('gpu') or '?'}, driver {dev.get('driver') or '?'} (CUDA {dev.get('driver_cuda') or '?'}); "
                 f"bundle {b.get('commit') or '?'} (CUDA runtime {b.get('cuda_runtime') or '?'})")
    lines.append(f"{'step':<10} {'status':<8} {'time':>6} {'planned':>8}  details")
    for step in STEPS:
        s = summary["steps"][step]
        secs = "" if s.get("seconds") is None else f"{s['seconds']} s"
        plan = "" if s.get("planned_s") is None else f"{s['planned_s']} s"
        lines.append(f"{step:<10} {s['status']:<8} {secs:>6} {plan:>8}  {step_detail(step, s)}".rstrip())
    if results and results.get("training"):
        lines.append("")
        lines.append(f"{'training (images/s)':<36} {'cuae':>10} {'eager':>10} {'compile':>10} {'reduce-oh':>10}   cuae/peer")
        for r in results["training"]:
            peer = r["peer"]
            ratios = " ".join(fmt_num((peer.get(m) or {}).get("ratio_ours_to_peer"), 2) for m in PEER_MODES)
            lines.append(f"{r['name']:<36} {fmt_num(r['ours_images_per_s']):>10} "
                         + " ".join(f"{fmt_num((peer.get(m) or {}).get('images_per_s')):>10}" for m in PEER_MODES)
                         + f"   {ratios}")
    lines.append("")
    if summary["verdict"] == "passed":
        extra = "" if summary["complete"] else f" (steps not run: {', '.join(summary['steps_not_run'])})"
        lines.append(f"verdict: PASSED{extra}")
    else:
        lines.append(f"verdict: FAILED ({', '.join(summary['failed_steps']) or 'nothing ran'})")
        for r in summary["reasons"][:12]:
            lines.append(f"  - {r[:240]}")
        if len(summary["reasons"]) > 12:
            lines.append(f"  ... {len(summary['reasons']) - 12} more in summary.json")
    if results and results["benchmarks"]:
        lines.append(f"results: results.json -> bench/results/{results['file_name']}")
    return "\n".join(lines)


def step_detail(step: str, s: dict) -> str:
    if s["status"] == "skipped":
        return s.get("reason") or ""
    if step == "preflight" or not (s.get("programs") or s.get("runs")):
        return s.get("reason") or ""
    if step == "tests":
        t = s["totals"]
        return (f"{t['run']} tests in {len(s['programs'])} programs: {t['passed']} passed, {t['failed']} failed, "
                f"{t['skipped']} skipped" + (f", {t['crashed']} crashed" if t["crashed"] else ""))
    if step == "sanitizer":
        parts = [f"{tool} {v['errors']} errors ({v['runs']} runs)" for tool, v in s["per_tool"].items()]
        if s.get("uncovered_ops"):
            parts.append(f"{len(s['uncovered_ops'])} ops without a case")
        return ", ".join(parts)
    if step == "bench":
        n = sum(p["benchmarks"] for p in s["programs"].values())
        e = sum(p["errors"] for p in s["programs"].values())
        peer = s.get("peer", {})
        pd = (f"peer {peer.get('modes_measured', 0)} modes measured, {peer.get('modes_in_error', 0)} in error"
              if peer.get("status") != "skipped" else f"peer skipped: {peer.get('reason')}")
        return f"{n} benchmarks, {e} in error; {pd}"
    return ""


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("report")
    r.add_argument("--logs", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    j = sub.add_parser("judge")
    j.add_argument("--logs", required=True, type=Path)
    j.add_argument("--step", required=True, choices=("tests", "sanitizer", "bench"))
    s = sub.add_parser("sanitizer-cases")
    s.add_argument("--ops", required=True, type=Path)
    s.add_argument("--list", action="append", default=[], metavar="PROGRAM=FILE")
    s.add_argument("--per-op", type=int, default=2)
    s.add_argument("--out", type=Path)
    a = ap.parse_args(argv)

    if a.cmd == "sanitizer-cases":
        ops = parse_op_table(a.ops.read_text(encoding="utf-8"))
        listings = {}
        for item in a.list:
            prog, _, path = item.partition("=")
            listings[prog] = parse_gtest_list(read_text(Path(path)))
        sel = select_sanitizer_cases(ops, listings, a.per_op)
        if a.out:
            a.out.write_text(json.dumps(sel, indent=2) + "\n", encoding="utf-8")
        for prog, cases in sorted(sel["programs"].items()):
            print(f"{prog}\t{':'.join(c['test'] for c in cases)}")
        if sel["uncovered_ops"]:
            print("ops without a CUDA case: " + " ".join(sel["uncovered_ops"]), file=sys.stderr)
        return 0

    if a.cmd == "judge":
        res = judge_step(a.logs, a.step)
        if res is None:
            print(f"{a.step}: nothing to judge")
            return 1
        print(f"{a.step}: {res['status']}" + (f": {res['problems'][0]}" if res["problems"] else "")
              + (f" (and {len(res['problems']) - 1} more)" if len(res["problems"]) > 1 else ""))
        for w in res.get("warnings", []):
            print(f"{a.step}: warning: {w}")
        return 0 if res["status"] != "failed" else 1

    summary, results = build_summary(a.logs)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if results and results["benchmarks"]:
        (a.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(table(summary, results))
    return 0 if summary["verdict"] == "passed" else 1


if __name__ == "__main__":
    sys.exit(main())
