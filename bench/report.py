"""Turning results into the Markdown table and the cost-against-size chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _status(met: Any) -> str:
    if met is True:
        return "met"
    if met is False:
        return "**MISSED**"
    return "info"


def table_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | metric | calsync | baseline | ratio | target | status | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, outcome in results.items():
        for fig in outcome.get("figures", []):
            lines.append(
                "| "
                + " | ".join(
                    [
                        name,
                        str(fig.get("metric", "")),
                        _fmt(fig.get("calsync")),
                        _fmt(fig.get("baseline")),
                        _fmt(fig.get("ratio")),
                        str(fig.get("target", "")),
                        _status(fig.get("met")),
                        str(fig.get("note", "") or ""),
                    ]
                )
                + " |"
            )
    return lines


def markdown(report: dict[str, Any]) -> str:
    scenarios = report["scenarios"]
    figures = [f for o in scenarios.values() for f in o.get("figures", [])]
    figures += [f for o in (report.get("separate") or {}).values() for f in o["figures"]]
    missed = [
        f"{n}: {f['metric']}"
        for n, o in scenarios.items()
        for f in o["figures"]
        if f.get("met") is False
    ]
    head = [
        "# calsync benchmark results",
        "",
        f"Generated {report['generated_at']} on {report['machine']['cpus']} CPUs, Python "
        f"{report['machine']['python']}; whole run {report['total_seconds']:.0f} s"
        + (" (--quick: small sizes, smoke run only)" if report.get("quick") else "")
        + ". Ratio is baseline / calsync (above 1: calsync does better). The baseline is "
        "defined in `bench/baseline.py`: full listing of both sides every run, one request "
        "per write, no batching, no delta.",
        "",
        f"{sum(1 for f in figures if f.get('met') is True)} targets met, "
        f"{sum(1 for f in figures if f.get('met') is False)} missed, "
        f"{sum(1 for f in figures if f.get('met') is None)} figures without a target verdict.",
        "",
    ]
    body = table_lines(scenarios)
    tail = [
        "",
        "Scenario run times: "
        + ", ".join(f"{n} {o.get('seconds', 0):.0f} s" for n, o in scenarios.items())
        + ".",
    ]
    notes = [f"- **{n}**: {o['notes']}" for n, o in scenarios.items() if o.get("notes")]
    if notes:
        tail += ["", "## Notes", "", *notes]
    for name, extra in (report.get("separate") or {}).items():
        tail += [
            "",
            f"## Measured separately: {name.replace('_', ' ')}",
            "",
            f"Run with `--only first_sync --sizes 10000` on {extra['generated_at']} "
            f"({extra['seconds']:.0f} s), too long for this run's budget. "
            + (extra.get("context") or ""),
            "",
            *table_lines({name: extra}),
        ]
        missed += [f"{name}: {f['metric']}" for f in extra["figures"] if f.get("met") is False]
    if missed:
        tail += ["", "## Missed targets", "", *(f"- {m}" for m in missed)]
    return "\n".join(head + body + tail) + "\n"


def chart(report: dict[str, Any], path: Path) -> Path | None:
    """Provider requests and seconds against calendar size (first sync, then idle)."""
    first = report["scenarios"].get("first_sync", {})
    points = first.get("points")
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p["events"] for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [
        ("calsync first sync", "calsync", "o-", "tab:blue"),
        ("baseline first sync", "baseline", "s--", "tab:orange"),
        ("calsync idle re-sync", "calsync_idle", "o-", "tab:green"),
        ("baseline idle re-sync", "baseline_idle", "s--", "tab:red"),
    ]
    for label, key, style, color in series:
        left.plot(xs, [p[key]["requests"] for p in points], style, label=label, color=color)
        right.plot(xs, [p[key]["seconds"] for p in points], style, label=label, color=color)
    idle = report["scenarios"].get("incremental_idle", {})
    if idle.get("calsync") and idle.get("baseline"):
        size = idle.get("size", 10_000)
        best = min(idle["calsync"], key=lambda c: c["seconds"])
        for ax, key in ((left, "requests"), (right, "seconds")):
            ax.plot([size], [best[key]], "o", color="tab:green", mfc="none", ms=9)
            ax.plot([size], [idle["baseline"][key]], "s", color="tab:red", mfc="none", ms=9)
        left.annotate("idle, linked 10k calendar", (size, best["requests"]), fontsize=7)
    full = (report.get("separate") or {}).get("first_sync_full_size", {}).get("points")
    if full:
        big = full[-1]
        for _label, key, style, color in series[:2]:
            for ax, metric in ((left, "requests"), (right, "seconds")):
                ax.plot([big["events"]], [big[key][metric]], style[0], color=color, mfc="none")
        left.annotate(
            "first sync, separate 10k run",
            (big["events"], big["calsync"]["requests"]),
            fontsize=7,
            ha="right",
            va="bottom",
        )
    left.set_title("Provider requests per sync")
    right.set_title("Wall time per sync (s)")
    for ax in (left, right):
        ax.set_xlabel("events in the Outlook calendar")
        ax.set_yscale("symlog")
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    fig.suptitle("calsync vs naive baseline: cost against calendar size (Graph <-> SuiteCRM)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
