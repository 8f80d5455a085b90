"""Write the report of a visualizer run: summary tables, hypothesis verdicts, plots, index.html.

Reads OUT/stats.json (and cka.json, manifest.json when present) as written by
``ddpm-lens visualize`` and writes OUT/summary.csv, summary.json, hypotheses.json,
plots/*.png and index.html (open it in a browser straight from the file system).

Example::

    ddpm-lens report feature_visualizations
    ddpm-lens report feature_visualizations --a baseline --b curriculum
"""

from __future__ import annotations

import argparse

HELP = "summarise a visualizer run: tables, hypotheses, plots and an HTML page"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", metavar="OUT", help="the --output_dir of a ddpm-lens visualize run")
    p.add_argument(
        "--a",
        default="baseline",
        metavar="KEY",
        help="model key of the reference model in stats.json (default: baseline); differences are b - a",
    )
    p.add_argument(
        "--b",
        default="curriculum",
        metavar="KEY",
        help="model key of the model compared against it (default: curriculum)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=None,
        help="significance level of the decision rule (default: the run's --alpha, else 0.05)",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from ddpm_lens.output.report import build_report

    written = build_report(args.out, a=args.a, b=args.b, alpha=args.alpha)
    verdicts = json.loads(written["hypotheses.json"].read_text(encoding="utf-8"))["hypotheses"]
    for h in verdicts:
        print(f"{h['id']} {h['verdict']}: {h['claim']}")
    index = written["index.html"]
    print(f"wrote {len(written)} files; open {index} ({index.resolve().as_uri()})")
    return 0
