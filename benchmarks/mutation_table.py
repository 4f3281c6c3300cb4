"""The mutation score per module from mutmut's results in mutants/, as a markdown table.

`make mutation` prints it after `mutmut run`; docs/reliability.md keeps the measured one. The score is
killed / (killed + survived): a mutant that no selected test reaches, or that was not run yet, is
counted in its own column, not in the score.

    python benchmarks/mutation_table.py [MUTANTS_DIR]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

# mutmut 3's exit codes (mutmut/stats.py): 1 and 3 are kills, 0 a survivor, 5 and 33 "no tests".
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", None: "not run"}
COLUMNS = ("killed", "survived", "timeout", "no tests", "not run")


def count_mutants(mutants: Path) -> dict[str, Counter]:
    """Counts each module's mutants by status, from ``mutants/src/**/*.py.meta``."""
    counts: dict[str, Counter] = {}
    for meta in sorted((mutants / "src").rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        if exit_codes:
            module = ".".join(meta.relative_to(mutants / "src").with_suffix("").with_suffix("").parts)
            counts[module] = Counter(STATUS.get(code, "timeout") for code in exit_codes.values())
    return counts


def format_table(counts: dict[str, Counter]) -> str:
    """Markdown: module, mutants, one column per status, and the score (killed / run)."""
    lines = [
        "| module | mutants | " + " | ".join(COLUMNS) + " | killed of run |",
        "|---|" + "---:|" * (len(COLUMNS) + 2),
    ]
    for module, count in counts.items():
        run = count["killed"] + count["survived"] + count["timeout"]
        score = f"{(count['killed'] + count['timeout']) / run:.1%}" if run else "–"
        cells = " | ".join(str(count[column]) for column in COLUMNS)
        lines.append(f"| {module} | {sum(count.values())} | {cells} | {score} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_table(count_mutants(Path(sys.argv[1] if len(sys.argv) > 1 else "mutants"))))
