"""tutorials/distributed.md: its training loop runs under mpiexec -n 2 and the ranks agree."""

from __future__ import annotations

import re

from .conftest import ROOT, run_mpi

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_the_tutorial_loop_trains_on_two_ranks(tmp_path):
    blocks = _BLOCK.findall((ROOT / "tutorials" / "distributed.md").read_text(encoding="utf-8"))
    assert len(blocks) == 1
    done = run_mpi(blocks[0], tmp_path, timeout=300)
    # findall, not lines: MPI's launcher may interleave the two ranks' output on one line
    found = sorted(re.findall(r"rank (\d) of 2: accuracy ([0-9.]+), head\.bias (\[[^\]]*\])", done.stdout))
    assert [rank for rank, _, _ in found] == ["0", "1"], done.stdout
    # the same weights on both ranks (the same optimizer steps), and it learned something
    assert found[0][1:] == found[1][1:]
    assert float(found[0][1]) > 0.75, found
