#!/usr/bin/env python3
"""Plots the latency percentiles of a scripts/bench.sh run (its summary.json) as a PNG.

    scripts/bench_plot.py SUMMARY_JSON OUT_PNG

The simulator reports percentiles, not raw samples, so each setup's distribution is drawn
as its p50/p90/p99/max per request type (log scale).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(summary_path, out_path):
    summary = json.load(open(summary_path))
    loop = summary["loopback"]
    setups = list(loop)
    types = sorted({t for s in setups for t in loop[s]["types"]})
    marks = [("p50", "o"), ("p90", "s"), ("p99", "^"), ("max", "x")]
    panels = 2 if summary.get("netns") else 1
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    width = 0.8 / max(len(types), 1)
    for ti, t in enumerate(types):
        for key, marker in marks:
            xs, ys = [], []
            for si, s in enumerate(setups):
                a = loop[s]["types"].get(t)
                if a:
                    xs.append(si + (ti - (len(types) - 1) / 2) * width)
                    ys.append(a[key])
            ax.scatter(xs, ys, marker=marker, label=f"{t} {key}" if key == "p50" else None,
                       color=f"C{ti}", s=24)
        ax.plot([], [], " ", label=None)
    ax.set_xticks(range(len(setups)))
    ax.set_xticklabels(setups)
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.set_title("loopback: o p50, s p90, ^ p99, x max")
    ax.grid(True, which="both", axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    if panels == 2:
        ax = axes[0][1]
        cases = list(summary["netns"])
        for ci, c in enumerate(cases):
            rep = summary["netns"][c]["report"]
            for ti, t in enumerate(sorted(rep)):
                if not rep[t]["passed"]:
                    continue
                l = rep[t]["latency"]
                ax.scatter([ci + 0.1 * ti] * 3, [l["p50_ms"], l["p99_ms"], l["max_ms"]],
                           marker="o", color=f"C{ti}", s=16)
            ax.hlines(summary["netns"][c]["rtt"], ci - 0.3, ci + 0.5, color="k", lw=1)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels([f"{c} ms" for c in cases])
        ax.set_ylabel("latency (ms)")
        ax.set_title("2-of-3 with delays between cosigners (line: RTT to nearest peer)")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
