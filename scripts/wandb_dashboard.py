#!/usr/bin/env python
"""Build a W&B report with the paper's panels from the runs sphere-edit logged to a project:
edit quality (efficacy, generalization, specificity, score) and hyperspherical energy against the
number of edits, one panel grid per editor, the baseline and + SPHERE side by side (grouped by
``sphere.enabled``, seeds aggregated), and the runs' figures (``figures/*`` images).

Needs ``wandb-workspaces`` (pip install wandb-workspaces; not a dependency of sphere-edit) and a
W&B login with write access to the project: it talks to the W&B server, so it cannot run offline
(sync offline runs first: ``wandb sync <run dir>/wandb/offline-run-*``). ``--dry-run`` builds the
report without a server and prints its panels.

Examples:
    python scripts/wandb_dashboard.py --entity me --project sphere
    python scripts/wandb_dashboard.py --project sphere --group table1_llama3-2026-12-06_08-30-00 \\
        --editors memit alphaedit --title "Table 1, Llama3-8B"
"""

from __future__ import annotations

import argparse
import sys

EDITORS = ("memit", "prune", "rect", "alphaedit", "rome")
QUALITY = ("efficacy", "generalization", "specificity", "score")


def build_report(
    project: str,
    entity: str | None,
    *,
    editors: list[str],
    group: str | None = None,
    title: str = "SPHERE: sequential editing",
):
    """The report (not saved): per editor, a grid of line plots against n_edits."""
    import wandb_workspaces.reports.v2 as wr

    blocks: list = [
        wr.H1(text=title),
        wr.P(
            text="Edit quality and hyperspherical energy against the number of edits; in each panel "
            "the baseline (sphere.enabled=false) and + SPHERE (true), mean over seeds."
        ),
    ]
    for editor in editors:
        where = [f"Config('editor.name') = '{editor}'"]
        if group:
            where.append(f"Group = '{group}'")
        runset = wr.Runset(
            entity=entity or "",
            project=project,
            name=editor,
            filters=" and ".join(where),
            groupby=["sphere.enabled"],  # baseline and + SPHERE: one line each, seeds aggregated
        )
        panels = [
            wr.LinePlot(title=f"{editor}: {m}", x="n_edits", y=[m], groupby_aggfunc="mean") for m in QUALITY
        ]
        panels.append(wr.LinePlot(title=f"{editor}: HE per layer", x="n_edits", metric_regex="he/layer_.*"))
        panels.append(wr.MediaBrowser(title=f"{editor}: figures", media_keys=["figures/metrics_vs_edits"]))
        blocks += [wr.H2(text=editor), wr.PanelGrid(runsets=[runset], panels=panels)]
    kwargs = {"entity": entity} if entity else {}
    return wr.Report(project=project, title=title, blocks=blocks, **kwargs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--project", default="sphere", help="W&B project (logger.project)")
    p.add_argument("--entity", default=None, help="W&B entity (default: the login's)")
    p.add_argument(
        "--group", default=None, help="only runs of this W&B group (a sweep: <preset>-<date>_<time>)"
    )
    p.add_argument("--editors", nargs="+", default=list(EDITORS), choices=EDITORS)
    p.add_argument("--title", default="SPHERE: sequential editing")
    p.add_argument("--dry-run", action="store_true", help="build the report, print its panels, save nothing")
    args = p.parse_args(argv)
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        print("wandb_dashboard: needs wandb-workspaces: pip install wandb-workspaces", file=sys.stderr)
        return 2
    report = build_report(
        args.project,
        args.entity or ("offline" if args.dry_run else None),
        editors=args.editors,
        group=args.group,
        title=args.title,
    )
    if args.dry_run:
        for block in report.blocks:
            for panel in getattr(block, "panels", []):
                print(f"{type(panel).__name__}: {panel.title}")
        return 0
    report.save()
    print(report.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
