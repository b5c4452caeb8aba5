"""Reports of a set of runs: the human summary, the JSON report, JUnit XML, and a plot.

* The summary is plain text for a terminal or a CI log: the scenario, the faults (for a
  single seed), one line per check (pass/fail; over several seeds how many passed and
  which seeds failed), the figures (p50/p99/max over every sample of every seed), and for
  each failing seed its failing checks, their first findings and the one command that
  reproduces it.
* The JSON report (``"format": "gossamer-sim-report/1"``) holds the same, per run, with
  every figure; it is what a CI job keeps as an artifact or compares between builds.
* JUnit XML has one ``testcase`` per (seed, check), so CI systems list and count them;
  a failure's text ends with the reproduce command.
* The plot (matplotlib, Agg backend, an optional dependency: ``pip install
  'gossamer[plot]'``) shows one run — the first failing seed, else the first: each
  observer's view of one faulted member over time, and the fraction of all (observer,
  member) views that match the truth, with the fault steps marked.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from sim.checks import percentile
from sim.run import RunResult
from sim.scenario import Scenario

__all__ = [
    "FIGURES",
    "PlotUnavailable",
    "aggregate",
    "json_report",
    "junit_xml",
    "plot",
    "summary",
]

FIGURES: tuple[tuple[str, str, str], ...] = (
    ("join_convergence_s", "join convergence", "s"),
    ("detection_first_s", "detection, first report", "s"),
    ("detection_all_s", "detection, all members", "s"),
    ("convergence_s", "convergence after last heal", "s"),
    ("false_failures", "false failures", ""),
    ("echoed_failures", "echoed failures", ""),
    ("failed_members", "members reported failed", ""),
    ("msgs_per_node_s", "UDP packets / node / s", ""),
    ("bytes_per_node_s", "UDP bytes / node / s", "B"),
    ("busiest_node_bytes_s", "busiest node UDP bytes / s", "B"),
    ("tcp_bytes_per_node_s", "TCP bytes / node / s", "B"),
    ("user_event_delivery", "user event delivery", "%"),
)
"""(key, label, unit) of each figure, in display order."""

REPORT_FORMAT = "gossamer-sim-report/1"


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _samples(results: Sequence[RunResult], key: str) -> list[float]:
    out: list[float] = []
    for r in results:
        v = r.figures.get(key)
        if isinstance(v, list):
            out.extend(float(x) for x in v)
        elif isinstance(v, int | float):
            out.append(float(v))
    return out


def aggregate(results: Sequence[RunResult]) -> dict[str, Any]:
    """Per check: passed/failed counts and failing seeds; per figure: n, p50, p99, max."""
    checks: dict[str, dict[str, Any]] = {}
    for r in results:
        for c in r.checks:
            e = checks.setdefault(c.name, {"passed": 0, "failed": 0, "failing_seeds": []})
            if c.passed:
                e["passed"] += 1
            else:
                e["failed"] += 1
                e["failing_seeds"].append(r.seed)
    figures: dict[str, dict[str, Any]] = {}
    for key, _, _ in FIGURES:
        vals = _samples(results, key)
        if vals:
            figures[key] = {
                "n": len(vals),
                "p50": percentile(vals, 50),
                "p99": percentile(vals, 99),
                "max": max(vals),
            }
    return {"checks": checks, "figures": figures}


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "B":
        for scale, suffix in ((1e6, " MB"), (1e3, " kB")):
            if abs(v) >= scale:
                return f"{v / scale:.1f}{suffix}"
        return f"{v:.0f} B"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "%":
        return f"{v:.1%}"
    if float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.3g}"


def _describe_world(scenario: Scenario, results: Sequence[RunResult]) -> str:
    topo = scenario.topology
    if results and results[0].swarm and len(results) > 1:
        dcs = ", ".join(dc for dc, _ in topo.datacenters)
    else:
        chosen = results[0].choices if results else {}
        dcs = ", ".join(f"{dc}={chosen.get(f'nodes.{dc}', n)}" for dc, n in topo.datacenters)
    pools = "one WAN pool" if topo.pool == "wan" else "a LAN pool per DC"
    nodes = sorted({r.nodes for r in results})
    count = f"{nodes[0]}" if len(nodes) == 1 else f"{nodes[0]}-{nodes[-1]}"
    return f"{count} nodes ({dcs}; {pools}), swim preset {scenario.swim_preset}"


def summary(scenario: Scenario, results: Sequence[RunResult], verbose: bool = False) -> str:
    lines: list[str] = []
    swarm = bool(results and results[0].swarm)
    seeds = [r.seed for r in results]
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds"
    lines.append(
        f"scenario {scenario.name}: {_describe_world(scenario, results)}; {seed_text}"
        + (" (swarm)" if swarm else "")
    )
    if scenario.description:
        lines.append(f"  {scenario.description}")
    if len(results) == 1:
        r = results[0]
        if r.choices:
            chosen = [f"{k}={v}" for k, v in r.choices.items() if k != "faults"]
            if chosen:
                lines.append("  swarm chose: " + ", ".join(chosen))
        shown = r.faults if verbose or len(r.faults) <= 14 else [*r.faults[:12], "…", r.faults[-1]]
        lines.append("  timeline:")
        lines += [f"    {f}" for f in shown]
    lines.append("")
    agg = aggregate(results)
    width = max([len(k) for k in agg["checks"]] + [5])
    lines.append(f"  {'check'.ljust(width)}  result  detail")
    for name, e in agg["checks"].items():
        if len(results) == 1:
            c = next(c for c in results[0].checks if c.name == name)
            verdict = "pass" if c.passed else "FAIL"
            lines.append(f"  {name.ljust(width)}  {verdict:<6}  {c.detail}")
        else:
            total = e["passed"] + e["failed"]
            verdict = "pass" if not e["failed"] else "FAIL"
            detail = f"{e['passed']}/{total} seeds passed"
            if e["failed"]:
                fs = e["failing_seeds"]
                detail += "; failing seeds " + ", ".join(map(str, fs[:10]))
                detail += "…" if len(fs) > 10 else ""
            lines.append(f"  {name.ljust(width)}  {verdict:<6}  {detail}")
    if agg["figures"]:
        lines.append("")
        if len(results) == 1:
            lines.append(
                f"  {'figure'.ljust(30)}  {'value/p50':>10}  {'p99':>10}  {'max':>10}  {'n':>5}"
            )
        else:
            lines.append(f"  {'figure'.ljust(30)}  {'p50':>10}  {'p99':>10}  {'max':>10}  {'n':>5}")
        for key, label, unit in FIGURES:
            f = agg["figures"].get(key)
            if f is None:
                continue
            if len(results) == 1 and not isinstance(results[0].figures.get(key), list):
                lines.append(f"  {label.ljust(30)}  {_fmt(f['p50'], unit):>10}")
                continue
            lines.append(
                f"  {label.ljust(30)}  {_fmt(f['p50'], unit):>10}  {_fmt(f['p99'], unit):>10}"
                f"  {_fmt(f['max'], unit):>10}  {f['n']:>5}"
            )
    failing = [r for r in results if not r.passed]
    for r in failing[:10]:
        lines.append("")
        lines.append(f"FAIL seed {r.seed}" + (" (swarm)" if r.swarm else ""))
        if r.swarm and r.choices and len(results) > 1:
            lines.append("  swarm chose: " + ", ".join(f"{k}={v}" for k, v in r.choices.items()))
        for c in r.failed_checks():
            lines.append(f"  {c.name}: {c.detail}")
            lines += [f"    {item}" for item in c.items[:5]]
        lines.append(f"  reproduce: {r.reproduce}")
    if len(failing) > 10:
        lines.append(f"… and {len(failing) - 10} more failing seeds (see the JSON report)")
    wall = sum(r.wall_s for r in results)
    simulated = sum(r.sim_s for r in results)
    verdict = "PASS" if not failing else "FAIL"
    speed = simulated / wall if wall else 0.0
    lines.append("")
    lines.append(
        f"{verdict}  {len(results)} seed(s), {len(failing)} failed  "
        f"({wall:.1f} s wall, {simulated:.0f} s simulated, {speed:.0f}x)"
    )
    return "\n".join(lines)


def json_report(scenario: Scenario, results: Sequence[RunResult]) -> dict[str, Any]:
    agg = aggregate(results)
    return {
        "format": REPORT_FORMAT,
        "scenario": {
            "name": scenario.name,
            "path": scenario.path,
            "description": scenario.description,
            "duration_s": scenario.duration_s,
        },
        "swarm": bool(results and results[0].swarm),
        "seeds": [r.seed for r in results],
        "passed": all(r.passed for r in results),
        "failing_seeds": [r.seed for r in results if not r.passed],
        "reproduce": [r.reproduce for r in results if not r.passed],
        "checks": agg["checks"],
        "figures": agg["figures"],
        "runs": [r.as_dict() for r in results],
    }


def write_json(path: str, scenario: Scenario, results: Sequence[RunResult]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(json_report(scenario, results), f, indent=2)
        f.write("\n")


def junit_xml(scenario: Scenario, results: Sequence[RunResult]) -> str:
    cases = [(r, c) for r in results for c in r.checks]
    failures = sum(1 for _, c in cases if not c.passed)
    wall = sum(r.wall_s for r in results)
    suites = ET.Element(
        "testsuites", name="gossamer sim", tests=str(len(cases)), failures=str(failures)
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"sim.{scenario.name}",
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{wall:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="scenario", value=scenario.path)
    for r in results:
        share = r.wall_s / max(1, len(r.checks))
        for c in r.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"sim.{scenario.name}.seed{r.seed}",
                name=c.name,
                time=f"{share:.3f}",
            )
            if not c.passed:
                fail = ET.SubElement(case, "failure", message=c.detail, type="CheckFailed")
                fail.text = "\n".join([c.detail, *c.items, f"reproduce: {r.reproduce}"])
            out = ET.SubElement(case, "system-out")
            out.text = f"seed {r.seed} digest {r.digest}\nreproduce: {r.reproduce}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode")


def write_junit(path: str, scenario: Scenario, results: Sequence[RunResult]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(junit_xml(scenario, results))
        f.write("\n")


_COLORS = {
    "alive": "#4caf50",
    "failed": "#e53935",
    "left": "#9e9e9e",
    "none": "#bdbdbd",
    "down": "#263238",
}


def plot(scenario: Scenario, results: Sequence[RunResult], path: str) -> RunResult:
    """Draw the first failing run (else the first) into ``path`` (PNG); returns it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'gossamer[plot]'") from None
    r = next((x for x in results if not x.passed), results[0])
    d = r.plot
    end = float(d["run_end_s"])
    member = d["member"]
    observers: list[str] = d["observers"][:60]
    fig, (ax1, ax2) = plt.subplots(
        2,
        1,
        figsize=(11, 7.5),
        gridspec_kw={"height_ratios": [3, 1.4]},
        sharex=True,
    )
    title = f"{scenario.name} — seed {r.seed}" + (" (swarm)" if r.swarm else "")
    title += "  PASS" if r.passed else "  FAIL: " + ", ".join(c.name for c in r.failed_checks())
    fig.suptitle(title)
    if member is not None and observers:
        for y, o in enumerate(observers):
            for start, stop, state in _segments(d, o, end):
                if stop > start:
                    ax1.broken_barh(
                        [(start, stop - start)], (y - 0.4, 0.8), color=_COLORS.get(state, "white")
                    )
        for start, stop in d["down"].get(member, []):
            ax1.axvspan(start, min(stop, end), color="#ffcdd2", alpha=0.5, zorder=0)
        for start, stop in d["stalled"].get(member, []):
            ax1.axvspan(start, min(stop, end), color="#fff59d", alpha=0.5, zorder=0)
        for start, stop in d.get("cut", []):
            ax1.axvspan(start, min(stop, end), color="#bbdefb", alpha=0.5, zorder=0)
        ax1.set_yticks(range(len(observers)))
        ax1.set_yticklabels(observers, fontsize=6 if len(observers) > 25 else 8)
        ax1.set_ylim(-0.6, len(observers) - 0.4)
        ax1.set_title(
            f"each member's view of {member} (background: {member} down, stalled or cut "
            "off; dotted: fault steps)"
        )
        ax1.legend(
            handles=[Patch(color=c, label=s) for s, c in _COLORS.items() if s != "none"],
            loc="upper right",
            fontsize=8,
        )
    else:
        ax1.text(0.5, 0.5, "no faulted member to follow", ha="center", transform=ax1.transAxes)
    xs = [t for t, _ in d["agreement"]]
    ys = [f for _, f in d["agreement"]]
    ax2.plot(xs, ys, color="#1e88e5", linewidth=1.2)
    ax2.set_ylim(min([*ys, 0.9]) - 0.02, 1.01)
    ax2.set_ylabel("views correct")
    ax2.set_xlabel("virtual time (s)")
    ax2.axvspan(0, d["last_heal_s"], color="#eeeeee", zorder=0, label="safety phase")
    for t, _ in d["faults"]:
        ax1.axvline(t, color="#757575", linewidth=0.5, linestyle=":")
        ax2.axvline(t, color="#757575", linewidth=0.5, linestyle=":")
    ax2.set_title("convergence: fraction of (observer, member) views that match the truth")
    ax2.set_xlim(0, end)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return r


def _segments(d: dict[str, Any], observer: str, end: float) -> list[tuple[float, float, str]]:
    """(start, stop, state) of one observer's belief about the plotted member."""
    marks: list[tuple[float, int, str]] = []
    for t, o, st in d["events"]:
        if o == observer:
            marks.append((t, 1, st))
    for start, stop in d["down"].get(observer, []):
        marks.append((start, 0, "down"))
        if stop < end:
            marks.append((stop, 0, "none"))
    marks.sort(key=lambda m: (m[0], m[1]))
    out: list[tuple[float, float, str]] = []
    state, since = "none", 0.0
    for t, _, st in marks:
        out.append((since, t, state))
        state, since = st, t
    out.append((since, end, state))
    return [s for s in out if s[2] != "none"]
