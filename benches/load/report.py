#!/usr/bin/env python3
"""Turns benches/load/run.sh's raw.jsonl into results.json and results.md (medians of the runs),
or, with --instructions, its callgrind dumps into instructions.json and instructions.md.

Usage: report.py OUT_DIR --conns N --rate R --runs N --seconds S --open-loop oha|none [--check]
       report.py OUT_DIR --instructions [--max-ratio R]
       report.py OUT_DIR --http2 [--check]
"""

import argparse
import sys
import json
import statistics
from pathlib import Path

SCENARIOS = ["plain", "mirror", "mirror-slow"]
TARGETS = ["direct", "nginx", "mesh", "floor"]
# Ratio rows: (row name, numerator, denominator).
RATIOS = [("mesh_over_nginx", "mesh", "nginx"), ("mesh_over_floor", "mesh", "floor")]
RATIO_TEXT = {"mesh_over_nginx": "**mesh/nginx**", "mesh_over_floor": "**mesh/floor**"}
SCENARIO_TEXT = {
    "plain": "90/10 split",
    "mirror": "90/10 + 100% mirror",
    "mirror-slow": "90/10 + 100% mirror, shadow +50 ms",
}

def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def ms(us):
    return None if us is None else us / 1e3

def mb(kb):
    return None if kb is None else kb / 1024

def summarize(runs, open_loop):
    """Median figures of one (scenario, target)'s runs."""
    rps, cpu, p50, p99, p999, errors, open_rps, open_ok = [], [], [], [], [], [], [], []
    for r in runs:
        c = r["closed"]
        n = c["requests"]
        rps.append(n * 1e6 / c["duration_us"] if c["duration_us"] else None)
        if r["target"] != "direct" and n:
            cpu.append(r["cpu_ticks"] / r["clk_tck"] * 1e6 / n)
        errors.append(
            c["connect_errors"] + c["read_errors"] + c["write_errors"] + c["non_2xx"] + c["timeouts"]
        )
        lat = r["open"] if open_loop and r["open"] else c
        p50.append(lat["p50_us"])
        p99.append(lat["p99_us"])
        p999.append(lat["p999_us"])
        if r["open"]:
            open_rps.append(r["open"]["rps"])
            open_ok.append(r["open"]["ok"] / r["open"]["requests"] if r["open"]["requests"] else 0)
    last = runs[-1]
    return {
        "runs": len(runs),
        "rps": median(rps),
        "p50_ms": ms(median(p50)),
        "p99_ms": ms(median(p99)),
        "p999_ms": ms(median(p999)),
        "cpu_us_per_req": median(cpu),
        "idle_rss_mb": mb(last["idle_rss_kb"]),
        "peak_rss_mb": mb(median([r["peak_rss_kb"] for r in runs])),
        "closed_loop_errors": median(errors),
        "open_loop_achieved_rps": median(open_rps),
        "open_loop_ok_share": median(open_ok),
        "v2_share": last["v2_share"],
        "mirror_counters": last.get("mirror_counters"),
    }

def ratio(a, b):
    return a / b if a is not None and b else None

def fmt(v, spec):
    return "n/a" if v is None else format(v, spec)

def short_counters(text):
    """`mesh_mirror_requests_total{..,outcome="x"} n; ...` -> `x=n, ...` (non-zero only)."""
    out = []
    for item in text.split("; "):
        if 'outcome="' not in item:
            continue
        outcome = item.split('outcome="', 1)[1].split('"', 1)[0]
        n = item.rsplit(" ", 1)[-1]
        if n not in ("0", "0.0"):
            out.append(f"{outcome}={n}")
    return ", ".join(out) or "none"

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--conns", type=int)
    ap.add_argument("--rate", type=int)
    ap.add_argument("--runs", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--open-loop", choices=["oha", "none"])
    ap.add_argument("--check", action="store_true",
                    help="exit 1 unless every step served traffic, direct, mesh and floor answered "
                         "without errors, and both proxies split roughly 90/10")
    ap.add_argument("--instructions", action="store_true",
                    help="report instructions.jsonl (run.sh --instructions) instead")
    ap.add_argument("--http2", action="store_true",
                    help="report http2.jsonl (run.sh --http2) instead")
    ap.add_argument("--max-ratio", type=float,
                    help="with --instructions: exit 1 when mesh needs more than this many times "
                         "the floor's instructions per request")
    a = ap.parse_args()
    out = Path(a.out)
    if a.instructions:
        sys.exit(instructions(out, a.max_ratio))
    if a.http2:
        sys.exit(http2(out, a.check))
    missing = [f for f in ("conns", "rate", "runs", "seconds", "open_loop") if getattr(a, f) is None]
    if missing:
        ap.error("missing: " + ", ".join("--" + f.replace("_", "-") for f in missing))
    open_loop = a.open_loop == "oha"
    raw = [json.loads(line) for line in (out / "raw.jsonl").read_text().splitlines() if line]

    results = {}
    for s in SCENARIOS:
        for t in TARGETS:
            runs = [r for r in raw if r["scenario"] == s and r["target"] == t]
            if runs:
                results.setdefault(s, {})[t] = summarize(runs, open_loop)
    for s, by in results.items():
        for row, num, den in RATIOS:
            m, n = by.get(num), by.get(den)
            if m and n:
                by[row] = {
                    k: ratio(m[k], n[k])
                    for k in ["rps", "p50_ms", "p99_ms", "p999_ms", "cpu_us_per_req", "idle_rss_mb", "peak_rss_mb"]
                }
    # p99 with mirroring relative to the same proxy without (target: mesh within 1.10x).
    mirror_p99 = {}
    for t in ["nginx", "mesh", "floor"]:
        base = results.get("plain", {}).get(t, {}).get("p99_ms")
        mirror_p99[t] = {s: ratio(results.get(s, {}).get(t, {}).get("p99_ms"), base) for s in ["mirror", "mirror-slow"]}

    latency_from = (
        f"open loop (oha, {a.rate} req/s, {a.conns} connections, latency corrected for coordinated omission)"
        if open_loop
        else f"closed loop (wrk, {a.conns} connections; no open-loop tool)"
    )
    doc = {
        "settings": {
            "connections": a.conns,
            "open_loop_rate": a.rate if open_loop else None,
            "runs": a.runs,
            "seconds_per_step": a.seconds,
            "latency_from": latency_from,
        },
        "results": results,
        "p99_with_mirror_over_without": mirror_p99,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")

    lines = [
        f"Medians of {a.runs} run(s) of {a.seconds:g} s per step. Throughput: closed loop (wrk, "
        f"{a.conns} connections). Latency: {latency_from}. CPU: utime+stime of the proxy per "
        "request in the closed-loop run. RSS: idle after start, peak (VmHWM) at the end.",
        "",
        "| scenario | target | req/s | p50 ms | p99 ms | p99.9 ms | CPU us/req | idle RSS MB | peak RSS MB | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, by in results.items():
        for t in TARGETS + [row for row, _, _ in RATIOS]:
            r = by.get(t)
            if r is None:
                continue
            if t in RATIO_TEXT:
                lines.append(
                    f"| {SCENARIO_TEXT[s]} | {RATIO_TEXT[t]} | {fmt(r['rps'], '.3g')}x | {fmt(r['p50_ms'], '.3g')}x "
                    f"| {fmt(r['p99_ms'], '.3g')}x | {fmt(r['p999_ms'], '.3g')}x | {fmt(r['cpu_us_per_req'], '.3g')}x "
                    f"| {fmt(r['idle_rss_mb'], '.3g')}x | {fmt(r['peak_rss_mb'], '.3g')}x | |"
                )
                continue
            err = r["closed_loop_errors"]
            if open_loop and r["open_loop_ok_share"] is not None and r["open_loop_ok_share"] < 0.999:
                err = f"{err:g}; open loop {100 * (1 - r['open_loop_ok_share']):.1f}% failed"
            lines.append(
                f"| {SCENARIO_TEXT[s]} | {t} | {fmt(r['rps'], ',.0f')} | {fmt(r['p50_ms'], '.3f')} "
                f"| {fmt(r['p99_ms'], '.3f')} | {fmt(r['p999_ms'], '.3f')} | {fmt(r['cpu_us_per_req'], '.1f')} "
                f"| {fmt(r['idle_rss_mb'], '.1f')} | {fmt(r['peak_rss_mb'], '.1f')} | {err if isinstance(err, str) else format(err, 'g')} |"
            )
    lines += [
        "",
        "p99 with mirroring over p99 without (same proxy; target for mesh: <= 1.10x):",
        "",
        "| proxy | 100% mirror | 100% mirror, shadow +50 ms |",
        "|---|---:|---:|",
    ]
    for t, by in mirror_p99.items():
        lines.append(f"| {t} | {fmt(by['mirror'], '.3g')}x | {fmt(by['mirror-slow'], '.3g')}x |")
    if open_loop:
        lines += ["", "Open-loop rate achieved (req/s, target " + str(a.rate) + "):", ""]
        lines.append(
            "; ".join(
                f"{s}/{t} {fmt(r.get('open_loop_achieved_rps'), ',.0f')}"
                for s, by in results.items()
                for t, r in by.items()
                if t in TARGETS
            )
        )
    mesh_mirrors = [
        f"{s}: {short_counters(by['mesh']['mirror_counters'])}"
        for s, by in results.items()
        if by.get("mesh", {}).get("mirror_counters")
    ]
    if mesh_mirrors:
        lines += ["", "mesh-proxy mirror counters at the end of each scenario:", ""]
        lines += [f"- {m}" for m in mesh_mirrors]

    (out / "results.md").write_text("\n".join(lines) + "\n")
    if a.check:
        problems = check(results)
        for p in problems:
            print(f"report.py: check failed: {p}", file=sys.stderr)
        if problems:
            sys.exit(1)

def check(results):
    """What makes a run unusable (the --smoke gate in CI): missing steps, no traffic, errors
    from the baseline, mesh-proxy or hyper-floor, a split that is not 90/10. nginx's own errors
    are data (it degrades with a slow mirror), not a harness failure."""
    problems = []
    for s in SCENARIOS:
        for t in TARGETS:
            r = results.get(s, {}).get(t)
            if r is None:
                problems.append(f"{s}/{t}: no measurements")
                continue
            if not r["rps"]:
                problems.append(f"{s}/{t}: served no requests")
            if t in ("direct", "mesh", "floor") and r["closed_loop_errors"]:
                problems.append(f"{s}/{t}: {r['closed_loop_errors']:g} failed requests")
            share = r["v2_share"]
            if t != "direct" and (share is None or not 0.02 <= share <= 0.25):
                problems.append(f"{s}/{t}: v2 got {share} of 200 requests, expected ~0.10")
    return problems

def instructions(out, max_ratio):
    """instructions.md/.json from the callgrind dumps listed in instructions.jsonl; returns the
    exit status (1 when the mesh/floor ratio is over max_ratio)."""
    rows = {}
    for line in (out / "instructions.jsonl").read_text().splitlines():
        r = json.loads(line)
        with open(r["dump"]) as dump:
            total = next(int(l.split()[1]) for l in dump if l.startswith(("summary:", "totals:")))
        n = r["closed"]["requests"]
        rows[r["target"]] = {
            "instructions": total,
            "requests": n,
            "instructions_per_request": total / n if n else None,
            "dump": r["dump"],
        }
    ratio = ratio_of(rows, "mesh", "floor")
    (out / "instructions.json").write_text(
        json.dumps({"results": rows, "mesh_over_floor": ratio}, indent=2) + "\n")
    lines = [
        "User-space instructions per proxied request (callgrind, plain 90/10 split, wrk with 8 connections):",
        "",
        "| target | requests | instructions/request |",
        "|---|---:|---:|",
    ]
    for t, r in rows.items():
        lines.append(f"| {t} | {r['requests']:,} | {fmt(r['instructions_per_request'], ',.0f')} |")
    lines.append(f"| **mesh/floor** | | {fmt(ratio, '.3g')}x |")
    (out / "instructions.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if max_ratio is not None and (ratio is None or ratio > max_ratio):
        print(f"report.py: mesh-proxy needs {fmt(ratio, '.3g')}x hyper-floor's instructions per "
              f"request, more than the allowed {max_ratio:g}x", file=sys.stderr)
        return 1
    return 0

def http2(out, check_it):
    """http2.md/.json from http2.jsonl (run.sh --http2); returns the exit status (with
    check_it: 1 unless every run answered all its requests 2xx)."""
    raw = [json.loads(l) for l in (out / "http2.jsonl").read_text().splitlines() if l]
    results, problems = {}, []
    for r in raw:
        h = r["h2load"]
        if not h.get("requests") or h.get("status_2xx") != h.get("requests") or h.get("failed"):
            problems.append(f"{r['scenario']}/{r['target']} run {r['run']}: {h}")
    for s in ("h2-split", "grpc"):
        for t in ("nginx", "mesh"):
            runs = [r for r in raw if r["scenario"] == s and r["target"] == t]
            if not runs:
                continue
            def med(f):
                vals = [f(r) for r in runs]
                vals = [v for v in vals if v is not None]
                return median(vals) if vals else None
            results.setdefault(s, {})[t] = {
                "rps": med(lambda r: r["h2load"]["rps"]),
                "mean_ms": med(lambda r: r["h2load"]["mean_us"] and r["h2load"]["mean_us"] / 1e3),
                "max_ms": med(lambda r: r["h2load"]["max_us"] and r["h2load"]["max_us"] / 1e3),
                "cpu_us_per_req": med(lambda r: r["cpu_ticks"] * 1e6 / r["clk_tck"] / r["h2load"]["requests"]
                                      if r["h2load"]["requests"] else None),
                "idle_rss_mb": med(lambda r: mb(r["idle_rss_kb"])),
                "peak_rss_mb": med(lambda r: mb(r["peak_rss_kb"])),
                "failed": sum((r["h2load"]["requests"] or 0) - (r["h2load"]["status_2xx"] or 0) for r in runs),
            }
        by = results.get(s, {})
        if "mesh" in by and "nginx" in by:
            by["mesh/nginx"] = {k: ratio(by["mesh"][k], by["nginx"][k])
                                for k in ["rps", "mean_ms", "max_ms", "cpu_us_per_req", "idle_rss_mb", "peak_rss_mb"]}
    (out / "http2.json").write_text(json.dumps(results, indent=2) + "\n")
    names = {"h2-split": "HTTP/2 client, 90/10 split to HTTP/1.1", "grpc": "unary gRPC to an HTTP/2 upstream"}
    lines = [
        "HTTP/2 clients (h2load, h2c, 10 streams per connection), medians of the runs:",
        "",
        "| scenario | target | req/s | mean ms | max ms | CPU us/req | idle RSS MB | peak RSS MB | non-2xx |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, by in results.items():
        for t, v in by.items():
            if "/" in t:
                cells = [fmt(v[k], ".3g") + "x" for k in
                         ("rps", "mean_ms", "max_ms", "cpu_us_per_req", "idle_rss_mb", "peak_rss_mb")]
                lines.append(f"| {names[s]} | **{t}** | " + " | ".join(cells) + " | |")
                continue
            lines.append(
                f"| {names[s]} | {t} | {fmt(v['rps'], ',.0f')} | {fmt(v['mean_ms'], '.3f')} | "
                f"{fmt(v['max_ms'], '.2f')} | {fmt(v['cpu_us_per_req'], '.1f')} | {fmt(v['idle_rss_mb'], '.1f')} | "
                f"{fmt(v['peak_rss_mb'], '.1f')} | {v['failed']} |")
    (out / "http2.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if check_it and problems:
        for p in problems:
            print("report.py: " + p, file=sys.stderr)
        return 1
    return 0

def ratio_of(rows, num, den):
    a, b = rows.get(num, {}), rows.get(den, {})
    return ratio(a.get("instructions_per_request"), b.get("instructions_per_request"))

if __name__ == "__main__":
    main()
