"""keep_freed_memory: glibc settings, the opt-out variable, and argument checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from awconv.engine.allocator import DISABLE_VARIABLE, keep_freed_memory

# Allocates and frees a 64 MiB tensor repeatedly and prints the page faults of the repeats. The
# probe loads the model families first, as every training process does: in a bare interpreter the
# heap's layout alone can make glibc serve each allocation from fresh pages whatever the thresholds.
PROBE = """
import resource, torch
import awconv.models
from awconv.engine.allocator import keep_freed_memory
print(keep_freed_memory())
torch.empty(1 << 24).fill_(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.empty(1 << 24).fill_(1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    source = str(Path(__file__).resolve().parents[2] / "src")  # the tree under test, not an installed copy
    env = {"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": source}
    kept = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    plain = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env={**env, DISABLE_VARIABLE: "0"},
        check=True,
    )  # fmt: skip
    kept_applied, kept_faults = kept.stdout.split()
    plain_applied, plain_faults = plain.stdout.split()
    assert kept_applied == "True" and plain_applied == "False"
    # 5 x 64 MiB of 4 KiB pages is about 82,000 faults when every allocation is mapped anew; with
    # the memory kept, at most one allocation's pages (16,384) fault in
    assert int(plain_faults) > 70_000
    assert int(kept_faults) <= 17_000


@pytest.mark.parametrize("threshold", [0, -1, 2**31, 1.5, True])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be a positive int"):
        keep_freed_memory(threshold)
