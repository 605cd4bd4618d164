"""HE change per layer, its mean magnitude and its signed mean, from re-evaluated HE files.

``sphere-eval RUN --at N --pre --merge 'eval.evaluators=[he]'`` writes the HE of every edited layer
at the unedited and the saved points to ``RUN/reeval/eval.evaluators-he.json``; this prints, per
file, the change from the first point to the last (%, per layer) and the report's two summaries
(``sphere.report.collect.he_summaries``): the mean over layers of |ΔHE| (the headline) and the signed
mean (which can cancel between layers).

    python scripts/reeval_he.py docs/results/claim4_smollm2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sphere.evaluation.he import he_summaries


def main(argv: list[str]) -> int:
    roots = [Path(a) for a in argv] or [Path(".")]
    for root in roots:
        for f in sorted(root.rglob("reeval/*he*.json")):
            points = json.loads(f.read_text())["points"]
            first, last = points[0], points[-1]
            change = {
                k.removeprefix("he/layer_"): 100 * (last[k] - first[k]) / first[k]
                for k in first
                if k.startswith("he/layer_") and k in last
            }
            h = he_summaries(change)
            layers = ", ".join(f"{k} {v:+.5f}" for k, v in change.items())
            print(
                f"{f.parent.parent}: edits {first['n_edits']}→{last['n_edits']}: {layers}; "
                f"mean |Δ| {h['he_abs_change_pct']:.5f} %, signed mean {h['he_change_pct']:+.6f} %"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
