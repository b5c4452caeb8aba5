"""Replaces py-consul's root conftest.py (which starts hashicorp/consul in Docker) when
tests/test_pyconsul_upstream.py runs py-consul's own test suite against gossamer.

One fresh ``gossamer agent -dev`` per test on 127.0.0.1, as upstream starts one container
per test, with upstream's readiness protocol (a leader, then register / health /
deregister of ``test-service``). What is translated:

* the HTTP port stays 8500: the tests hard-code ``http://localhost:8500`` as HTTP-check
  targets, which in upstream's container is Consul itself; gossip and server RPC ports are
  free ports;
* ``enable_script_checks`` becomes ``-enable-script-checks``;
* the node name is ``gossamer-dev-<hex>``, never one of the tests' ``n1``/``n2``;
* the tests choose code paths by Consul version; gossamer reports its own, so the fixture
  hands them ``PYCONSUL_EMULATED_VERSION`` (default 1.22.0, the newest in upstream's
  matrix);
* fixtures with ACLs enabled skip: gossamer has no ACL system yet.

Every agent is stopped by PID (SIGINT, then SIGKILL after 10 s); every wait is bounded.
This file is copied as conftest.py next to the extracted tests; under this name pytest
never loads it from gossamer's own tests/.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from requests import RequestException

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])
EMULATED_VERSION = os.environ.get("PYCONSUL_EMULATED_VERSION", "1.22.0")
HTTP_PORT = int(os.environ.get("PYCONSUL_HTTP_PORT", "8500"))
LOGS_DIR = os.environ["PYCONSUL_LOGS"]
START_TIMEOUT_S = 20.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _start(log_path: str) -> Callable[[], None]:
    argv = [
        sys.executable, "-m", "gossamer", "agent", "-dev",
        f"-node=gossamer-dev-{uuid.uuid4().hex[:8]}",
        "-bind=127.0.0.1", "-client=127.0.0.1",
        f"-http-port={HTTP_PORT}",
        f"-serf-lan-port={_free_port()}",
        f"-server-port={_free_port()}",
        "-enable-script-checks",
    ]  # fmt: skip
    with open(log_path, "wb") as log:
        log.write((" ".join(argv) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def stop() -> None:
        _stop(proc)

    base = f"http://127.0.0.1:{HTTP_PORT}/v1/"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if time.monotonic() > deadline or proc.poll() is not None:
            stop()
            raise TimeoutError(f"gossamer did not start (rc={proc.poll()}), see {log_path}")
        time.sleep(0.1)
        try:
            r = requests.get(base + "status/leader", timeout=2)
            if r.status_code == 200 and r.json():
                break
        except (RequestException, ValueError):
            continue
    for _ in range(10):  # upstream's readiness check
        try:
            requests.put(base + "agent/service/register", json={"name": "test-service"}, timeout=2)
            r = requests.get(base + "health/service/test-service", timeout=2)
            if r.status_code == 200 and r.json():
                requests.put(base + "agent/service/deregister/test-service", timeout=2)
                return stop
        except RequestException:
            pass
        time.sleep(0.5)
    stop()
    raise TimeoutError(f"gossamer did not pass upstream's readiness check, see {log_path}")


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token() -> None:
    os.environ.pop("CONSUL_HTTP_TOKEN", None)


@pytest.fixture(params=["gossamer"])
def consul_instance(request: Any) -> Iterator[ConsulInstance]:
    log_path = os.path.join(LOGS_DIR, f"{request.node.name}.log".replace("/", "_"))
    stop = _start(log_path)
    try:
        yield ConsulInstance(None, HTTP_PORT, EMULATED_VERSION)
    finally:
        stop()


@pytest.fixture(params=["gossamer"])
def acl_consul_instance(request: Any) -> None:
    pytest.skip("gossamer has no ACL system yet")


@pytest.fixture
def consul_port(consul_instance: ConsulInstance) -> tuple[int, str]:
    return consul_instance.port, consul_instance.version
