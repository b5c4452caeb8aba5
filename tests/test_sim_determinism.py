"""One seed, one run: the same seed gives the same trace digest in every process, whatever
``PYTHONHASHSEED`` says, with or without swarm mode, however the run is sliced.

The digest (``sim.swimworld.TraceDigest``) is a SHA-256 over every delivered packet
(time, endpoints, CRC of the bytes) and every member event; two runs are the same run
exactly when their digests are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import sim.run
from sim.run import run_seed
from sim.scenario import load

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "scenarios"


def _spawn(hashseed: str, out: Path, args: list[str]) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONHASHSEED": hashseed,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gossamer", "sim", "run", *args, "--report", str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "args",
    [
        # partitions between DC groups (frozensets of addresses and DC names), a WAN pool
        ["examples/scenarios/wan-partition.toml", "--seed", "3"],
        # the seed also picks configuration and faults
        ["examples/scenarios/swarm.toml", "--seed", "7", "--swarm"],
    ],
    ids=["wan-partition", "swarm"],
)
def test_two_processes_with_different_hash_seeds_give_one_digest(
    args: list[str], tmp_path: Path
) -> None:
    procs = [
        (_spawn(h, tmp_path / f"r{h}.json", args), tmp_path / f"r{h}.json") for h in ("1", "2")
    ]
    reports = []
    for proc, out in procs:
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode in (0, 1), stderr
        assert stdout.startswith("scenario ")
        reports.append(json.loads(out.read_text()))
    a, b = (r["runs"][0] for r in reports)
    assert a["digest"] == b["digest"]
    for run in (a, b):
        del run["wall_s"]
    assert a == b  # every check, figure, choice and fault step too


def test_same_seed_same_digest_other_seed_other_digest() -> None:
    sc = load(EXAMPLES / "swarm.toml")
    one = run_seed(sc, 11, swarm=True)
    again = run_seed(sc, 11, swarm=True)
    other = run_seed(sc, 12, swarm=True)
    assert one.digest == again.digest
    assert one.figures == again.figures
    assert one.digest != other.digest


def test_slicing_the_run_does_not_change_it(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = load(EXAMPLES / "wan-partition.toml")
    coarse = run_seed(sc, 2).digest
    monkeypatch.setattr(sim.run, "SLICE_S", 0.37)
    assert run_seed(sc, 2).digest == coarse
