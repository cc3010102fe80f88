#!/usr/bin/env python3
"""Stand-ins for the three original Codomyrmex modules that examples/seed-analysis.json calls.

orch serves a module by an external program (docs/actions.md, "External modules"): it writes
{"action": ..., "parameters": {...}} to the program's stdin and takes one JSON document from its
stdout as the step's result. From the repository's root:

    orch run examples/seed-analysis.json \
        --module static_analysis=examples/seed_modules.py \
        --module data_visualization=examples/seed_modules.py \
        --module documentation=examples/seed_modules.py
"""

import json
import os
import sys


def analyze_code_quality(params):
    """Files and lines under `path` (nothing when it does not exist)."""
    files = lines = 0
    for root, _dirs, names in os.walk(params.get("path", ".")):
        for name in names:
            try:
                with open(os.path.join(root, name), encoding="utf-8") as f:
                    lines += sum(1 for _ in f)
                files += 1
            except (OSError, UnicodeDecodeError):
                pass
    return {"files": files, "lines": lines}


def create_bar_chart(params):
    """A text chart of the numbers in `data`."""
    data = params.get("data") or {}
    bars = [f"{k}: {'#' * min(int(v), 40)} {v}" for k, v in data.items()
            if isinstance(v, (int, float))]
    return {"title": params.get("title", ""), "chart": "\n".join(bars)}


def generate_report(params):
    chart = params.get("chart") or {}
    metrics = params.get("metrics") or {}
    text = f"# {chart.get('title', 'Report')}\n\n{chart.get('chart', '')}\n\n{json.dumps(metrics)}\n"
    return {"report": text}


ACTIONS = {
    "analyze_code_quality": analyze_code_quality,
    "create_bar_chart": create_bar_chart,
    "generate_report": generate_report,
}

request = json.load(sys.stdin)
action = ACTIONS.get(request.get("action"))
if action is None:
    sys.exit(f"seed_modules.py: unknown action {request.get('action')!r}; known: {', '.join(ACTIONS)}")
print(json.dumps(action(request.get("parameters") or {})))
