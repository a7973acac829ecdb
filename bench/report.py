#!/usr/bin/env python3
"""Turns the per-run JSON files of bench/run into a markdown table and one JSON document.

Input: <results>/<system>.<measure>.json written by `gatehouse-load`, <system>.idle.json from
`gatehouse-load proc`, versions.txt. Output: markdown on stdout and in --md, JSON in --json.
Targets are reported as met/missed; a missed target never fails the run.
"""
import argparse
import datetime
import json
import os

NAMES = {"direct": "direct (floor)", "gatehouse": "Gatehouse", "gatehouse-nolimits": "Gatehouse, no limits",
         "nginx": "nginx", "litellm": "LiteLLM", "portkey": "Portkey"}
PEERS = ["nginx", "litellm", "portkey"]


def load(res, system, measure):
    try:
        with open(os.path.join(res, f"{system}.{measure}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def get(d, *path):
    for p in path:
        if d is None:
            return None
        d = d.get(p) if isinstance(d, dict) else None
    return d


def fmt(v, digits=2):
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, str):
        return v
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def limits_cost(m):
    """Lines comparing `gatehouse` (limits on the key) with `gatehouse-nolimits`; [] if either is missing."""
    on, off = m.get("gatehouse"), m.get("gatehouse-nolimits")
    if not on or not off:
        return []
    lines = []
    r = ratio(on.get("rps"), off.get("rps"))
    if r is not None:
        lines.append(f"max throughput: {fmt(on['rps'])} vs {fmt(off['rps'])} req/s "
                     f"({(r - 1) * 100:+.1f} % with limits)")
    for key, label in (("lat_p50", "latency at the fixed rate p50"), ("lat_p99", "latency at the fixed rate p99"),
                       ("thr_p99", "latency under max load p99"), ("ttft_p50", "streams TTFT p50")):
        a, b = on.get(key), off.get(key)
        if a is not None and b is not None:
            lines.append(f"{label}: {fmt(a)} vs {fmt(b)} ms ({a - b:+.3f} ms with limits)")
    a, b = on.get("cpu_per_10k"), off.get("cpu_per_10k")
    if a is not None and b is not None:
        lines.append(f"CPU seconds per 10k requests: {fmt(a)} vs {fmt(b)} ({a - b:+.3f} s with limits)")
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--rate", required=True)
    ap.add_argument("--pinning", required=True)
    ap.add_argument("--params", required=True)
    ap.add_argument("--systems", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    a = ap.parse_args()
    res = a.results
    systems = a.systems.split()
    versions = {}
    try:
        for line in open(os.path.join(res, "versions.txt")):
            k, _, v = line.strip().partition("=")
            versions[k] = v
    except OSError:
        pass

    m = {}  # system -> measure name -> value
    raw = {}
    for s in systems:
        t = load(res, s, "throughput")
        lat = load(res, s, "latency")
        st = load(res, s, "streams")
        fb = load(res, s, "flood_badsum")
        fu = load(res, s, "flood_unknown")
        idle = load(res, s, "idle")
        raw[s] = {"throughput": t, "latency": lat, "streams": st, "flood_badsum": fb,
                  "flood_unknown": fu, "idle": idle}
        d = {}
        if t:
            ok = get(t, "statuses", "200") or 0
            d["rps"] = ok / t["duration_s"]
            d["non200"] = sum(v for k, v in t["statuses"].items() if k != "200") + t["errors"]
            d["thr_p50"] = get(t, "latency_ms", "p50")
            d["thr_p99"] = get(t, "latency_ms", "p99")
            cpu = get(t, "proc", "cpu_seconds")
            reqs = t.get("requests") or 0
            d["cpu_per_10k"] = cpu / reqs * 10000 if cpu is not None and reqs else None
            pk = get(t, "proc", "rss_peak_kb")
            d["rss_peak_thr_mb"] = pk / 1024 if pk else None
        if lat:
            for p in ("p50", "p99", "p999"):
                d[f"lat_{p}"] = get(lat, "latency_ms", p)
                d[f"svc_{p}"] = get(lat, "service_ms", p)
            d["lat_rps"] = lat.get("rps")
            d["lat_non200"] = sum(v for k, v in lat["statuses"].items() if k != "200") + lat["errors"]
        if st:
            d["ttft_p50"] = get(st, "ttft_ms", "p50")
            d["ttft_p99"] = get(st, "ttft_ms", "p99")
            d["streams_whole"] = f'{st["complete_and_whole"]}/{st["streams"]}'
            d["streams_all"] = st["all_delivered"]
            pk = get(st, "proc", "rss_peak_kb")
            d["rss_peak_streams_mb"] = pk / 1024 if pk else None
        for key, f in (("badsum", fb), ("unknown", fu)):
            if f:
                sts = f["statuses"]
                rej = sum(v for k, v in sts.items() if k.startswith("4"))
                d[f"flood_{key}"] = rej / f["duration_s"]
                d[f"flood_{key}_status"] = ",".join(sorted(k for k in sts)) or "none"
                d[f"flood_{key}_401"] = (sts.get("401", 0)) / f["duration_s"]
        if idle:
            d["rss_idle_mb"] = idle["rss_kb"] / 1024
        m[s] = d

    direct = m.get("direct", {})
    for s, d in m.items():
        for p in ("p50", "p99", "p999"):
            if d.get(f"lat_{p}") is not None and direct.get(f"lat_{p}") is not None:
                d[f"ovh_{p}"] = d[f"lat_{p}"] - direct[f"lat_{p}"]
        for p in ("p50", "p99"):
            if d.get(f"ttft_{p}") is not None and direct.get(f"ttft_{p}") is not None:
                d[f"ttft_ovh_{p}"] = d[f"ttft_{p}"] - direct[f"ttft_{p}"]

    rows = [
        ("1. Max throughput, closed loop (req/s, 200 only)", "rps", True),
        ("1. latency under max load p50 (ms)", "thr_p50", False),
        ("1. latency under max load p99 (ms)", "thr_p99", False),
        (f"2. latency at {a.rate} req/s p50 (ms, from intended send)", "lat_p50", False),
        ("2. latency p99 (ms)", "lat_p99", False),
        ("2. latency p99.9 (ms)", "lat_p999", False),
        ("2. overhead p50 (ms, minus direct)", "ovh_p50", False),
        ("2. overhead p99 (ms)", "ovh_p99", False),
        ("2. overhead p99.9 (ms)", "ovh_p999", False),
        ("3. streams: TTFT p50 (ms)", "ttft_p50", False),
        ("3. streams: TTFT p99 (ms)", "ttft_p99", False),
        ("3. streams: TTFT overhead p50 (ms)", "ttft_ovh_p50", False),
        ("3. streams: TTFT overhead p99 (ms)", "ttft_ovh_p99", False),
        ("3. streams: complete, all chunks + one [DONE]", "streams_whole", None),
        ("3. streams: peak RSS (MB)", "rss_peak_streams_mb", False),
        ("4. bad-checksum key flood: rejected/s", "flood_badsum", True),
        ("4. bad-checksum key flood: statuses", "flood_badsum_status", None),
        ("4. unknown key flood: rejected/s", "flood_unknown", True),
        ("4. unknown key flood: statuses", "flood_unknown_status", None),
        ("5. idle RSS (MB)", "rss_idle_mb", False),
        ("5. peak RSS under (1) (MB)", "rss_peak_thr_mb", False),
        ("5. CPU seconds per 10k requests (1)", "cpu_per_10k", False),
    ]
    peers = [p for p in PEERS if p in systems]
    out = []
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"## Benchmark run: {now}, mode `{a.mode}`\n")
    out.append(f"- Pinning: {a.pinning}")
    out.append(f"- Parameters: {a.params}, fixed rate {a.rate} req/s")
    out.append("- Versions: " + "; ".join(f"{k} {v}" for k, v in versions.items()))
    out.append("")
    head = ["measure"] + [NAMES.get(s, s) for s in systems] + [f"Gatehouse/{NAMES[p]}" for p in peers]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    # Targets and peer ratios use Gatehouse as deployed (limits on the key) when it ran.
    gh = m.get("gatehouse") or m.get("gatehouse-nolimits", {})
    for label, key, _higher in rows:
        cells = [label] + [fmt(m[s].get(key)) for s in systems]
        for p in peers:
            if _higher is None:
                cells.append("")
            else:
                r = ratio(gh.get(key), m[p].get(key))
                cells.append(f"{r:.2f}×" if r is not None else "n/a")
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    out.append("Ratios are Gatehouse's figure divided by the peer's: above 1 is better for "
               "throughput and rejections/s, below 1 is better for latency, overhead, memory and CPU. "
               "Overhead ratios mix noise when the peer's overhead is near zero.")
    out.append("")

    cost = limits_cost(m)
    if cost:
        out.append("Cost of limits (same server, same run: the key with a rate limit and token quotas "
                   "vs a key without limits; one run on a shared machine, so differences of a few "
                   "percent are noise):\n")
        for line in cost:
            out.append(f"- {line}")
        out.append("")

    # targets
    targets = []

    def target(name, value, ok):
        targets.append({"target": name, "value": value, "met": ok})

    def le(v, lim):
        return None if v is None else v <= lim

    target("overhead p50 ≤ 0.2 ms at the fixed rate", gh.get("ovh_p50"), le(gh.get("ovh_p50"), 0.2))
    target("overhead p99 ≤ 1 ms at the fixed rate", gh.get("ovh_p99"), le(gh.get("ovh_p99"), 1.0))
    for p, k in (("nginx", 0.7), ("litellm", 10.0), ("portkey", 3.0)):
        r = ratio(gh.get("rps"), m.get(p, {}).get("rps"))
        target(f"throughput ≥ {k} × {NAMES[p]}", r, None if r is None else r >= k)
    target("streams: TTFT overhead p99 ≤ 2 ms", gh.get("ttft_ovh_p99"), le(gh.get("ttft_ovh_p99"), 2.0))
    target("streams: all chunks delivered", gh.get("streams_whole"), gh.get("streams_all"))
    target("streams: peak RSS ≤ 200 MB", gh.get("rss_peak_streams_mb"), le(gh.get("rss_peak_streams_mb"), 200))
    target("idle RSS ≤ 40 MB", gh.get("rss_idle_mb"), le(gh.get("rss_idle_mb"), 40))
    for k in ("badsum", "unknown"):
        v = gh.get(f"flood_{k}_401")
        target(f"{'bad-checksum' if k == 'badsum' else 'unknown'} key flood: 401/s ≥ max valid throughput",
               v, None if v is None or gh.get("rps") is None else v >= gh["rps"])
    out.append("Targets (reported, never gating):\n")
    for t in targets:
        state = {True: "met", False: "MISSED", None: "not measured"}[t["met"]]
        v = t["value"]
        vs = fmt(v) if not isinstance(v, float) else f"{v:.3g}"
        out.append(f"- {t['target']}: **{state}** (Gatehouse: {vs})")
    out.append("- no database query for a bad-checksum key: not observable from outside; covered by the gateway's tests")
    out.append("")
    md = "\n".join(out)
    print(md)
    with open(a.md, "w") as f:
        f.write(md)
    with open(a.json, "w") as f:
        json.dump({"date": now, "mode": a.mode, "rate": float(a.rate), "pinning": a.pinning,
                   "params": a.params, "versions": versions, "figures": m, "targets": targets,
                   "limits_cost": cost, "raw": raw}, f, indent=2)


if __name__ == "__main__":
    main()
