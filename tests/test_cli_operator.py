"""``gossamer operator raft|autopilot ...`` end to end: ``main([...])`` in-process against
an HTTPServer on 127.0.0.1 serving catalog/http_operator.py over the fake Raft admin of
tests/test_http_operator.py.

Expected output is written out by hand from Consul's command sources
(command/operator/raft/{listpeers,removepeer,transferleader},
command/operator/autopilot/{get,set}) and ryanuber/columnize's layout, not produced by the
code under test. The verbs are wired in through ``gossamer.cli._all_verbs`` the way the
CLI's own table will include them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_http_operator import FakeRaftAdmin, Harness, peer

from federation.autopilot import AutopilotConfig
from gossamer import cli, cli_operator
from gossamer.cluster import free_port

ID1, ID2, ID3 = (peer(n)["ID"] for n in (1, 2, 3))


@pytest.fixture
def op(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for name in ("CONSUL_HTTP_ADDR", "GOSSAMER_HTTP_ADDR", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_SSL"):
        monkeypatch.delenv(name, raising=False)
    verbs = cli._all_verbs()
    if not any(v.name == "operator" for v in verbs):  # until gossamer.cli lists them
        monkeypatch.setattr(cli, "_all_verbs", lambda: (*verbs, *cli_operator.VERBS))
    h = Harness(FakeRaftAdmin())
    try:
        yield h
    finally:
        h.close()


def run(op: Harness, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "-http-addr", op.addr])
    out, err = capsys.readouterr()
    return code, out, err


def admin(op: Harness) -> FakeRaftAdmin:
    assert op.admin is not None
    return op.admin


# --------------------------------------------------------------------------- list-peers


def test_list_peers_table(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(op, capsys, "operator", "raft", "list-peers")
    assert (code, err) == (0, "")
    # columns padded to their widest cell plus two spaces; the last one is not padded
    assert out.splitlines() == [
        "Node      ID                                    Address         State     Voter  "
        "RaftProtocol  Commit Index  Trails Leader By",
        f"server-1  {ID1}  127.0.0.1:8300  leader    true   3             100           -",
        f"server-2  {ID2}  127.0.0.2:8300  follower  true   3             99            1 commit",
        f"server-3  {ID3}  127.0.0.3:8300  follower  true   3             90            10 commits",
    ]


def test_list_peers_unknown_protocol_and_non_voter(
    op: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    admin(op).servers[2]["ProtocolVersion"] = ""
    admin(op).servers[2]["Voter"] = False
    code, out, _ = run(op, capsys, "operator", "raft", "list-peers")
    assert code == 0
    cells = out.splitlines()[3].split()
    assert cells[3:] == ["follower", "false", "<=1", "90", "10", "commits"]


def test_list_peers_without_leader(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    for s in admin(op).servers:
        s["Leader"] = False
    code, out, err = run(op, capsys, "operator", "raft", "list-peers")
    assert (code, out) == (1, "")
    assert err == (
        "Error getting peers: Failed to retrieve raft configuration: "
        "Unexpected response code: 500 (No cluster leader)\n"
    )
    code, out, err = run(op, capsys, "operator", "raft", "list-peers", "-stale")
    assert (code, err) == (0, "")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[3] for r in rows] == ["follower"] * 3
    # no leader index to trail: gossamer shows 0 where Consul's uint64 subtraction wraps
    assert [r[-2:] for r in rows] == [["0", "commits"]] * 3


def test_list_peers_agent_unreachable(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    code = cli.main(["operator", "raft", "list-peers", "-http-addr", f"127.0.0.1:{port}"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err == (
        "Error getting peers: Failed to retrieve raft configuration: Get "
        f'"http://127.0.0.1:{port}/v1/operator/raft/configuration": dial tcp '
        f"127.0.0.1:{port}: connect: connection refused\n"
    )


# --------------------------------------------------------------------------- remove-peer


def test_remove_peer_by_address_and_id(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(op, capsys, "operator", "raft", "remove-peer", "-address=127.0.0.3:8300")
    assert (code, out, err) == (0, 'Removed peer with address "127.0.0.3:8300"\n', "")
    code, out, err = run(op, capsys, "operator", "raft", "remove-peer", "-id", ID2)
    assert (code, out, err) == (0, f'Removed peer with id "{ID2}"\n', "")
    assert admin(op).calls == [
        ("remove_peer", (None, "127.0.0.3:8300")),
        ("remove_peer", (ID2, None)),
    ]
    assert [s["Node"] for s in admin(op).servers] == ["server-1"]


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        ((), "Error removing peer: an address or id is required for the peer to remove"),
        (("-id=a", "-address=b"), "Error removing peer: cannot give both an address and id"),
        (
            ("-id=nope",),
            "Error removing peer: Unexpected response code: 500 "
            '(id "nope" was not found in the Raft configuration)',
        ),
    ],
)
def test_remove_peer_errors(
    op: Harness, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], error: str
) -> None:
    code = cli.main(["operator", "raft", "remove-peer", *flags, "-http-addr", op.addr])
    out, err = capsys.readouterr()
    assert (code, out, err) == (1, "", error + "\n")
    assert admin(op).calls == []


# --------------------------------------------------------------------------- transfer-leader


def test_transfer_leader(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(op, capsys, "operator", "raft", "transfer-leader")
    assert (code, out, err) == (0, "Success\n", "")
    code, out, err = run(op, capsys, "operator", "raft", "transfer-leader", "-id", ID3)
    assert (code, out, err) == (0, "Success\n", "")
    assert admin(op).calls == [("transfer_leader", None), ("transfer_leader", ID3)]
    assert [s["Leader"] for s in admin(op).servers] == [False, False, True]


def test_transfer_leader_error(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(op, capsys, "operator", "raft", "transfer-leader", "-id=ghost")
    assert (code, out) == (1, "")
    assert err == (
        "Error transfering leadership: Failed to transfer leadership Unexpected response "
        "code: 500 (rpc error: code = Unknown desc = Could not find address for server id "
        "ghost)\n"
    )


# --------------------------------------------------------------------------- autopilot


def test_autopilot_get_config(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    admin(op).config = AutopilotConfig(
        last_contact_threshold_s=1.5, server_stabilization_time_s=90.0, redundancy_zone_tag="az"
    )
    code, out, err = run(op, capsys, "operator", "autopilot", "get-config")
    assert (code, err) == (0, "")
    assert out == (
        "CleanupDeadServers = true\n"
        "LastContactThreshold = 1.5s\n"
        "MaxTrailingLogs = 250\n"
        "MinQuorum = 0\n"
        "ServerStabilizationTime = 1m30s\n"
        'RedundancyZoneTag = "az"\n'
        "DisableUpgradeMigration = false\n"
        'UpgradeVersionTag = ""\n'
    )


def test_autopilot_set_config_changes_only_given_flags(
    op: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    admin(op).config = AutopilotConfig(max_trailing_logs=99, dead_server_grace_s=45.0)
    code, out, err = run(
        op,
        capsys,
        "operator",
        "autopilot",
        "set-config",
        "-min-quorum=3",
        "-last-contact-threshold=750ms",
        "-cleanup-dead-servers=false",
    )
    assert (code, out, err) == (0, "Configuration updated!\n", "")
    assert admin(op).config == AutopilotConfig(
        cleanup_dead_servers=False,
        last_contact_threshold_s=0.75,
        max_trailing_logs=99,
        min_quorum=3,
        dead_server_grace_s=45.0,
    )
    (name, (_, cas)) = admin(op).calls[-1]
    assert (name, cas) == ("set_autopilot_config", 5)


def test_autopilot_set_config_lost_race(
    op: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = admin(op)
    # the read the CLI makes returns an index a concurrent writer has since moved past
    monkeypatch.setattr(fake, "autopilot_config", lambda: (fake.config, 5, 4))
    code, out, err = run(op, capsys, "operator", "autopilot", "set-config", "-min-quorum=2")
    assert (code, out, err) == (
        1,
        "Configuration could not be atomically updated, please try again\n",
        "",
    )
    assert fake.config.min_quorum == 0


def test_autopilot_without_leader(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    op.agent.raft_admin = None
    for verb in ("get-config", "set-config"):
        code, out, err = run(op, capsys, "operator", "autopilot", verb)
        assert (code, out) == (1, "")
        assert err == (
            "Error querying Autopilot configuration: Unexpected response code: 500 "
            "(No cluster leader)\n"
        )


# --------------------------------------------------------------------------- help and usage


def test_group_verbs_print_help_and_exit_1(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["operator"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Usage: gossamer operator <subcommand> [options]")
    assert "    autopilot    Provides tools for modifying Autopilot configuration" in err
    assert cli.main(["operator", "raft"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Usage: gossamer operator raft <subcommand> [options]")
    assert "    list-peers         Display the current Raft peer configuration" in err
    assert "    transfer-leader    Transfer raft leadership to another node" in err


def test_leaf_help_lists_flags(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["operator", "raft", "remove-peer", "-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: gossamer operator raft remove-peer [options]")
    for flag in ("-address=<string>", "-id=<string>", "-stale", "-datacenter=<string>"):
        assert f"  {flag}\n" in out


def test_unknown_flag(op: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["operator", "raft", "list-peers", "-bogus"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("flag provided but not defined: -bogus\n")
