"""The deterministic simulator: the real gossip cores on virtual time, a simulated network,
faults from a scenario file, and checkers that judge every run.

Layers, bottom up:

* :mod:`sim.engine` — the event loop (``Sim``) and the seed tree (``Seeds``);
* :mod:`sim.network` — links, loss, partitions; :mod:`sim.node` — a host running a core;
* :mod:`sim.swimworld` — gossip pools of real ``swim.serf.Serf`` cores and their log;
* :mod:`sim.scenario` — TOML scenarios, validated, expanded per seed (swarm included);
* :mod:`sim.faults` — the fault timeline and the ledger of what was broken when;
* :mod:`sim.checks` — the checkers and the figures;
* :mod:`sim.run` — one seed or a range, safety phase then liveness phase;
* :mod:`sim.report` — summary, JSON, JUnit XML, plot.

``gossamer sim run SCENARIO`` is the command line over :func:`run_seeds` and the reports.
"""

from sim.checks import CheckResult
from sim.engine import Seeds, Sim
from sim.faults import FaultInjector, Ledger
from sim.network import Group, Latency, LinkModel, Network, Partition
from sim.node import SimNode
from sim.report import json_report, junit_xml, plot, summary
from sim.run import Progress, RunResult, parse_seeds, reproduce_command, run_seed, run_seeds
from sim.scenario import Plan, Scenario, ScenarioError, load, loads
from sim.swimworld import MembershipLog, NodeSpec, SwimWorld, TraceDigest

__all__ = [
    "CheckResult",
    "FaultInjector",
    "Group",
    "Latency",
    "Ledger",
    "LinkModel",
    "MembershipLog",
    "Network",
    "NodeSpec",
    "Partition",
    "Plan",
    "Progress",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "Seeds",
    "Sim",
    "SimNode",
    "SwimWorld",
    "TraceDigest",
    "json_report",
    "junit_xml",
    "load",
    "loads",
    "parse_seeds",
    "plot",
    "reproduce_command",
    "run_seed",
    "run_seeds",
    "summary",
]
