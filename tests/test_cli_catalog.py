"""``gossamer kv|catalog|services|watch`` against a fake Consul HTTP API.

A ``ThreadingHTTPServer`` on 127.0.0.1 (port 0) per test serves canned Consul-shaped answers
(with ``X-Consul-Index``) and records every request; ``main([...])`` runs in-process with
``-http-addr`` pointing at it. Expected texts are written out from Consul's command sources
(command/kv/*, command/catalog/list/*, command/services/*, command/watch/watch.go), not
produced by the code under test. The watch loop is bounded either by the module's test hook
(``_WATCH_MAX_ROUNDS``) or, for the signal test, by running it as a child process that the
test stops with SIGTERM/SIGINT by its PID.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gossamer import cli_catalog
from gossamer.cli import ApiClient, main
from gossamer.duration import format_duration

# --------------------------------------------------------------------------------------
# Fake Consul
# --------------------------------------------------------------------------------------

HOLD_LIMIT_S = 5.0
"""A held (blocking) answer waits at most this long for the test to release it."""


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    body: Any = None
    """JSON-encoded unless bytes or str."""
    status: int = 200
    index: int | None = 1
    """X-Consul-Index, or no header."""
    hold: bool = False
    """Block until the fake's ``release`` is set (a blocking query that never fires)."""


@dataclass
class FakeConsul:
    addr: str = ""
    routes: dict[tuple[str, str], list[Answer]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def route(
        self, method: str, path: str, body: Any = None, status: int = 200, index: int | None = 1
    ) -> None:
        self.routes[(method, path)] = [Answer(body, status, index)]

    def queue(self, method: str, path: str, *answers: Answer) -> None:
        """Answers in turn; the last one repeats."""
        self.routes[(method, path)] = list(answers)

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        split = urllib.parse.urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        with self.lock:
            self.requests.append(
                Request(
                    method=handler.command,
                    path=urllib.parse.unquote(split.path),
                    query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in handler.headers.items()},
                    body=handler.rfile.read(length),
                )
            )
            answers = self.routes.get((handler.command, urllib.parse.unquote(split.path)))
            if not answers:
                answer = Answer("404 page not found", 404, None)
            elif len(answers) > 1:
                answer = answers.pop(0)
            else:
                answer = answers[0]
        if answer.hold:
            self.release.wait(HOLD_LIMIT_S)
        body = answer.body
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode()
        elif body is None:
            data = b""
        else:
            data = json.dumps(body).encode()
        try:
            handler.send_response(answer.status)
            if answer.index is not None:
                handler.send_header("X-Consul-Index", str(answer.index))
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client went away (a watch stopped while its query was held)

    def of(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if (r.method, r.path) == (method, path)]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _any(self) -> None:
        self.server.fake.answer(self)

    do_GET = do_PUT = do_POST = do_DELETE = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    fake: FakeConsul


@pytest.fixture
def consul(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConsul]:
    for name in ("CONSUL_HTTP_ADDR", "GOSSAMER_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeConsul(addr=f"127.0.0.1:{server.server_address[1]}")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run(consul: FakeConsul, *argv: str) -> int:
    """``gossamer VERB [SUB] -http-addr=... ARGS``: the address goes right after the verb
    words, before the other flags and arguments."""
    words: list[str] = []
    rest = list(argv)
    while rest and not rest[0].startswith("-") and len(words) < 2:
        words.append(rest.pop(0))
        if words[0] == "watch":
            break
    return main([*words, f"-http-addr={consul.addr}", *rest])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def pair(key: str, value: bytes | None, index: int = 7, flags: int = 0, **extra: Any) -> Any:
    return {
        "Key": key,
        "CreateIndex": 3,
        "ModifyIndex": index,
        "LockIndex": 0,
        "Flags": flags,
        "Value": None if value is None else b64(value),
        **extra,
    }


def set_stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


# --------------------------------------------------------------------------------------
# verb nesting and help
# --------------------------------------------------------------------------------------


def test_verb_list_includes_the_new_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-h"]) == 0
    out = capsys.readouterr().out
    for line in (
        "    catalog        Interact with the catalog\n",
        "    kv             Interact with the key-value store\n",
        "    services       Interact with services\n",
        "    watch          Watch for changes in gossamer\n",
    ):
        assert line in out


@pytest.mark.parametrize(
    ("verb", "subcommands"),
    [
        (
            "kv",
            "Subcommands:\n"
            "    delete    Removes data from the KV store\n"
            "    export    Exports a tree from the KV store as JSON\n"
            "    get       Retrieves or lists data from the KV store\n"
            "    import    Imports a tree stored as JSON to the KV store\n"
            "    put       Sets or updates data in the KV store\n",
        ),
        (
            "catalog",
            "Subcommands:\n"
            "    datacenters    Lists all known datacenters\n"
            "    nodes          Lists all nodes in the given datacenter\n"
            "    services       Lists all registered services in a datacenter\n",
        ),
        (
            "services",
            "Subcommands:\n"
            "    deregister    Deregister services with the local agent\n"
            "    register      Register services with the local agent\n",
        ),
    ],
)
def test_group_verbs(verb: str, subcommands: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Consul: the group command returns cli.RunResultHelp -> help on stderr, exit 1 ...
    assert main([verb]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"Usage: gossamer {verb} <subcommand> [options] [args]\n")
    assert err.endswith("\n\n" + subcommands)
    # ... an unknown subcommand falls back to the group (longest prefix match) ...
    assert main([verb, "bogus"]) == 1
    assert capsys.readouterr().err.endswith(subcommands)
    # ... and -h asks for the same help on stdout, exit 0.
    for argv in ([verb, "-h"], ["help", verb], ["-h", verb]):
        assert main(argv) == 0
        out, err = capsys.readouterr()
        assert (out.endswith(subcommands), err) == (True, "")


@pytest.mark.parametrize(
    "argv", [["kv", "put", "-h"], ["help", "kv", "put"], ["kv", "put", "-cas", "--help"]]
)
def test_subcommand_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: gossamer kv put [options] KEY [DATA]\n")
    # Consul's flags.Usage: HTTP API options (with -datacenter and -stale), sorted by name,
    # then the command's own.
    http = out.index("HTTP API Options\n\n  -datacenter=<string>\n")
    assert out.index("\n  -http-addr=<address>\n") > http
    assert out.index("\n  -stale\n") > out.index("\n  -http-addr=<address>\n")
    assert out.index("\n  -token=<string>\n") > out.index("\n  -stale\n")
    assert "Command Options\n\n  -acquire\n" in out
    assert "\n  -flags=<uint>\n     Unsigned integer value to assign" in out
    assert "\n  -modify-index=<uint>\n" in out


def test_watch_help_placeholders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: gossamer watch [options] [child...]\n")
    assert "\n  -passingonly=<[true|false]>\n" in out
    assert "\n  -shell\n" in out
    assert "\n  -tag=<value>\n" in out


def test_subcommand_flag_error(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(consul, "kv", "put", "-flags=-1", "k") == 1
    err = capsys.readouterr().err
    assert err.startswith(
        'invalid value "-1" for flag -flags: parse error\nUsage: gossamer kv put [options]'
    )
    assert consul.requests == []


# --------------------------------------------------------------------------------------
# kv put
# --------------------------------------------------------------------------------------


def test_kv_put(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("PUT", "/v1/kv/config/redis/maxconns", True)
    assert run(consul, "kv", "put", "config/redis/maxconns", "5") == 0
    assert capsys.readouterr() == ("Success! Data written to: config/redis/maxconns\n", "")
    (req,) = consul.requests
    assert (req.query, req.body) == ({}, b"5")
    assert req.headers["content-type"] == "application/octet-stream"


def test_kv_put_empty_value_flags_and_datacenter(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    consul.route("PUT", "/v1/kv/webapp/beta/active", True)
    args = ("kv", "put", "-flags=42", "-datacenter=dc2", "-token=t0k", "webapp/beta/active")
    assert run(consul, *args) == 0
    assert capsys.readouterr().out == "Success! Data written to: webapp/beta/active\n"
    (req,) = consul.requests
    assert req.query == {"flags": ["42"], "dc": ["dc2"]}
    assert req.body == b""
    assert req.headers["x-consul-token"] == "t0k"


def test_kv_put_from_file_and_stdin(
    consul: FakeConsul,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consul.route("PUT", "/v1/kv/lic", True)
    data = tmp_path / "license.lic"
    data.write_bytes(b"\x00\xffbinary\n")
    assert run(consul, "kv", "put", "lic", f"@{data}") == 0
    set_stdin(monkeypatch, b"abcd1234\n")
    assert run(consul, "kv", "put", "lic", "-") == 0
    assert run(consul, "kv", "put", "lic", "-literal") == 0  # "-x" is data, not stdin
    assert [r.body for r in consul.requests] == [b"\x00\xffbinary\n", b"abcd1234\n", b"-literal"]
    assert capsys.readouterr().out == "Success! Data written to: lic\n" * 3


def test_kv_put_base64(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("PUT", "/v1/kv/k", True)
    assert run(consul, "kv", "put", "-base64", "k", b64(b"\x01\x02hi")) == 0
    assert consul.requests[0].body == b"\x01\x02hi"
    capsys.readouterr()
    assert run(consul, "kv", "put", "-base64", "k", "not*base64") == 1
    assert capsys.readouterr() == (
        "",
        "Error! Cannot base 64 decode data: illegal base64 data at input byte 3\n",
    )
    assert len(consul.requests) == 1


def test_kv_put_cas(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("PUT", "/v1/kv/k", True)
    assert run(consul, "kv", "put", "-cas", "-modify-index=844", "-flags=3", "k", "v") == 0
    assert capsys.readouterr() == ("Success! Data written to: k\n", "")
    assert consul.requests[-1].query == {"cas": ["844"], "flags": ["3"]}
    consul.route("PUT", "/v1/kv/k", False)
    assert run(consul, "kv", "put", "-cas", "-modify-index=844", "k", "v") == 1
    assert capsys.readouterr() == ("", "Error! Did not write to k: CAS failed\n")
    assert run(consul, "kv", "put", "-cas", "k", "v") == 1
    assert capsys.readouterr().err == (
        "Error! Did not write to k: CAS performed with index=0 and key already exists.\n"
    )
    assert consul.requests[-1].query == {"cas": ["0"]}
    consul.route("PUT", "/v1/kv/k", "boom", status=500)
    assert run(consul, "kv", "put", "-cas", "-modify-index=1", "k", "v") == 1
    assert capsys.readouterr().err == (
        "Error! Did not write to k: Unexpected response code: 500 (boom)\n"
    )


def test_kv_put_locks(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(consul, "kv", "put", "-acquire", "k") == 1
    assert capsys.readouterr().err == (
        "Error! Missing -session (required with -acquire and -release)\n"
    )
    assert consul.requests == []
    consul.route("PUT", "/v1/kv/k", True)
    assert run(consul, "kv", "put", "-acquire", "-session=s1", "k", "v") == 0
    assert capsys.readouterr().out == "Success! Lock acquired on: k\n"
    assert consul.requests[-1].query == {"acquire": ["s1"]}
    assert run(consul, "kv", "put", "-release", "-session=s1", "k") == 0
    assert capsys.readouterr().out == "Success! Lock released on: k\n"
    assert consul.requests[-1].query == {"release": ["s1"]}
    consul.route("PUT", "/v1/kv/k", False)
    assert run(consul, "kv", "put", "-acquire", "-session=s1", "k") == 1
    assert capsys.readouterr() == ("", "Error! Did not acquire lock\n")
    assert run(consul, "kv", "put", "-release", "-session=s1", "k") == 1
    assert capsys.readouterr() == ("", "Error! Did not release lock\n")
    consul.route("PUT", "/v1/kv/k", "Invalid session", status=500)
    assert run(consul, "kv", "put", "-acquire", "-session=s1", "k") == 1
    assert capsys.readouterr().err == (
        "Error! Failed writing data: Unexpected response code: 500 (Invalid session)\n"
    )
    assert run(consul, "kv", "put", "-release", "-session=s1", "k") == 1
    assert capsys.readouterr().err == "Error! Failed writing data: k\n"  # sic, as Consul


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error! Missing KEY argument"),
        (("a", "b", "c"), "Error! Too many arguments (expected 1 or 2, got 3)"),
        (
            ("k", "@/nonexistent/x"),
            "Error! Failed to read file: open /nonexistent/x: no such file or directory",
        ),
        (("/k", "v"), "Error! Failed writing data: Invalid key. Key must not begin with a '/': /k"),
    ],
)
def test_kv_put_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "kv", "put", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


def test_kv_put_server_error(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("PUT", "/v1/kv/k", "Permission denied", status=403)
    assert run(consul, "kv", "put", "k", "v") == 1
    assert capsys.readouterr().err == (
        "Error! Failed writing data: Unexpected response code: 403 (Permission denied)\n"
    )


# --------------------------------------------------------------------------------------
# kv get
# --------------------------------------------------------------------------------------


def test_kv_get(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/foo", [pair("foo", b"bar\x00baz")])
    assert run(consul, "kv", "get", "/foo") == 0  # one leading "/" is dropped
    assert capsys.readouterr() == ("bar\x00baz\n", "")
    assert consul.requests[0].query == {}
    assert run(consul, "kv", "get", "-base64", "-stale", "-datacenter=dc2", "foo") == 0
    assert capsys.readouterr().out == b64(b"bar\x00baz") + "\n"
    assert consul.requests[1].query == {"stale": [""], "dc": ["dc2"]}


def test_kv_get_empty_value(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/foo", [pair("foo", None)])
    assert run(consul, "kv", "get", "foo") == 0
    assert capsys.readouterr() == ("\n", "")


def test_kv_get_missing(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/nope", "", status=404, index=12)
    assert run(consul, "kv", "get", "nope") == 1
    assert capsys.readouterr() == ("", "Error! No key exists at: nope\n")


def test_kv_get_detailed(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/foo", [pair("foo", b"bar", index=9, flags=42, Session="abc")])
    assert run(consul, "kv", "get", "-detailed", "foo") == 0
    # tabwriter(0, 2, 6, ' '): the labels padded to the widest ("CreateIndex") plus 6.
    assert capsys.readouterr().out == (
        "CreateIndex      3\n"
        "Flags            42\n"
        "Key              foo\n"
        "LockIndex        0\n"
        "ModifyIndex      9\n"
        "Session          abc\n"
        "Value            bar\n"
    )
    consul.route("GET", "/v1/kv/foo", [pair("foo", b"bar")])
    assert run(consul, "kv", "get", "-detailed", "-base64", "foo") == 0
    out = capsys.readouterr().out
    assert "Session          -\nValue            YmFy\n" in out


def test_kv_get_recurse(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/app", [pair("app/a", b"1"), pair("app/b", b"two")])
    assert run(consul, "kv", "get", "-recurse", "app") == 0
    assert capsys.readouterr().out == "app/a:1\napp/b:two\n"
    assert consul.requests[0].query == {"recurse": [""]}
    assert run(consul, "kv", "get", "-recurse", "-base64", "app") == 0
    assert capsys.readouterr().out == "app/a:MQ==\napp/b:dHdv\n"
    assert run(consul, "kv", "get", "-recurse", "-detailed", "app") == 0
    out = capsys.readouterr().out
    assert out.count("CreateIndex      3\n") == 2
    assert "Value            1\n\nCreateIndex" in out  # a blank line between pairs
    assert run(consul, "kv", "get", "-recurse", "-keys", "app") == 0
    assert capsys.readouterr().out == "app/a\napp/b\n"
    assert run(consul, "kv", "get", "-recurse", "-keys", "-detailed", "app") == 0
    out = capsys.readouterr().out
    assert "Value" not in out
    assert out.endswith("Session          -\n\n")  # prettyKVPair's newline + UI.Info's


def test_kv_get_recurse_nothing(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/", "", status=404)
    assert run(consul, "kv", "get", "-recurse") == 0
    assert capsys.readouterr() == ("", "")


def test_kv_get_keys(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/app/", ["app/a", "app/sub/"])
    assert run(consul, "kv", "get", "-keys", "app/") == 0
    assert capsys.readouterr().out == "app/a\napp/sub/\n"
    assert consul.requests[0].query == {"keys": [""], "separator": ["/"]}
    assert run(consul, "kv", "get", "-keys", "-separator=", "app/") == 0
    assert consul.requests[1].query == {"keys": [""]}
    assert run(consul, "kv", "get", "-keys", "-separator=:", "app/") == 0
    assert consul.requests[2].query == {"keys": [""], "separator": [":"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error! Missing KEY argument"),
        (("/",), "Error! Missing KEY argument"),
        (("a", "b"), "Too many arguments (expected 1, got 2)"),
    ],
)
def test_kv_get_usage_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "kv", "get", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


def test_kv_get_server_error(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/k", "No cluster leader", status=500)
    assert run(consul, "kv", "get", "k") == 1
    assert capsys.readouterr().err == (
        "Error querying Consul agent: Unexpected response code: 500 (No cluster leader)\n"
    )


def test_kv_connection_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kv", "get", "-http-addr=127.0.0.1:1", "k"]) == 1
    err = capsys.readouterr().err
    assert err.startswith('Error querying Consul agent: Get "http://127.0.0.1:1/v1/kv/k": ')
    assert err.endswith("connect: connection refused\n")


# --------------------------------------------------------------------------------------
# kv delete
# --------------------------------------------------------------------------------------


def test_kv_delete(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("DELETE", "/v1/kv/foo", True)
    assert run(consul, "kv", "delete", "foo") == 0
    assert capsys.readouterr() == ("Success! Deleted key: foo\n", "")
    assert run(consul, "kv", "delete", "-recurse", "foo") == 0
    assert capsys.readouterr().out == "Success! Deleted keys with prefix: foo\n"
    assert run(consul, "kv", "delete", "-cas", "-modify-index=5", "foo") == 0
    assert capsys.readouterr().out == "Success! Deleted key: foo\n"
    assert [r.query for r in consul.requests] == [{}, {"recurse": [""]}, {"cas": ["5"]}]
    consul.route("DELETE", "/v1/kv/foo", False)
    assert run(consul, "kv", "delete", "-cas", "-modify-index=5", "foo") == 1
    assert capsys.readouterr() == ("", "Error! Did not delete key foo: CAS failed\n")
    consul.route("DELETE", "/v1/kv/foo", "boom", status=500)
    assert run(consul, "kv", "delete", "foo") == 1
    assert capsys.readouterr().err == (
        "Error deleting key foo: Unexpected response code: 500 (boom)\n"
    )
    assert run(consul, "kv", "delete", "-recurse", "foo") == 1
    assert capsys.readouterr().err == (
        "Error! Did not delete prefix foo: Unexpected response code: 500 (boom)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error! Missing KEY argument"),
        (("a", "b"), "Too many arguments (expected 1, got 2)"),
        (
            ("-cas", "k"),
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0.",
        ),
        (("-modify-index=3", "k"), "Cannot specify -modify-index without -cas!"),
        (("-cas", "-modify-index=3", "-recurse", "k"), "Cannot specify both -cas and -recurse!"),
    ],
)
def test_kv_delete_usage_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "kv", "delete", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


# --------------------------------------------------------------------------------------
# kv export / import
# --------------------------------------------------------------------------------------


def test_kv_export(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/app", [pair("app/a", b"<1>", flags=3), pair("app/dir/", None)])
    assert run(consul, "kv", "export", "/app") == 0
    # json.MarshalIndent(exported, "", "\t"), with encoding/json's HTML escaping.
    assert capsys.readouterr().out == (
        "[\n"
        "\t{\n"
        '\t\t"key": "app/a",\n'
        '\t\t"flags": 3,\n'
        '\t\t"value": "PDE+"\n'
        "\t},\n"
        "\t{\n"
        '\t\t"key": "app/dir/",\n'
        '\t\t"flags": 0,\n'
        '\t\t"value": ""\n'
        "\t}\n"
        "]\n"
    )
    assert consul.requests[0].query == {"recurse": [""]}


def test_kv_export_nothing(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/kv/", "", status=404)
    assert run(consul, "kv", "export", "-stale") == 0
    assert capsys.readouterr() == ("[]\n", "")
    assert consul.requests[0].query == {"recurse": [""], "stale": [""]}


def test_kv_export_import_round_trip(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    values = {"app/a": (b"one", 0), "app/bin": (b"\x00\x01\xfe", 7), "app/dir/": (b"", 0)}
    consul.route("GET", "/v1/kv/app", [pair(k, v, flags=fl) for k, (v, fl) in values.items()])
    assert run(consul, "kv", "export", "app") == 0
    dump = tmp_path / "dump.json"
    dump.write_text(capsys.readouterr().out)
    for key in ("backup/app/a", "backup/app/bin", "backup/app/dir/"):
        consul.route("PUT", f"/v1/kv/{key}", True)
    assert run(consul, "kv", "import", "-prefix=backup", f"@{dump}") == 0
    assert capsys.readouterr() == (
        "Imported: backup/app/a\nImported: backup/app/bin\nImported: backup/app/dir/\n",
        "",
    )
    puts = [r for r in consul.requests if r.method == "PUT"]
    assert [(r.path, r.body, r.query) for r in puts] == [
        ("/v1/kv/backup/app/a", b"one", {}),
        ("/v1/kv/backup/app/bin", b"\x00\x01\xfe", {"flags": ["7"]}),
        ("/v1/kv/backup/app/dir/", b"", {}),
    ]


def test_kv_import_inline_and_stdin(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    consul.route("PUT", "/v1/kv/x", True)
    data = json.dumps([{"Key": "x", "Flags": 1, "Value": b64(b"v")}])  # case-insensitive
    assert run(consul, "kv", "import", data) == 0
    set_stdin(monkeypatch, data.encode())
    assert run(consul, "kv", "import", "-") == 0
    assert capsys.readouterr().out == "Imported: x\nImported: x\n"
    assert [(r.body, r.query) for r in consul.requests] == [(b"v", {"flags": ["1"]})] * 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Error! Missing DATA argument"),
        (("",), "Error! Empty DATA argument"),
        (("a", "b"), "Error! Too many arguments (expected 1, got 2)"),
        (
            ('{"key": "x"}',),
            "Cannot unmarshal data: json: cannot unmarshal object into Go "
            "value of type []*impexp.Entry",
        ),
        (
            ('[{"key": 5}]',),
            "Cannot unmarshal data: json: cannot unmarshal number into Go "
            "struct field Entry.key of type string",
        ),
        (
            ('[{"key": "x", "value": "!!"}]',),
            "Error base 64 decoding value for key x: illegal base64 data at input byte 0",
        ),
    ],
)
def test_kv_import_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "kv", "import", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


def test_kv_import_write_error(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("PUT", "/v1/kv/x", "denied", status=403)
    assert run(consul, "kv", "import", '[{"key": "x", "value": ""}]') == 1
    assert capsys.readouterr().err == (
        "Error! Failed writing data for key x: Unexpected response code: 403 (denied)\n"
    )


# --------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------


def test_catalog_datacenters(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/catalog/datacenters", ["dc1", "dc2"])
    assert run(consul, "catalog", "datacenters") == 0
    assert capsys.readouterr() == ("dc1\ndc2\n", "")
    assert run(consul, "catalog", "datacenters", "extra") == 1
    assert capsys.readouterr().err == "Too many arguments (expected 0, got 1)\n"
    consul.route("GET", "/v1/catalog/datacenters", "boom", status=500)
    assert run(consul, "catalog", "datacenters") == 1
    assert capsys.readouterr().err == (
        "Error listing datacenters: Unexpected response code: 500 (boom)\n"
    )


def test_catalog_services(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route(
        "GET",
        "/v1/catalog/services",
        {"web": ["v2", "primary"], "consul": [], "db": ["pg"]},
    )
    assert run(consul, "catalog", "services") == 0
    assert capsys.readouterr() == ("consul\ndb\nweb\n", "")
    assert run(consul, "catalog", "services", "-tags") == 0
    # tabwriter pads the name column to 6 + the widest; the whole text is TrimSpace'd.
    assert capsys.readouterr().out == ("consul      \ndb          pg\nweb         primary,v2\n")
    assert run(consul, "catalog", "services", "-node-meta=rack=r1", "-node-meta", "os=linux") == 0
    assert consul.requests[-1].query == {"node-meta": ["rack:r1", "os:linux"]}


def test_catalog_services_for_node(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route(
        "GET",
        "/v1/catalog/node-services/n1",
        {
            "Node": {"Node": "n1"},
            "Services": [
                {"ID": "web-1", "Service": "web", "Tags": ["b"]},
                {"ID": "web-2", "Service": "web", "Tags": ["a"]},
                {"ID": "db", "Service": "db", "Tags": None},
            ],
        },
    )
    assert run(consul, "catalog", "services", "-node=n1", "-tags") == 0
    # Duplicate names merge their tags (sorted); TrimSpace leaves inner lines' padding.
    assert capsys.readouterr().out == "db       \nweb      a,b\n"
    assert consul.of("GET", "/v1/catalog/node-services/n1")[0].query == {}


def test_catalog_services_none(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/catalog/services", {})
    assert run(consul, "catalog", "services") == 0
    assert capsys.readouterr() == (
        "",
        "No services match the given query - try expanding your search.\n",
    )
    consul.route("GET", "/v1/catalog/node-services/ghost", "", status=404)
    assert run(consul, "catalog", "services", "-node=ghost") == 0
    assert capsys.readouterr().err.startswith("No services match the given query")


def test_catalog_services_errors(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(consul, "catalog", "services", "-node-meta=novalue") == 1
    assert capsys.readouterr().err.startswith(
        'invalid value "novalue" for flag -node-meta: Missing "=" value in argument: novalue\n'
        "Usage: gossamer catalog services [options]\n"
    )
    consul.route("GET", "/v1/catalog/services", "boom", status=500)
    assert run(consul, "catalog", "services") == 1
    assert capsys.readouterr().err == (
        "Error listing services: Unexpected response code: 500 (boom)\n"
    )
    consul.route("GET", "/v1/catalog/node-services/n1", "boom", status=500)
    assert run(consul, "catalog", "services", "-node=n1") == 1
    assert capsys.readouterr().err == (
        "Error listing services for node: Unexpected response code: 500 (boom)\n"
    )


NODES = [
    {
        "ID": "44f8ad4e-7c2b-1b67-bb4c-2ff5b2f8f8a1",
        "Node": "server-1",
        "Address": "10.0.0.1",
        "Datacenter": "dc1",
        "TaggedAddresses": {"wan": "1.2.3.4", "lan": "10.0.0.1"},
        "Meta": {"rack": "r1", "consul-network-segment": ""},
        "CreateIndex": 5,
        "ModifyIndex": 6,
    },
    {
        "ID": "",
        "Node": "client-with-a-long-name",
        "Address": "10.0.0.22",
        "Datacenter": "dc1",
        "TaggedAddresses": None,
        "Meta": None,
        "CreateIndex": 7,
        "ModifyIndex": 7,
    },
]


def test_catalog_nodes(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route("GET", "/v1/catalog/nodes", NODES)
    assert run(consul, "catalog", "nodes") == 0
    assert capsys.readouterr() == (
        "Node                     ID        Address    DC\n"
        "server-1                 44f8ad4e  10.0.0.1   dc1\n"
        "client-with-a-long-name            10.0.0.22  dc1\n",
        "",
    )
    assert run(consul, "catalog", "nodes", "-detailed") == 0
    assert capsys.readouterr().out == (
        "Node                     ID                                    Address    DC   "
        "TaggedAddresses            Meta\n"
        "server-1                 44f8ad4e-7c2b-1b67-bb4c-2ff5b2f8f8a1  10.0.0.1   dc1  "
        "lan=10.0.0.1, wan=1.2.3.4  consul-network-segment=, rack=r1\n"
        "client-with-a-long-name                                        10.0.0.22  dc1  "
        "                           \n"
    )


def test_catalog_nodes_query(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    consul.route("GET", "/v1/catalog/nodes", NODES[:1])
    flt = tmp_path / "filter.txt"
    flt.write_text('Meta.rack == "r1"')
    args = ("-near=_agent", "-node-meta=rack=r1", f"-filter=@{flt}", "-datacenter=dc1")
    assert run(consul, "catalog", "nodes", *args) == 0
    assert consul.requests[0].query == {
        "node-meta": ["rack:r1"],
        "near": ["_agent"],
        "filter": ['Meta.rack == "r1"'],
        "dc": ["dc1"],
    }
    capsys.readouterr()
    assert run(consul, "catalog", "nodes", "-filter=@/nonexistent") == 1
    assert capsys.readouterr().err == (
        "Could not process filter argument: Failed to read file: open /nonexistent: "
        "no such file or directory\n"
    )


def test_catalog_nodes_for_service(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    consul.route(
        "GET",
        "/v1/catalog/service/web",
        [
            {
                "ID": "abcdef01-0000-0000-0000-000000000000",
                "Node": "n1",
                "Address": "10.0.0.5",
                "Datacenter": "dc1",
                "TaggedAddresses": {},
                "NodeMeta": {"k": "v"},
                "ServiceID": "web",
                "ServiceName": "web",
            }
        ],
    )
    assert run(consul, "catalog", "nodes", "-service=web", "-detailed") == 0
    assert capsys.readouterr().out == (
        "Node  ID                                    Address   DC   TaggedAddresses  Meta\n"
        "n1    abcdef01-0000-0000-0000-000000000000  10.0.0.5  dc1                   k=v\n"
    )
    consul.route("GET", "/v1/catalog/service/web", [])
    assert run(consul, "catalog", "nodes", "-service=web") == 0
    assert capsys.readouterr() == (
        "",
        "No nodes match the given query - try expanding your search.\n",
    )
    consul.route("GET", "/v1/catalog/service/web", "boom", status=500)
    assert run(consul, "catalog", "nodes", "-service=web") == 1
    assert capsys.readouterr().err == (
        "Error listing nodes for service: Unexpected response code: 500 (boom)\n"
    )


# --------------------------------------------------------------------------------------
# services register / deregister
# --------------------------------------------------------------------------------------


def test_services_register_from_file(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    consul.route("PUT", "/v1/agent/service/register", None)
    web = tmp_path / "web.json"
    web.write_text(
        json.dumps(
            {
                "service": {
                    "name": "web",
                    "id": "web-1",
                    "tags": ["v1"],
                    "port": 8080,
                    "meta": {"Owner_Team": "x"},
                    "enable_tag_override": True,
                    "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 8080}},
                    "check": {
                        "id": "web-http",
                        "http": "http://localhost:8080/health",
                        "interval": "10s",
                        "deregister_critical_service_after": "1m",
                        "header": {"X-Auth": ["t"]},
                    },
                    "token": "ignored",
                }
            }
        )
    )
    many = tmp_path / "many.json"
    many.write_text(json.dumps({"services": [{"Name": "db", "Port": 5432}, {"name": "cache"}]}))
    assert run(consul, "services", "register", str(web), str(many)) == 0
    assert capsys.readouterr() == (
        "Registered service: web\nRegistered service: db\nRegistered service: cache\n",
        "",
    )
    bodies = [json.loads(r.body) for r in consul.requests]
    assert bodies[0] == {
        "ID": "web-1",
        "Name": "web",
        "Tags": ["v1"],
        "Port": 8080,
        "TaggedAddresses": {"lan": {"Address": "10.0.0.1", "Port": 8080}},
        "EnableTagOverride": True,
        "Meta": {"Owner_Team": "x"},
        "Check": {
            "CheckID": "web-http",
            "HTTP": "http://localhost:8080/health",
            "Interval": "10s",
            "DeregisterCriticalServiceAfter": "1m",
            "Header": {"X-Auth": ["t"]},
        },
        "Checks": None,
    }
    assert bodies[1:] == [
        {"Name": "db", "Port": 5432, "Check": None, "Checks": None},
        {"Name": "cache", "Check": None, "Checks": None},
    ]
    assert all(r.headers["content-type"] == "application/json" for r in consul.requests)


def test_services_register_from_flags(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    consul.route("PUT", "/v1/agent/service/register", None)
    args = (
        "-name=web",
        "-id=web-1",
        "-address=10.0.0.1",
        "-port=80",
        "-tag=a",
        "-tag=b",
        "-meta=team=x",
        "-tagged-address=wan=1.2.3.4:443",
    )
    assert run(consul, "services", "register", *args) == 0
    assert capsys.readouterr() == ("Registered service: web\n", "")
    assert json.loads(consul.requests[0].body) == {
        "ID": "web-1",
        "Name": "web",
        "Tags": ["a", "b"],
        "Port": 80,
        "Address": "10.0.0.1",
        "TaggedAddresses": {"wan": {"Address": "1.2.3.4", "Port": 443}},
        "Meta": {"team": "x"},
        "Check": None,
        "Checks": None,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Service registration requires at least one argument or flags."),
        (("-name=web", "web.json"), "Service registration requires arguments or -id, not both."),
        (
            ("-name=web", "-tagged-address=wan=nope"),
            "Invalid Tagged Address: address nope: missing port in address",
        ),
        (
            ("-name=web", "-tagged-address=wan=h:x"),
            'Invalid Tagged Address: strconv.Atoi: parsing "x": invalid syntax',
        ),
    ],
)
def test_services_register_usage_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "services", "register", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


def test_services_register_file_errors(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    hcl = tmp_path / "web.hcl"
    hcl.write_text('service { name = "web" }')
    assert run(consul, "services", "register", str(hcl)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"Error: {hcl}: HCL service definitions are not supported")
    assert "JSON" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    assert run(consul, "services", "register", str(bad)) == 1
    assert capsys.readouterr().err.startswith(f"Error: failed to parse {bad}: ")
    typo = tmp_path / "typo.json"
    typo.write_text('{"service": {"name": "web", "prot": 80}}')
    assert run(consul, "services", "register", str(typo)) == 1
    assert capsys.readouterr().err == (
        f"Error: failed to parse {typo}: invalid config key service.prot\n"
    )
    other = tmp_path / "notes.txt"
    other.write_text("hi")
    assert run(consul, "services", "register", str(other)) == 0
    assert capsys.readouterr() == (
        "",
        f"skipping file {other}, extension must be .hcl or .json, or config format must be set\n",
    )
    assert consul.requests == []


def test_services_register_agent_error(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    consul.route("PUT", "/v1/agent/service/register", "Invalid service address", status=400)
    assert run(consul, "services", "register", "-name=web") == 1
    assert capsys.readouterr().err == (
        'Error registering service "web": Unexpected response code: 400 (Invalid service address)\n'
    )


def test_services_deregister(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    consul.route("PUT", "/v1/agent/service/deregister/web-1", None)
    consul.route("PUT", "/v1/agent/service/deregister/db", None)
    assert run(consul, "services", "deregister", "-id=web-1") == 0
    assert capsys.readouterr() == ("Deregistered service: web-1\n", "")
    defs = tmp_path / "defs.json"
    defs.write_text(json.dumps({"services": [{"id": "web-1", "name": "web"}, {"name": "db"}]}))
    assert run(consul, "services", "deregister", str(defs)) == 0
    assert capsys.readouterr().out == "Deregistered service: web-1\nDeregistered service: db\n"
    assert [r.path for r in consul.requests] == [
        "/v1/agent/service/deregister/web-1",
        "/v1/agent/service/deregister/web-1",
        "/v1/agent/service/deregister/db",
    ]
    assert run(consul, "services", "deregister") == 1
    assert capsys.readouterr().err == (
        "Service deregistration requires at least one argument or -id.\n"
    )
    assert run(consul, "services", "deregister", "-id=x", str(defs)) == 1
    assert capsys.readouterr().err == (
        "Service deregistration requires arguments or -id, not both.\n"
    )
    consul.route("PUT", "/v1/agent/service/deregister/gone", "Unknown service ID", status=404)
    assert run(consul, "services", "deregister", "-id=gone") == 1
    assert capsys.readouterr().err == (
        'Error deregistering service "": Unexpected response code: 404 (Unknown service ID)\n'
    )


# --------------------------------------------------------------------------------------
# watch
# --------------------------------------------------------------------------------------


@pytest.fixture
def bounded_watch(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every in-process watch stops after a few queries and retries without waiting."""
    monkeypatch.setattr(cli_catalog, "_WATCH_MAX_ROUNDS", 6)
    monkeypatch.setattr(cli_catalog, "WATCH_RETRY_BASE_S", 0.01)
    monkeypatch.setenv("SHELL", "/bin/sh")
    return monkeypatch


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-type=bogus",), "Unsupported watch type: bogus"),
        (("-type=key",), "Must specify a single key to watch"),
        (("-type=keyprefix",), "Must specify a single prefix to watch"),
        (("-type=service",), "Must specify a single service to watch"),
        (
            ("-type=key", "-key=k", "-prefix=p", "-service=s"),
            "Invalid parameters: [prefix service]",
        ),
        (("-type=event", "-stale"), "Invalid parameters: [stale]"),
        (("-type=checks", "-service=s", "-state=passing"), "Cannot specify service and state"),
        (("-type=checks", "-state=sad"), "Unsupported state: sad"),
        (("-type=connect_roots",), "Type connect_roots is not supported in the CLI tool"),
        (
            ("-type=service", "-service=s", "-passingonly=maybe"),
            'Failed to parse passingonly flag: strconv.ParseBool: parsing "maybe": invalid syntax',
        ),
    ],
)
def test_watch_parse_errors(
    args: tuple[str, ...], message: str, consul: FakeConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(consul, "watch", *args) == 1
    assert capsys.readouterr() == ("", message + "\n")
    assert consul.requests == []


def test_watch_needs_a_type(consul: FakeConsul, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(consul, "watch") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Watch type must be specified\n\nUsage: gossamer watch [options]")


def test_watch_agent_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", "-http-addr=127.0.0.1:1", "-type=nodes"]) == 1
    err = capsys.readouterr().err
    assert err.startswith('Error querying Consul agent: Get "http://127.0.0.1:1/v1/status/leader"')


def test_watch_without_handler_prints_once(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], bounded_watch: pytest.MonkeyPatch
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/kv/cfg", [pair("cfg", b"<v>")], index=42)
    assert run(consul, "watch", "-type=key", "-key=cfg", "-stale", "-token=tk") == 0
    out, err = capsys.readouterr()
    assert err == ""
    # json.MarshalIndent(data, "", "    ") with the HTML-safe escapes.
    assert out == (
        "{\n"
        '    "Key": "cfg",\n'
        '    "CreateIndex": 3,\n'
        '    "ModifyIndex": 7,\n'
        '    "LockIndex": 0,\n'
        '    "Flags": 0,\n'
        '    "Value": "PHY+"\n'
        "}\n"
    )
    assert [r.path for r in consul.requests] == ["/v1/status/leader", "/v1/kv/cfg"]
    assert consul.requests[1].query == {"stale": [""]}
    assert consul.requests[1].headers["x-consul-token"] == "tk"


def test_watch_missing_key_is_null(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], bounded_watch: pytest.MonkeyPatch
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/kv/cfg", "", status=404, index=3)
    assert run(consul, "watch", "-type=key", "-key=cfg") == 0
    assert capsys.readouterr() == ("null\n", "")


@pytest.mark.parametrize(
    ("args", "path", "query"),
    [
        (("-type=services", "-filter=x"), "/v1/catalog/services", {"filter": ["x"]}),
        (("-type=nodes", "-datacenter=dc2"), "/v1/catalog/nodes", {"dc": ["dc2"]}),
        (
            ("-type=service", "-service=web", "-tag=a", "-tag=b", "-passingonly=true"),
            "/v1/health/service/web",
            {"tag": ["a", "b"], "passing": ["1"]},
        ),
        (("-type=checks",), "/v1/health/state/any", {}),
        (("-type=checks", "-state=critical"), "/v1/health/state/critical", {}),
        (("-type=checks", "-service=web"), "/v1/health/checks/web", {}),
        (("-type=keyprefix", "-prefix=app/"), "/v1/kv/app/", {"recurse": [""]}),
        (("-type=event", "-name=deploy"), "/v1/event/list", {"name": ["deploy"]}),
    ],
)
def test_watch_types_query(
    args: tuple[str, ...],
    path: str,
    query: dict[str, list[str]],
    consul: FakeConsul,
    capsys: pytest.CaptureFixture[str],
    bounded_watch: pytest.MonkeyPatch,
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", path, {"b": [], "a": ["x"]} if "services" in path else [], index=9)
    assert run(consul, "watch", *args) == 0
    out = capsys.readouterr().out
    if "services" in path:  # Go marshals a map with its keys sorted
        assert out == '{\n    "a": [\n        "x"\n    ],\n    "b": []\n}\n'
    else:
        assert out == "[]\n"
    request = consul.requests[-1]
    assert (request.path, request.query) == (path, query)


def test_watch_handler_runs_on_changes(
    consul: FakeConsul,
    capsys: pytest.CaptureFixture[str],
    bounded_watch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.queue(
        "GET",
        "/v1/kv/cfg",
        Answer([pair("cfg", b"one")], index=5),
        Answer([pair("cfg", b"two")], index=6),  # changed: the handler runs
        Answer([pair("cfg", b"two")], index=6),  # same index: nothing
        Answer([pair("cfg", b"two")], index=8),  # new index, same data: nothing
        Answer([pair("cfg", b"three")], index=4),  # went backwards: runs, index reset
        Answer([pair("cfg", b"three")], index=4),
    )
    out = tmp_path / "out"
    handler = f'echo "$CONSUL_INDEX" >> {out}.idx; cat >> {out}'
    assert run(consul, "watch", "-type=key", "-key=cfg", handler) == 0
    assert capsys.readouterr().err == ""
    lines = out.read_text().splitlines()
    assert [base64.b64decode(json.loads(line)["Value"]) for line in lines] == [
        b"one",
        b"two",
        b"three",
    ]
    assert json.loads(lines[0]) == pair("cfg", b"one")  # compact JSON, one line each
    assert Path(f"{out}.idx").read_text().split() == ["5", "6", "4"]
    queries = [r.query for r in consul.of("GET", "/v1/kv/cfg")]
    wait = ["300000ms"]
    assert queries == [
        {},
        {"index": ["5"], "wait": wait},
        {"index": ["6"], "wait": wait},
        {"index": ["6"], "wait": wait},
        {"index": ["8"], "wait": wait},
        {},  # reset to 0 after the index went backwards: no ?index
    ]


def test_watch_without_shell(
    consul: FakeConsul,
    capsys: pytest.CaptureFixture[str],
    bounded_watch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/catalog/nodes", NODES, index=3)
    out = tmp_path / "nodes.json"
    bounded_watch.setattr(cli_catalog, "_WATCH_MAX_ROUNDS", 2)
    handler = ("sh", "-c", f"cat > {out}")  # one word each, not joined for a shell
    assert run(consul, "watch", "-type=nodes", "-shell=false", *handler) == 0
    assert json.loads(out.read_text()) == NODES
    capsys.readouterr()
    assert run(consul, "watch", "-type=nodes", "-shell=false", "no-such-handler-x") == 1
    assert capsys.readouterr().err == (
        'Error starting handler: exec: "no-such-handler-x": executable file not found in $PATH\n'
    )


def test_watch_handler_failure_stops(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], bounded_watch: pytest.MonkeyPatch
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/catalog/services", {"consul": []}, index=3)
    assert run(consul, "watch", "-type=services", "exit", "3") == 1
    assert capsys.readouterr().err == "Error executing handler: exit status 3\n"
    assert len(consul.of("GET", "/v1/catalog/services")) == 1


def test_watch_event_prunes_seen_events(
    consul: FakeConsul,
    capsys: pytest.CaptureFixture[str],
    bounded_watch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ids = [f"{i:08x}-0000-0000-0000-00000000000{i}" for i in (1, 2, 3)]
    events = [{"ID": i, "Name": "deploy", "Payload": None, "LTime": n} for n, i in enumerate(ids)]
    index = [cli_catalog._event_index(i) for i in ids]
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.queue(
        "GET",
        "/v1/event/list",
        Answer(events[:2], index=index[1]),
        Answer(events, index=index[2]),
        Answer(events, index=index[2]),
    )
    out = tmp_path / "events"
    bounded_watch.setattr(cli_catalog, "_WATCH_MAX_ROUNDS", 3)
    assert run(consul, "watch", "-type=event", f"cat >> {out}; echo >> {out}") == 0
    runs = [json.loads(line) for line in out.read_text().splitlines() if line]
    assert runs == [events[:2], events[2:]]  # the second run sees only the new event
    assert capsys.readouterr().err == ""


def test_watch_backs_off_on_errors(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], bounded_watch: pytest.MonkeyPatch
) -> None:
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.queue(
        "GET",
        "/v1/catalog/nodes",
        Answer([], index=4),
        Answer("No cluster leader", status=500),
        Answer("No cluster leader", status=500),
        Answer([], index=4),
    )
    bounded_watch.setattr(cli_catalog, "_WATCH_MAX_ROUNDS", 4)
    assert run(consul, "watch", "-type=nodes", "true") == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert "[ERROR] watch.watch: Watch errored: type=nodes error=" in err[0]
    assert "Unexpected response code: 500 (No cluster leader)" in err[0]
    assert err[0].endswith("retry=10ms")  # base * failures²
    assert err[1].endswith("retry=40ms")
    queries = [r.query for r in consul.of("GET", "/v1/catalog/nodes")]
    # After an error the index is dropped; the same index afterwards is no change.
    assert queries == [{}, {"index": ["4"], "wait": ["300000ms"]}, {}, {}]


def test_watch_retry_is_capped() -> None:
    assert cli_catalog.WATCH_RETRY_MAX_S == 180.0
    assert format_duration(round(cli_catalog.WATCH_RETRY_MAX_S * 1e9)) == "3m0s"
    assert format_duration(45 * 10**9) == "45s"


def test_watch_timeout_covers_the_wait(
    consul: FakeConsul, capsys: pytest.CaptureFixture[str], bounded_watch: pytest.MonkeyPatch
) -> None:
    seen: list[float | None] = []
    original = ApiClient.request

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("timeout_s"))
        return original(self, *args, **kwargs)

    bounded_watch.setattr(ApiClient, "request", spy)
    bounded_watch.setattr(cli_catalog, "_WATCH_MAX_ROUNDS", 1)
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/catalog/nodes", [], index=2)
    assert run(consul, "watch", "-type=nodes") == 0
    assert seen[-1] == 300.0 + 300.0 / 16 + cli_catalog.WATCH_SLACK_S


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_watch_stops_cleanly_on_signal(
    sig: signal.Signals, consul: FakeConsul, tmp_path: Path
) -> None:
    """The real thing: a child process runs the watch; after the handler has run for the
    two answers, the third (blocking) query hangs until the test signals the child."""
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.queue(
        "GET",
        "/v1/kv/cfg",
        Answer([pair("cfg", b"a")], index=5),
        Answer([pair("cfg", b"b")], index=6),
        Answer([pair("cfg", b"b")], index=6, hold=True),
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SHELL": "/bin/sh"}
    for name in ("CONSUL_HTTP_ADDR", "GOSSAMER_HTTP_ADDR", "CONSUL_HTTP_TOKEN"):
        env.pop(name, None)
    handler = f"cat > {tmp_path}/run.$CONSUL_INDEX"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gossamer", "watch", f"-http-addr={consul.addr}"),
            *("-type=key", "-key=cfg", handler),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if (tmp_path / "run.6").exists() and len(consul.of("GET", "/v1/kv/cfg")) >= 3:
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate(timeout=5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert json.loads((tmp_path / "run.5").read_text()) == pair("cfg", b"a")
    assert json.loads((tmp_path / "run.6").read_text()) == pair("cfg", b"b")


def test_watch_signal_reaches_a_running_handler(consul: FakeConsul, tmp_path: Path) -> None:
    """SIGTERM while the handler runs: it is passed on to the handler (which exits from
    it), and the watch still ends with status 0."""
    consul.route("GET", "/v1/status/leader", "127.0.0.1:8300")
    consul.route("GET", "/v1/catalog/nodes", [], index=3)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SHELL": "/bin/sh"}
    started = tmp_path / "started"
    handler = f"touch {started}; exec sleep 30"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gossamer", "watch", f"-http-addr={consul.addr}"),
            *("-type=nodes", handler),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists()
        time.sleep(0.1)  # let the shell exec sleep
        begun = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")
    assert time.monotonic() - begun < 5  # not the handler's 30 s


# --------------------------------------------------------------------------------------
# helpers that stand in for Go's
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("elems", "joined"),
    [
        (("", "a/b/"), "a/b"),
        (("pre", "a"), "pre/a"),
        (("pre/", "/a"), "pre/a"),
        (("", ""), ""),
        (("a", "../b"), "b"),
        (("/x", "..", "..", "y"), "/y"),
        (("p", "."), "p"),
    ],
)
def test_go_path_join(elems: tuple[str, ...], joined: str) -> None:
    assert cli_catalog._go_path_join(*elems) == joined


def test_go_b64decode() -> None:
    assert cli_catalog._go_b64decode("aGk=\n") == b"hi"
    assert cli_catalog._go_b64decode("") == b""
    with pytest.raises(ValueError, match="illegal base64 data at input byte 2"):
        cli_catalog._go_b64decode("aG-k")
    with pytest.raises(ValueError, match="illegal base64 data at input byte"):
        cli_catalog._go_b64decode("aGk")
