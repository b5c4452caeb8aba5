"""py-consul's own test suite against real gossamer agents.

The strongest check that "every existing Consul client library works against a gossamer
agent unchanged" is the library's own tests. This test takes the installed py-consul's
source distribution from PyPI (its tests ship in the sdist), replaces upstream's root
conftest.py, which starts Consul in Docker, with tests/pyconsul_shim/conftest.py, which
starts ``gossamer agent -dev`` on 127.0.0.1 (one per test, as upstream), and runs the
suite in a subprocess.

What is left out, and why, is listed in DESELECTED (features of later issues: ACLs,
Connect CA and intentions, config entries, Raft operator endpoints). KNOWN_GAPS lists
the tests that run and fail today, each with its reason; any other failure fails this
test, and the output names the failing upstream tests and points at their agent logs.
A known gap that starts passing is reported, so the list can shrink.

Skips, with the reason printed, when PyPI cannot be reached or 127.0.0.1:8500 (which the
upstream tests hard-code as an HTTP check target) is taken.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SHIM = Path(__file__).parent / "pyconsul_shim" / "pyconsul_conftest.py"

DESELECTED = {
    "tests/api/test_acl.py": "ACLs (a later issue): needs the ACL-enabled fixture",
    "tests/api/test_acl_templated_policy.py": "ACLs (a later issue)",
    "tests/api/test_agent.py::TestAgent::test_agent_token_set": "ACLs (a later issue)",
    "tests/api/test_snapshot.py": "snapshots need a management token (ACLs)",
    "tests/api/test_connect.py": "Connect CA and intentions (a later issue)",
    "tests/api/test_config.py": "config entries (a later issue)",
    "tests/api/test_catalog.py::TestCatalog::test_catalog_gateway_services": (
        "needs an ingress-gateway config entry (a later issue)"
    ),
    "tests/api/test_operator.py::TestOperator::test_operator": "operator raft (issue 5)",
    "tests/api/test_operator.py::TestOperator::test_raft_remove_peer_not_found": (
        "operator raft (issue 5)"
    ),
    "tests/api/test_operator.py::TestOperator::test_raft_transfer_leader_no_other_peers": (
        "operator raft (issue 5)"
    ),
}

KNOWN_GAPS = {
    "tests.api.test_agent.TestAgent.test_agent_service_connect": (
        "connect.sidecar_service registration is refused with 400 until Connect arrives"
    ),
    "tests.api.test_discovery_chain.TestDiscoveryChain.test_discovery_chain_get": (
        "/v1/discovery-chain needs config entries and the chain compiler"
    ),
    "tests.api.test_operator.TestOperator.test_autopilot_configuration": (
        "/v1/operator/autopilot arrives with Raft servers (issue 5)"
    ),
    "tests.api.test_operator.TestOperator.test_autopilot_health": (
        "/v1/operator/autopilot arrives with Raft servers (issue 5)"
    ),
}

RUN_TIMEOUT_S = 900.0


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _fetch_suite(dest: Path) -> Path:
    version = importlib.metadata.version("py-consul")
    dl = dest / "dl"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", f"py-consul=={version}", "--no-binary",
         ":all:", "--no-deps", "-q", "-d", str(dl)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    sdists = sorted(dl.glob("*.tar.gz")) if dl.exists() else []
    if r.returncode != 0 or not sdists:
        pytest.skip(f"cannot download py-consul {version}'s sdist: {r.stderr.strip()[-300:]}")
    root = dest / "suite"
    with tarfile.open(sdists[0]) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name]
        tar.extractall(root, members=members, filter="data")
    (top,) = list(root.iterdir())
    shutil.copy(SHIM, top / "conftest.py")
    (top / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    return top


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_py_consul_upstream_suite(tmp_path: Path) -> None:
    if not _port_free(8500):
        pytest.skip("127.0.0.1:8500 is taken: py-consul's tests hard-code it as a check target")
    suite = _fetch_suite(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    deselect = [f"--deselect={t}" for t in DESELECTED]
    if importlib.util.find_spec("pytest_asyncio") is None:
        deselect.append("--deselect=tests/test_aio.py")
        print("tests/test_aio.py deselected: pytest-asyncio is not installed")
    junit = tmp_path / "junit.xml"
    env = {**os.environ, "PYCONSUL_LOGS": str(logs)}
    env.pop("CONSUL_HTTP_ADDR", None)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--timeout=90",
         f"--junitxml={junit}", *deselect, "tests"],
        cwd=suite, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert junit.exists(), r.stdout[-3000:] + r.stderr[-2000:]
    failed: dict[str, str] = {}
    passed = 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name', '').split('[')[0]}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed[name] = (bad.get("message") or "")[:300]
        elif case.find("skipped") is None:
            passed += 1
    print(f"py-consul's suite against gossamer: {passed} passed, {len(failed)} failed")
    for name in sorted(set(KNOWN_GAPS) - set(failed)):
        print(f"known gap now passes, drop it from KNOWN_GAPS: {name}")
    unexpected = {n: m for n, m in failed.items() if n not in KNOWN_GAPS}
    assert not unexpected, (
        "py-consul tests failing against gossamer (agent logs in "
        f"{logs}):\n" + "\n".join(f"  {n}: {m}" for n, m in sorted(unexpected.items()))
    )
    assert passed >= 100, r.stdout[-3000:]
