"""The tuner's outputs: ``report.json`` (the result, the command, seconds, the environment),
``report.md``, ``pareto.png`` (matplotlib, headless) and ``settings.json`` (the chosen
configuration in the app's settings format)."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from .. import __version__
from .search import TuneResult


def environment() -> dict[str, Any]:
    import numpy as np
    import torch
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "numpy": np.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.is_available(), "adapatch": __version__}


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def report_markdown(report: dict[str, Any]) -> str:
    """``report.md``: the target, the chosen configuration (search and held-out), the front."""
    r = report
    obj = r["objective"]
    lines = [f"# adapatch tune: {r['model']['name']}", "",
             f"Objective: **{obj}** "
             f"({'labels given' if obj == 'accuracy' else 'label-free: top-1 agreement with the full grid'}); "
             f"{r['images']['search']} search images, {r['images']['held_out']} held out; "
             f"{r['forwards']:,} forward passes (budget {r['budget_evals']:,}) in {r['seconds']:.1f} s.", ""]
    t = r["target"]
    lines.append("Target: " + (f"MACs ratio <= {t['macs_ratio']:.2f}" if t["macs_ratio"] is not None
                               else f"at most {t['max_drop']:.3f} below the full grid's {obj}"))
    lines.append("")
    c = r["chosen"]
    if c is None:
        lines.append("**No configuration on the front meets the target.**")
    else:
        h = r["held_out"].get("chosen")
        hf = r["held_out"].get("full_grid")
        lines += ["| | split | " + obj + " | MACs ratio | mean tokens |", "|---|---|---|---|---|",
                  f"| chosen: {c['key']} | search | {_pct(c['objective'])} | {c['macs_ratio']:.3f} "
                  f"| {c['mean_tokens']:.1f} |",
                  f"| full grid | search | {_pct(r['full_grid']['objective'])} | 1.000 "
                  f"| {r['full_grid']['mean_tokens']:.0f} |"]
        if h:
            lines += [f"| chosen: {c['key']} | held out | {_pct(h['objective'])} | {h['macs_ratio']:.3f} "
                      f"| {h['mean_tokens']:.1f} |",
                      f"| full grid | held out | {_pct(hf['objective'])} | 1.000 | {hf['mean_tokens']:.0f} |"]
    lines += ["", "## Pareto front (search split)", "",
              f"| configuration | {obj} | agreement | KL | MACs ratio | tokens |",
              "|---|---|---|---|---|---|"]
    for e in r["front"]:
        lines.append(f"| {e['key']} | {_pct(e['objective'])} | {_pct(e['agreement'])} | {e['kl']:.3f} | "
                     f"{e['macs_ratio']:.3f} | {e['mean_tokens']:.1f} |")
    lines += ["", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)


def pareto_png(report: dict[str, Any], path: str | os.PathLike) -> None:
    """Every configuration of the final rung (grey), the front (line) and the chosen one (star)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    final = [e for e in report["evaluated"] if e["rung"] == max(x["rung"] for x in report["evaluated"])]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter([e["macs_ratio"] for e in final], [e["objective"] for e in final], s=14, c="#9aa0a6",
               label="scored on the whole search split")
    front = report["front"]
    ax.plot([e["macs_ratio"] for e in front], [e["objective"] for e in front], "-o", c="#1f77b4", ms=4,
            label="Pareto front")
    ax.scatter([1.0], [report["full_grid"]["objective"]], marker="s", c="black", label="full grid")
    if report["chosen"] is not None:
        c = report["chosen"]
        ax.scatter([c["macs_ratio"]], [c["objective"]], marker="*", s=180, c="#d62728", zorder=5,
                   label=f"chosen: {c['key']}")
    ax.set_xlabel("MACs / full grid's MACs")
    ax.set_ylabel(report["objective"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_report(result: TuneResult, model_name: str, command: str, settings: dict | None,
                 skipped: list[dict] | None = None) -> dict[str, Any]:
    r = result.to_dict()
    r["model"] = {"name": model_name, **r["model"]}
    r["images"] = {"search": len(result.search_images), "held_out": len(result.held_out_images)}
    r["command"] = command
    r["environment"] = environment()
    r["skipped"] = list(skipped or [])
    r["settings"] = settings
    return r


def write_outputs(report: dict[str, Any], out: str | os.PathLike) -> dict[str, str]:
    """Write report.json, report.md, pareto.png and (when a configuration was chosen) settings.json."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    paths = {"report.json": d / "report.json", "report.md": d / "report.md", "pareto.png": d / "pareto.png"}
    paths["report.json"].write_text(json.dumps(report, indent=1))
    paths["report.md"].write_text(report_markdown(report))
    pareto_png(report, paths["pareto.png"])
    if report.get("settings") is not None:
        paths["settings.json"] = d / "settings.json"
        paths["settings.json"].write_text(json.dumps(report["settings"], indent=1))
    return {k: str(v) for k, v in paths.items()}
