"""Presenting runs: a side-by-side ``rich`` table and a matplotlib (Agg) timeline plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

# (metric key, column label, format)
HEADLINE: tuple[tuple[str, str, str], ...] = (
    ("offered_intents", "offered intents", "{:d}"),
    ("completed_intents", "completed intents", "{:d}"),
    ("goodput_ratio", "goodput ratio", "{:.3f}"),
    ("attempts_per_intent", "attempts / intent", "{:.2f}"),
    ("waste_fraction", "waste fraction", "{:.3f}"),
    ("latency_p50_ms", "latency p50 ms", "{:.0f}"),
    ("latency_p99_ms", "latency p99 ms", "{:.0f}"),
    ("recovery_s", "recovery s", "{:.1f}"),
    ("jain_fairness", "Jain fairness", "{:.3f}"),
    ("high_priority_availability", "high-prio availability", "{:.4f}"),
    ("directive_messages", "directive messages", "{:d}"),
    ("false_storm_directives", "false storm directives", "{:d}"),
)


def fmt(value: Any, spec: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}:{v}" for k, v in value.items()) or "—"
    return spec.format(value)


def comparison_table(results: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    table.add_column("metric", style="bold", no_wrap=True)
    for m in results:
        name = str(m["policy"])
        table.add_column(name, justify="right", no_wrap=True, min_width=max(9, len(name)))
    for key, label, spec in HEADLINE:
        table.add_row(label, *[fmt(m.get(key), spec) for m in results])
    table.add_row("directives by kind", *[fmt(m.get("directives_by_kind"), "") for m in results])
    return table


def print_comparison(results: list[dict[str, Any]], title: str,
                     console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
            console = Console(width=max(120, 30 + 23 * len(results)))
    console.print(comparison_table(results, title))


def comparison_markdown(results: list[dict[str, Any]]) -> str:
    """The same table as Markdown (for reports and READMEs)."""
    head = "| metric | " + " | ".join(str(m["policy"]) for m in results) + " |"
    sep = "|---|" + "---:|" * len(results)
    lines = [head, sep]
    for key, label, spec in HEADLINE:
        lines.append(f"| {label} | " + " | ".join(fmt(m.get(key), spec) for m in results) + " |")
    return "\n".join(lines)


def plot_timelines(results: list[dict[str, Any]], path: str | Path, title: str,
                   fault_window_s: tuple[float, float] | None = None) -> Path:
    """Write a PNG: cohort goodput, goodput/s, attempts/s and errors/s for each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (
        ("cohort_goodput", "share of arrivals completed"),
        ("goodput", "intents completed in time / s"),
        ("attempts", "attempts / s"),
        ("errors", "failed attempts / s"),
    )
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 10), sharex=True)
    for ax, (key, label) in zip(axes, panels, strict=True):
        for m in results:
            tl = m["timeline"]
            ys = [float("nan") if v is None else v for v in tl[key]]
            ax.plot(tl["t_s"], ys, label=str(m["policy"]), linewidth=1.2)
        if fault_window_s is not None:
            ax.axvspan(fault_window_s[0], fault_window_s[1], color="red", alpha=0.12)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=4, loc="lower left")
    axes[-1].set_xlabel("virtual time (s)")
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
