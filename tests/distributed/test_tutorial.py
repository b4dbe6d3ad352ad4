"""tutorials/distributed.md: its training loop runs under mpiexec -n 2 and the ranks agree."""

from __future__ import annotations

import re

from .conftest import ROOT, run_mpi

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_tutorial_loop_trains_on_two_ranks(tmp_path):
    blocks = _BLOCK.findall((ROOT / "tutorials" / "distributed.md").read_text(encoding="utf-8"))
    assert len(blocks) == 1
    done = run_mpi(blocks[0], tmp_path, timeout=300)
    lines = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert [line.split(":")[0] for line in lines] == ["rank 0 of 2", "rank 1 of 2"]
    # the same weights on both ranks (the same optimizer steps), and it learned something
    assert lines[0].split(",", 1)[1] == lines[1].split(",", 1)[1]
    accuracy = float(re.search(r"accuracy ([0-9.]+)", lines[0]).group(1))
    assert accuracy > 0.75, lines
