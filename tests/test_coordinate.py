"""Tests for swim.coordinate, the port of Serf's Vivaldi ``coordinate`` package (v0.9.4).

The first two groups port ``coordinate/coordinate_test.go`` and ``coordinate/client_test.go``
with the same numbers and Go's tolerance (``verifyEqualFloats``: 1e-6). Then golden values
produced by Serf's own Go code, convergence, determinism, the ack payload codec and fuzzing.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import asdict, replace

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swim.coordinate import (
    MAX_RTT_S,
    PING_VERSION,
    Coordinate,
    CoordinateClient,
    CoordinateConfig,
    CoordinateError,
    DimensionalityConflictError,
    _add,
    _diff,
    _go_seconds,
    _magnitude,
    _unit_vector_at,
    decode_ack_payload,
    encode_ack_payload,
)

ZERO_THRESHOLD = 1.0e-6  # util_test.go verifyEqualFloats


def verify_equal_floats(f1: float, f2: float) -> None:
    assert abs(f1 - f2) <= ZERO_THRESHOLD, f"equal assertion fail, {f1:9.6f} != {f2:9.6f}"


def verify_equal_vectors(vec1: list[float], vec2: list[float]) -> None:
    assert len(vec1) == len(vec2), f"vector length mismatch, {len(vec1)} != {len(vec2)}"
    for a, b in zip(vec1, vec2, strict=True):
        verify_equal_floats(a, b)


def config_with(**changes: object) -> CoordinateConfig:
    return replace(CoordinateConfig.default(), **changes)  # type: ignore[arg-type]


def new_client(config: CoordinateConfig | None = None, seed: int = 1) -> CoordinateClient:
    return CoordinateClient(config or CoordinateConfig.default(), random.Random(seed))


# --- coordinate_test.go ---------------------------------------------------------------------


def test_default_config_matches_go() -> None:
    """config.go DefaultConfig."""
    assert asdict(CoordinateConfig.default()) == {
        "dimensionality": 8,
        "vivaldi_error_max": 1.5,
        "vivaldi_ce": 0.25,
        "vivaldi_cc": 0.25,
        "adjustment_window_size": 20,
        "height_min": 10.0e-6,
        "latency_filter_size": 3,
        "gravity_rho": 150.0,
    }


def test_new_coordinate() -> None:
    """TestCoordinate_NewCoordinate."""
    config = CoordinateConfig.default()
    c = Coordinate.new(config)
    assert len(c.vec) == config.dimensionality
    assert c == Coordinate([0.0] * 8, 1.5, 0.0, 10.0e-6)
    assert Coordinate.origin(8) == c
    assert len(Coordinate.origin(3).vec) == 3


def test_clone() -> None:
    """TestCoordinate_Clone."""
    c = Coordinate.new(CoordinateConfig.default())
    c.vec[0], c.vec[1], c.vec[2] = 1.0, 2.0, 3.0
    c.error = 5.0
    c.adjustment = 10.0
    c.height = 4.2

    other = c.clone()
    assert c == other, "coordinate clone didn't make a proper copy"

    other.vec[0] = c.vec[0] + 0.5
    assert c != other, "cloned coordinate is still pointing at its ancestor"


def test_is_valid() -> None:
    """TestCoordinate_IsValid."""
    c = Coordinate.new(CoordinateConfig.default())

    def set_field(index: int, value: float) -> None:
        if index < len(c.vec):
            c.vec[index] = value
        else:
            setattr(c, ("error", "adjustment", "height")[index - len(c.vec)], value)

    for i in range(len(c.vec) + 3):
        assert c.is_valid(), f"field {i} should be valid"
        set_field(i, math.nan)
        assert not c.is_valid(), f"field {i} should not be valid (NaN)"
        set_field(i, 0.0)
        assert c.is_valid(), f"field {i} should be valid"
        set_field(i, math.inf)
        assert not c.is_valid(), f"field {i} should not be valid (Inf)"
        set_field(i, 0.0)
        assert c.is_valid(), f"field {i} should be valid"


def test_is_compatible_with() -> None:
    """TestCoordinate_IsCompatibleWith."""
    config = config_with(dimensionality=3)
    c1 = Coordinate.new(config)
    c2 = Coordinate.new(config)
    alien = Coordinate.new(replace(config, dimensionality=2))

    assert c1.is_compatible_with(c1) and c2.is_compatible_with(c2)
    assert alien.is_compatible_with(alien)
    assert c1.is_compatible_with(c2) and c2.is_compatible_with(c1)
    assert not (
        c1.is_compatible_with(alien)
        or c2.is_compatible_with(alien)
        or alien.is_compatible_with(c1)
        or alien.is_compatible_with(c2)
    )


def test_apply_force() -> None:
    """TestCoordinate_ApplyForce."""
    rng = random.Random(1)
    config = config_with(dimensionality=3, height_min=0.0)

    origin = Coordinate.new(config)

    # Normalize, get the direction right, and apply the force multiplier.
    above = Coordinate.new(config)
    above.vec = [0.0, 0.0, 2.9]
    c = origin.apply_force(config, 5.3, above, rng)
    verify_equal_vectors(c.vec, [0.0, 0.0, -5.3])

    # A point not starting at the origin.
    right = Coordinate.new(config)
    right.vec = [3.4, 0.0, -5.3]
    c = c.apply_force(config, 2.0, right, rng)
    verify_equal_vectors(c.vec, [-2.0, 0.0, -5.3])

    # Points on top of each other: a random direction, one unit away.
    c = origin.apply_force(config, 1.0, origin, rng)
    verify_equal_floats(origin.distance_to(c), 1.0)

    # A minimum height is factored in.
    config = replace(config, height_min=10.0e-6)
    origin = Coordinate.new(config)
    c = origin.apply_force(config, 5.3, above, rng)
    verify_equal_vectors(c.vec, [0.0, 0.0, -5.3])
    verify_equal_floats(c.height, config.height_min + 5.3 * config.height_min / 2.9)

    # The height minimum is enforced.
    c = origin.apply_force(config, -5.3, above, rng)
    verify_equal_vectors(c.vec, [0.0, 0.0, 5.3])
    verify_equal_floats(c.height, config.height_min)

    # Shenanigans if the dimensions don't match.
    bad = c.clone()
    bad.vec = [0.0] * (len(bad.vec) + 1)
    with pytest.raises(DimensionalityConflictError):
        c.apply_force(config, 1.0, bad, rng)


def test_distance_to() -> None:
    """TestCoordinate_DistanceTo."""
    config = config_with(dimensionality=3, height_min=0.0)
    c1, c2 = Coordinate.new(config), Coordinate.new(config)
    c1.vec = [-0.5, 1.3, 2.4]
    c2.vec = [1.2, -2.3, 3.4]

    verify_equal_floats(c1.distance_to(c1), 0.0)
    verify_equal_floats(c1.distance_to(c2), c2.distance_to(c1))
    verify_equal_floats(c1.distance_to(c2), 4.104875150354758)

    # Negative adjustment factors are ignored.
    c1.adjustment = -1.0e6
    verify_equal_floats(c1.distance_to(c2), 4.104875150354758)

    # Positive adjustment factors affect the distance.
    c1.adjustment = 0.1
    c2.adjustment = 0.2
    verify_equal_floats(c1.distance_to(c2), 4.104875150354758 + 0.3)

    # The heights affect the distance.
    c1.height = 0.7
    c2.height = 0.1
    verify_equal_floats(c1.distance_to(c2), 4.104875150354758 + 0.3 + 0.8)

    bad = c1.clone()
    bad.vec = [0.0] * (len(bad.vec) + 1)
    with pytest.raises(DimensionalityConflictError):
        c1.distance_to(bad)


def _dist_example(a: Coordinate, b: Coordinate) -> float:
    """coordinate_test.go ``dist``: the self-contained example from Serf's documentation."""
    if len(a.vec) != len(b.vec):
        raise ValueError("dimensions aren't compatible")
    sumsq = 0.0
    for x, y in zip(a.vec, b.vec, strict=True):
        sumsq += (x - y) * (x - y)
    rtt = math.sqrt(sumsq) + a.height + b.height
    adjusted = rtt + a.adjustment + b.adjustment
    if adjusted > 0.0:
        rtt = adjusted
    return rtt


def test_dist_example() -> None:
    """TestCoordinate_dist_Example."""
    config = CoordinateConfig.default()
    c1, c2 = Coordinate.new(config), Coordinate.new(config)
    c1.vec = [-0.5, 1.3, 2.4]
    c2.vec = [1.2, -2.3, 3.4]
    c1.adjustment = 0.1
    c2.adjustment = 0.2
    c1.height = 0.7
    c2.height = 0.1
    verify_equal_floats(c1.distance_to(c2), _dist_example(c1, c2))


def test_raw_distance_to() -> None:
    """TestCoordinate_rawDistanceTo."""
    config = config_with(dimensionality=3, height_min=0.0)
    c1, c2 = Coordinate.new(config), Coordinate.new(config)
    c1.vec = [-0.5, 1.3, 2.4]
    c2.vec = [1.2, -2.3, 3.4]

    verify_equal_floats(c1.raw_distance_to(c1), 0.0)
    verify_equal_floats(c1.raw_distance_to(c2), c2.raw_distance_to(c1))
    verify_equal_floats(c1.raw_distance_to(c2), 4.104875150354758)

    # The adjustment doesn't factor into the raw distance.
    c1.adjustment = 1.0e6
    verify_equal_floats(c1.raw_distance_to(c2), 4.104875150354758)

    # The heights do.
    c1.height = 0.7
    c2.height = 0.1
    verify_equal_floats(c1.raw_distance_to(c2), 4.104875150354758 + 0.8)


def test_add() -> None:
    """TestCoordinate_add."""
    vec1 = [1.0, -3.0, 3.0]
    vec2 = [-4.0, 5.0, 6.0]
    verify_equal_vectors(_add(vec1, vec2), [-3.0, 2.0, 9.0])
    verify_equal_vectors(_add(vec1, [0.0, 0.0, 0.0]), vec1)


def test_diff() -> None:
    """TestCoordinate_diff."""
    vec1 = [1.0, -3.0, 3.0]
    vec2 = [-4.0, 5.0, 6.0]
    verify_equal_vectors(_diff(vec1, vec2), [5.0, -8.0, -3.0])
    verify_equal_vectors(_diff(vec1, [0.0, 0.0, 0.0]), vec1)


def test_magnitude() -> None:
    """TestCoordinate_magnitude."""
    verify_equal_floats(_magnitude([0.0, 0.0, 0.0]), 0.0)
    verify_equal_floats(_magnitude([1.0, -2.0, 3.0]), 3.7416573867739413)


def test_unit_vector_at() -> None:
    """TestCoordinate_unitVectorAt."""
    rng = random.Random(1)
    vec1 = [1.0, 2.0, 3.0]
    vec2 = [0.5, 0.6, 0.7]
    u, mag = _unit_vector_at(vec1, vec2, rng)
    verify_equal_vectors(u, [0.18257418583505536, 0.511207720338155, 0.8398412548412546])
    verify_equal_floats(_magnitude(u), 1.0)
    verify_equal_floats(mag, _magnitude(_diff(vec1, vec2)))

    # Equal positions give a random unit vector rather than a divide by zero.
    u, mag = _unit_vector_at(vec1, vec1, rng)
    verify_equal_floats(_magnitude(u), 1.0)
    verify_equal_floats(mag, 0.0)


def test_unit_vector_at_last_resort() -> None:
    """The clause Go's test could not reach: the random vector itself is ~zero."""

    class Halves(random.Random):
        def random(self) -> float:
            return 0.5

    u, mag = _unit_vector_at([1.0, 2.0], [1.0, 2.0], Halves())
    assert (u, mag) == ([1.0, 0.0], 0.0)


# --- client_test.go -------------------------------------------------------------------------


def test_new_client() -> None:
    """TestClient_NewClient."""
    with pytest.raises(ValueError, match="dimensionality"):
        new_client(config_with(dimensionality=0))

    config = config_with(dimensionality=7)
    client = new_client(config)
    assert client.coordinate() == Coordinate.new(config), "fresh client should be at the origin"


@pytest.mark.parametrize(
    "changes",
    [{"latency_filter_size": 0}, {"gravity_rho": 0.0}, {"adjustment_window_size": -1}],
)
def test_new_client_rejects_configs_go_would_crash_on(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        new_client(config_with(**changes))


def test_update() -> None:
    """TestClient_Update."""
    config = config_with(dimensionality=3)
    client = new_client(config)

    c = client.coordinate()
    verify_equal_vectors(c.vec, [0.0, 0.0, 0.0])

    # A node right above the client, and an RTT longer than the distance predicts.
    other = Coordinate.new(config)
    other.vec[2] = 0.001
    rtt = 2.0 * other.vec[2]
    c = client.update("node", other, rtt)

    # The client should have scooted down to get away from it.
    assert c.vec[2] < 0.0, f"client z coordinate {c.vec[2]:9.6f} should be < 0.0"

    # Set the coordinate to a known state.
    c.vec[2] = 99.0
    client.set_coordinate(c)
    c = client.coordinate()
    verify_equal_floats(c.vec[2], 99.0)


def test_invalid_in_ping_values() -> None:
    """TestClient_InvalidInPingValues.

    Go's pings are ``time.Duration(ping * 1e9)`` for ping in {1<<63 - 1, -35, 11}: the first
    product wraps around int64 to -1e9 ns, i.e. -1 s, so it tests a negative RTT too. The huge
    RTT Go meant, and NaN/inf, are added here.
    """
    wrapped_ns = ((1 << 63) - 1) * 1_000_000_000 % (1 << 64)
    wrapped_ns -= 1 << 64 if wrapped_ns >= 1 << 63 else 0
    assert wrapped_ns == -1_000_000_000  # as Go prints it (golden run)

    client = new_client(config_with(dimensionality=3))
    other = Coordinate.new(client.config)
    other.vec[2] = 0.001
    dist = client.distance_to(other)

    pings = [wrapped_ns / 1e9, -35.0, 11.0, 9.223372036e9, math.inf, -math.inf, math.nan]
    for ping in pings:
        with pytest.raises(CoordinateError, match="round trip time not in valid range"):
            client.update("node", other, ping)
        assert client.distance_to(other) == dist
    assert client.stats["rejected"] == len(pings)


def test_rtt_bounds_follow_go() -> None:
    """Go rejects rtt < 0 or > 10 s only: zero (coarse clocks) and exactly 10 s are fine."""
    client = new_client(config_with(dimensionality=3))
    other = Coordinate.new(client.config)
    other.vec[2] = 0.001
    client.update("node", other, 0.0)
    assert client.stats["zero_rtt"] == 1
    client.update("node", other, MAX_RTT_S)
    assert client.coordinate().is_valid()
    assert client.stats == {"resets": 0, "zero_rtt": 1, "rejected": 0}


def test_client_distance_to() -> None:
    """TestClient_DistanceTo (Go compares Durations: whole nanoseconds)."""
    config = config_with(dimensionality=3, height_min=0.0)
    client = new_client(config)

    other = Coordinate.new(config)
    other.vec[2] = 12.345
    expected_ns = int(other.vec[2] * 1.0e9)
    dist = client.distance_to(other)
    assert round(dist * 1.0e9) == expected_ns


def test_latency_filter() -> None:
    """TestClient_latencyFilter."""
    client = new_client(config_with(latency_filter_size=3))

    # The median, and samples age out.
    verify_equal_floats(client._latency_filter("alice", 0.201), 0.201)
    verify_equal_floats(client._latency_filter("alice", 0.200), 0.201)
    verify_equal_floats(client._latency_filter("alice", 0.207), 0.201)

    # This glitch will get median-ed out and never seen by Vivaldi.
    verify_equal_floats(client._latency_filter("alice", 1.9), 0.207)
    verify_equal_floats(client._latency_filter("alice", 0.203), 0.207)
    verify_equal_floats(client._latency_filter("alice", 0.199), 0.203)
    verify_equal_floats(client._latency_filter("alice", 0.211), 0.203)

    # Different nodes are not coupled.
    verify_equal_floats(client._latency_filter("bob", 0.310), 0.310)

    # No leak for nodes that leave.
    client.forget_node("alice")
    verify_equal_floats(client._latency_filter("alice", 0.888), 0.888)
    client.forget_node("nobody")  # unknown nodes are fine


def test_nan_defense() -> None:
    """TestClient_NaN_Defense."""
    config = config_with(dimensionality=3)
    client = new_client(config)

    # Block a bad coordinate from coming in.
    other = Coordinate.new(config)
    other.vec[0] = math.nan
    assert not other.is_valid()
    rtt = 0.250
    with pytest.raises(CoordinateError, match="coordinate is invalid"):
        client.update("node", other, rtt)
    assert client.coordinate().is_valid()

    # Block setting an invalid coordinate directly.
    with pytest.raises(CoordinateError, match="coordinate is invalid"):
        client.set_coordinate(other)
    assert client.coordinate().is_valid()

    # Block an incompatible coordinate.
    other.vec = [0.0] * (2 * len(other.vec))
    with pytest.raises(CoordinateError, match="dimensions aren't compatible"):
        client.update("node", other, rtt)
    assert client.coordinate().is_valid()

    # Block setting an incompatible coordinate directly.
    with pytest.raises(CoordinateError, match="dimensions aren't compatible"):
        client.set_coordinate(other)
    assert client.coordinate().is_valid()

    # Poison the internal state and make sure we reset on an update.
    client._coord.vec[0] = math.nan
    other = Coordinate.new(config)
    c = client.update("node", other, rtt)
    assert c.is_valid()
    assert client.stats["resets"] == 1


def test_coordinate_and_set_coordinate_copy() -> None:
    client = new_client()
    c = client.coordinate()
    c.vec[0] = 5.0
    assert client.coordinate().vec[0] == 0.0
    client.set_coordinate(c)
    c.vec[0] = 6.0
    assert client.coordinate().vec[0] == 5.0
    returned = client.update("n", Coordinate.new(client.config), 0.01)
    returned.vec[0] = 123.0
    assert client.coordinate().vec[0] != 123.0


# --- Golden values from Serf's Go code ------------------------------------------------------
#
# Produced by Serf 0.9.4's coordinate package itself (Debian golang-github-hashicorp-serf-dev,
# go1.19 on amd64) from a throwaway _test.go running exactly the schedule below, printing every
# float with strconv.FormatFloat(x, 'g', -1, 64). The starting coordinates never coincide, so
# Go's rand is never consulted and the results must match bit for bit.


def _initial(config: CoordinateConfig, k: int) -> Coordinate:
    c = Coordinate.new(config)
    for i in range(len(c.vec)):
        c.vec[i] = float((k * 31 + i * 17) % 23 - 11) * 1e-3
    c.height = 1e-5 + float(k) * 1e-4
    return c


def _rtt_ns(k: int, i: int, j: int) -> int:
    if k % 37 == 5:
        return 0
    return 10_000_000 * (1 + (i + j) % 3) + abs(i - j) * 3_000_000 + (k * 7919) % 1000 * 1000


def _run_golden(config: CoordinateConfig, steps: int) -> list[CoordinateClient]:
    clients = []
    for k in range(4):
        client = CoordinateClient(config, random.Random(k))
        client.set_coordinate(_initial(config, k))
        clients.append(client)
    for k in range(steps):
        i = k % 4
        j = (i + 1 + (k // 4) % 3) % 4
        clients[i].update(f"node_{j}", clients[j].coordinate(), _rtt_ns(k, i, j) / 1e9)
    return clients


GOLDEN_DEFAULT = [
    (
        [-0.013284568134934687, 0.005689212967644326, 0.002485965700369395, -0.008284995488016079,
         0.009281811862868087, 0.004689298438260609, 0.0014860511709856663, -0.009284910017399813],
        0.017909278700832604, -0.0010927779968674957, 3.3790663400132754e-05,
    ),
    (
        [-0.0015729842304099224, -0.0051163941615437695, 0.0026364109869510648,
         0.0034268101809208002, 0.0017353476736798857, -0.006116353043809914,
         0.0016364521046849194, 0.0024268512986546534],
        0.026603034902377927, -0.0013040224748274022, 1.941833663279529e-05,
    ),
    (
        [0.0055060109339357165, -0.0038258642562429683, -0.004479584600850903,
         0.010505658946855694, 7.733960094208722e-05, -0.004825793858826966,
         -0.005479514203434891, 0.00950572934427169],
        0.015600579034241354, -0.0010630716415593303, 0.00015315426425613967,
    ),
    (
        [-0.010681585629436068, 0.00832191636903298, 0.00041376021192070114,
         -0.005682027377240071, -0.01079027648308481, 0.0073220047185937834,
         -0.0005861514385184996, -0.006681939027679256],
        0.007898026713463636, -0.0009659062326278723, 0.0003238048571802831,
    ),
]  # fmt: skip
GOLDEN_DEFAULT_DIST_NS = {
    (0, 1): 24151890, (0, 2): 35741792, (0, 3): 19409701,
    (1, 2): 13858115, (1, 3): 25945442, (2, 3): 33764444,
}  # fmt: skip

GOLDEN_SMALL = [
    ([-0.020218049996338434, 0.00704420806104322, 0.001008399354548652],
     0.30712421883331, 0.0, 0.0008846194570134417),
    ([-0.0009013111744231878, -0.008229948925970986, 0.0036278061959296726],
     0.11862581409617612, 0.0, 5.3867641710250555e-05),
    ([0.008787927367831521, -0.00728798311497733, -0.00632908920620717],
     0.11844345918602125, 0.0, 0.0005220809154441528),
    ([-0.007867746506445459, 0.014556293331083334, 0.006944185902803174],
     0.12645191086768628, 0.0, 0.0021782073307579945),
]  # fmt: skip
GOLDEN_SMALL_DIST_NS = {
    (0, 1): 25703332, (0, 2): 34581949, (0, 3): 18689566,
    (1, 2): 14501048, (1, 3): 26289141, (2, 3): 33208708,
}  # fmt: skip


@pytest.mark.parametrize(
    ("config", "steps", "coords", "dists"),
    [
        (CoordinateConfig.default(), 400, GOLDEN_DEFAULT, GOLDEN_DEFAULT_DIST_NS),
        (
            config_with(
                dimensionality=3, adjustment_window_size=0, latency_filter_size=1, height_min=0.0
            ),
            150,
            GOLDEN_SMALL,
            GOLDEN_SMALL_DIST_NS,
        ),
    ],
    ids=["default", "small"],
)
def test_golden_trajectory_matches_go_bit_for_bit(
    config: CoordinateConfig,
    steps: int,
    coords: list[tuple[list[float], float, float, float]],
    dists: dict[tuple[int, int], int],
) -> None:
    clients = _run_golden(config, steps)
    for client, (vec, error, adjustment, height) in zip(clients, coords, strict=True):
        assert client.coordinate() == Coordinate(vec, error, adjustment, height)
        assert client.stats["resets"] == 0
    for (i, j), ns in dists.items():
        assert clients[i].distance_to(clients[j].coordinate()) == ns / 1e9


def test_golden_poisoned_state_resets_for_a_whole_adjustment_window() -> None:
    """Go resets the coordinate but keeps the NaN it left in the adjustment window, so the
    next 19 updates reset as well; the 21st is the first clean one."""
    config = CoordinateConfig.default()
    client = CoordinateClient(config, random.Random(1))
    client.set_coordinate(_initial(config, 1))
    other = _initial(config, 2)
    for _ in range(3):
        client.update("node", other, 0.020)
    client._coord.vec[0] = math.nan
    resets = []
    for k in range(25):
        client.update("node", other, (20_000_000 + k * 100_000) / 1e9)
        resets.append(client.stats["resets"])
    assert resets == list(range(1, 21)) + [20] * 5
    assert client.coordinate() == Coordinate(
        [-0.0003105114361262588, 6.210228722525176e-05, 0.0004347160105767623,
         -0.0006210228722525175, -0.00024840914890100703, 0.00012420457445050351,
         0.0004968182978020141, -0.0005589205850272659],
        0.8733419472728333, 0.0011283684278721017, 2.3662482077590044e-05,
    )  # fmt: skip


def test_golden_distance_truncates_to_nanoseconds() -> None:
    config = config_with(dimensionality=3)
    a, b = Coordinate.new(config), Coordinate.new(config)
    a.vec = [-0.5, 1.3, 2.4]
    b.vec = [1.2, -2.3, 3.4]
    a.adjustment, b.adjustment, a.height, b.height = 0.1, 0.2, 0.7, 0.1
    assert a.raw_distance_to(b) + 0.3 == 5.2048751503547575
    assert a.distance_to(b) == 5.20487515  # Go: 5204875150 ns
    a.vec = [0.0123456789123, 0.0, 0.0]
    b.vec = [0.0, 0.0, 0.0]
    a.adjustment, b.adjustment, a.height, b.height = 0.0, 0.0, 0.0, 0.0
    assert a.distance_to(b) == 0.012345678  # Go: 12345678 ns


def test_go_seconds_edges() -> None:
    assert _go_seconds(-1.5) == -1.5
    assert _go_seconds(-0.0000000019) == -0.000000001  # truncation towards zero
    assert _go_seconds(2.0000000019) == 2.000000001
    assert math.isnan(_go_seconds(math.nan))
    assert _go_seconds(math.inf) == math.inf
    assert _go_seconds(1e12) == 1e12  # beyond int64 ns: returned as is


GOLDEN_ENCODED = bytes.fromhex(
    "0184aa41646a7573746d656e74cbbf689374bc6a7efaa54572726f72cb3ff8000000000000a6486569676874"
    "cb3ee4f8b588e368f1a356656398cb3fb999999999999acbbfc999999999999acb01a56e1fc2f8f359cb0000"
    "000000000001cb0000000000000000cb8000000000000000cb405edd2f1a9fbe77cbbe112e0be826d695"
)


def test_encode_matches_go_codec_bytes() -> None:
    c = Coordinate(
        vec=[0.1, -0.2, 1e-300, 5e-324, 0.0, -0.0, 123.456, -1e-9],
        error=1.5,
        adjustment=-0.003,
        height=1e-5,
    )
    assert encode_ack_payload(c) == GOLDEN_ENCODED
    assert decode_ack_payload(GOLDEN_ENCODED) == c


def test_encode_writes_ints_as_float64() -> None:
    c = Coordinate(vec=[0, 1, 2], error=1, adjustment=0, height=0)
    payload = encode_ack_payload(c)
    assert payload.count(b"\xcb") == 6
    assert decode_ack_payload(payload) == Coordinate([0.0, 1.0, 2.0], 1.0, 0.0, 0.0)


# Payloads (after the version byte) fed to Go's codec.MsgpackHandle decoder in the golden run,
# with what Go made of them; None = Go returned an error.
GOLDEN_DECODE = [
    ("ints", "84aa41646a7573746d656e7400a54572726f7201a648656967687400a35665639201fe",
     Coordinate([1.0, -2.0], 1.0, 0.0, 0.0)),
    ("nils", "82a3566563c0a54572726f72c0", Coordinate([], 0.0, 0.0, 0.0)),
    ("trailing", "82a54572726f72cb3fe0000000000000a356656391cb3fd0000000000000c1c1",
     Coordinate([0.25], 0.5, 0.0, 0.0)),
    ("boolerr", "81a54572726f72c3", None),
    ("unknown", "82a3466f6f01a54572726f72cb3fe0000000000000", Coordinate([], 0.5, 0.0, 0.0)),
    ("array", "9492cb3fb999999999999acb3fc999999999999acb3ff8000000000000cb0000000000000000"
     "cb3ee4f8b588e368f1", Coordinate([0.1, 0.2], 1.5, 0.0, 1e-05)),
    ("lower", "82a56572726f72cb3fe0000000000000a376656391cb3ff0000000000000",
     Coordinate([], 0.0, 0.0, 0.0)),
    ("f32", "82a54572726f72ca3f000000a356656391ca3dcccccd",
     Coordinate([0.10000000149011612], 0.5, 0.0, 0.0)),
    ("strval", "81a54572726f72a178", None),
    ("vecmap", "81a356656381a16101", None),
    ("negint", "81a54572726f72fb", Coordinate([], -5.0, 0.0, 0.0)),
]  # fmt: skip


@pytest.mark.parametrize(("body_hex", "expected"), [c[1:] for c in GOLDEN_DECODE],
                         ids=[c[0] for c in GOLDEN_DECODE])  # fmt: skip
def test_decode_agrees_with_go_codec(body_hex: str, expected: Coordinate | None) -> None:
    payload = bytes((PING_VERSION,)) + bytes.fromhex(body_hex)
    if expected is None:
        with pytest.raises(CoordinateError):
            decode_ack_payload(payload)
    else:
        assert decode_ack_payload(payload) == expected


def test_decode_refuses_non_finite_values_go_would_pass_on() -> None:
    """Go decodes NaN/Inf and leaves the rejection to Client.Update; we refuse them early."""
    body = bytes.fromhex("82a54572726f72cb7ff8000000000000a356656391cb7ff0000000000000")
    with pytest.raises(CoordinateError, match="not finite"):
        decode_ack_payload(bytes((PING_VERSION,)) + body)


# --- Convergence and determinism ------------------------------------------------------------


def _simulate(
    clients: list[CoordinateClient], truth: list[list[float]], cycles: int, rng: random.Random
) -> None:
    """phantom.go Simulate, with an injected RNG: each cycle every node probes a random peer."""
    n = len(clients)
    for _ in range(cycles):
        for i in range(n):
            j = rng.randrange(n)
            if j != i:
                rtt = truth[i][j] * (1.0 + rng.uniform(-0.02, 0.02))
                clients[i].update(f"node_{j}", clients[j].coordinate(), rtt)


TRUTH_S = [  # four sites: a triangle and one node inside it, RTTs in seconds
    [0.0, 0.010, 0.020, 0.012],
    [0.010, 0.0, 0.015, 0.008],
    [0.020, 0.015, 0.0, 0.011],
    [0.012, 0.008, 0.011, 0.0],
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converges_on_a_small_topology(seed: int) -> None:
    rng = random.Random(seed)
    clients = [
        CoordinateClient(CoordinateConfig.default(), random.Random(rng.random())) for _ in range(4)
    ]
    _simulate(clients, TRUTH_S, 1500, rng)
    for i in range(4):
        for j in range(4):
            if i != j:
                est = clients[i].distance_to(clients[j].coordinate())
                assert abs(est - TRUTH_S[i][j]) / TRUTH_S[i][j] < 0.15, (i, j, est)
        assert clients[i].coordinate().error < 0.2
        assert clients[i].stats["resets"] == 0


def test_same_seed_same_inputs_same_coordinates() -> None:
    def run(seed: int) -> list[Coordinate]:
        rng = random.Random(99)  # schedule and jitter
        clients = [new_client(seed=seed * 10 + k) for k in range(4)]  # all start coincident
        _simulate(clients, TRUTH_S, 50, rng)
        return [c.coordinate() for c in clients]

    assert run(1) == run(1)
    assert run(1) != run(2)  # the coincident starts really do draw from the rng


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 3),
            st.floats(0.0, MAX_RTT_S),
            st.lists(st.floats(-10.0, 10.0), min_size=3, max_size=3),
            st.floats(0.0, 1.5),
            st.floats(-1.0, 1.0),
            st.floats(0.0, 1.0),
        ),
        max_size=40,
    )
)
def test_update_with_any_valid_input_keeps_a_valid_coordinate(
    steps: list[tuple[int, float, list[float], float, float, float]],
) -> None:
    client = new_client(config_with(dimensionality=3))
    for node, rtt, vec, error, adjustment, height in steps:
        result = client.update(f"n{node}", Coordinate(vec, error, adjustment, height), rtt)
        assert result.is_valid()
        assert 0.0 <= result.error <= client.config.vivaldi_error_max
        assert result.height >= client.config.height_min
    assert client.stats["resets"] == 0


# --- Wire codec -----------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def coordinates(draw: st.DrawFn) -> Coordinate:
    return Coordinate(
        vec=draw(st.lists(finite, max_size=10)),
        error=draw(finite),
        adjustment=draw(finite),
        height=draw(finite),
    )


@given(coordinates())
def test_wire_round_trip(c: Coordinate) -> None:
    payload = encode_ack_payload(c)
    assert payload[0] == PING_VERSION
    # fixmap(4), then per key: fixstr key + cb + 8 bytes; Vec: array header + 9 bytes a float
    assert payload[1] == 0x84
    header = 1 if len(c.vec) < 16 else 3
    assert len(payload) == 2 + (11 + 9) + (6 + 9) + (7 + 9) + 4 + header + 9 * len(c.vec)
    decoded = decode_ack_payload(payload)
    assert decoded == c
    assert [math.copysign(1.0, x) for x in decoded.vec] == [math.copysign(1.0, x) for x in c.vec]
    assert Coordinate.from_wire(c.to_wire()) == c  # str keys, as from JSON


def test_to_wire_key_order_and_names() -> None:
    wire = Coordinate.origin(2).to_wire()
    assert list(wire) == sorted(wire) == ["Adjustment", "Error", "Height", "Vec"]
    raw = msgpack.unpackb(encode_ack_payload(Coordinate.origin(2))[1:], raw=True)
    assert list(raw) == [b"Adjustment", b"Error", b"Height", b"Vec"]


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00",
        b"\x02\x80",
        b"\x01",
        b"\x01\xc1",
        b"\x01\x80\x80",  # a map then trailing bytes: fine for Go too, decodes as zeros
        b"\x01\xa3abc",
        b"\x01\x81\xa3Vec\xa3abc",
        b"\x01\x81\xa3Vec\x91\xc3",
        b"\x01\x81\xa5Error\x90",
        b"\x01\xd6\xff\x00\x00\x00\x00",  # msgpack timestamp
        b"\x01\x91" * 3000,  # deep nesting
    ],
)
def test_decode_malformed_raises_only_coordinate_error(bad: bytes) -> None:
    try:
        c = decode_ack_payload(bad)
    except CoordinateError:
        return
    assert bad == b"\x01\x80\x80"
    assert c == Coordinate([], 0.0, 0.0, 0.0)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(CoordinateError):
        decode_ack_payload("\x01\x80")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "wire",
    [
        None,
        "Vec",
        b"Vec",
        3.5,
        {"Vec": "abc"},
        {"Vec": [True]},
        {"Error": 10**400},
        {"Height": math.inf},
        {b"Adjustment": math.nan},
        {"Vec": [[1.0]]},
    ],
)
def test_from_wire_rejects(wire: object) -> None:
    with pytest.raises(CoordinateError):
        Coordinate.from_wire(wire)


def test_from_wire_reads_arrays_positionally_like_go() -> None:
    assert Coordinate.from_wire([]) == Coordinate([], 0.0, 0.0, 0.0)
    assert Coordinate.from_wire([[1.0], 0.5]) == Coordinate([1.0], 0.5, 0.0, 0.0)
    assert Coordinate.from_wire([[1.0], 0.5, 0.1, 0.2, "extra"]) == Coordinate([1.0], 0.5, 0.1, 0.2)


def test_from_wire_accepts_str_and_bytes_keys_and_skips_unknown() -> None:
    expected = Coordinate([1.0, 2.0], 0.5, -0.25, 1e-5)
    as_str = {"Vec": [1, 2.0], "Error": 0.5, "Adjustment": -0.25, "Height": 1e-5, "X": 1}
    as_bytes = {k.encode(): v for k, v in as_str.items()}
    assert Coordinate.from_wire(as_str) == expected
    assert Coordinate.from_wire(as_bytes) == expected


VALID_PAYLOAD = encode_ack_payload(Coordinate([0.001 * i for i in range(8)], 0.5, -0.001, 2e-5))


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    for payload in (data, bytes((PING_VERSION,)) + data):
        try:
            c = decode_ack_payload(payload)
        except CoordinateError:
            continue
        assert c.is_valid()


@settings(max_examples=1000)
@given(
    st.lists(
        st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
                  st.integers(0, len(VALID_PAYLOAD) - 1), st.integers(0, 255)),
        min_size=1, max_size=6,
    )
)  # fmt: skip
def test_fuzz_mutated_payloads(mutations: list[tuple[str, int, int]]) -> None:
    data = bytearray(VALID_PAYLOAD)
    for kind, pos, value in mutations:
        pos %= max(len(data), 1)
        if kind == "flip" and data:
            data[pos] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[pos] = value
        elif kind == "insert":
            data.insert(pos, value)
        elif kind == "delete" and data:
            del data[pos]
        elif kind == "truncate":
            del data[pos:]
    try:
        c = decode_ack_payload(bytes(data))
    except CoordinateError:
        return
    assert c.is_valid()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.binary(),
        lambda children: st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from([b"Vec", b"Error", b"Height", b"Adjustment", b"x"]),
                          children, max_size=5),
        max_leaves=20,
    )
)  # fmt: skip
def test_fuzz_structured_msgpack(obj: object) -> None:
    payload = bytes((PING_VERSION,)) + msgpack.packb(obj, use_bin_type=False)
    try:
        c = decode_ack_payload(payload)
    except CoordinateError:
        return
    assert c.is_valid()


def test_float32_on_the_wire_is_widened() -> None:
    body = msgpack.packb({"Vec": [0.5], "Error": 1.0}, use_bin_type=False, use_single_float=True)
    assert struct.unpack(">f", body[body.index(b"\xca") + 1 :][:4]) == (0.5,)
    assert decode_ack_payload(b"\x01" + body) == Coordinate([0.5], 1.0, 0.0, 0.0)


# The Go side of the golden tests above. To regenerate: `apt-get install golang-go
# golang-github-hashicorp-serf-dev`, copy /usr/share/gocode/src/github.com/hashicorp/serf/coordinate
# to $DIR/src/github.com/hashicorp/serf/coordinate, save this as golden_test.go there, and run
# `GO111MODULE=off GOPATH=$DIR:/usr/share/gocode go test -v -run TestGolden
# github.com/hashicorp/serf/coordinate`. (Decoding: feed each GOLDEN_DECODE body to
# codec.NewDecoder(bytes.NewReader(b), &codec.MsgpackHandle{}).Decode(&out).)
GO_GOLDEN_GENERATOR = r"""
package coordinate

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
)

func g(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

func show(c *Coordinate) string {
	s := "["
	for _, v := range c.Vec {
		s += g(v) + ", "
	}
	return s + "] " + g(c.Error) + " " + g(c.Adjustment) + " " + g(c.Height)
}

func initial(config *Config, k int) *Coordinate {
	c := NewCoordinate(config)
	for i := range c.Vec {
		c.Vec[i] = float64((k*31+i*17)%23-11) * 1e-3
	}
	c.Height = 1e-5 + float64(k)*1e-4
	return c
}

func rttNs(k, i, j int) int64 {
	if k%37 == 5 {
		return 0
	}
	d := i - j
	if d < 0 {
		d = -d
	}
	return int64(10000000*(1+(i+j)%3)+d*3000000) + int64((k*7919)%1000)*1000
}

func run(name string, config *Config, steps int) {
	clients := make([]*Client, 4)
	for k := range clients {
		clients[k], _ = NewClient(config)
		clients[k].SetCoordinate(initial(config, k))
	}
	for k := 0; k < steps; k++ {
		i, j := k%4, (k%4+1+(k/4)%3)%4
		clients[i].Update(fmt.Sprintf("node_%d", j), clients[j].GetCoordinate(),
			time.Duration(rttNs(k, i, j)))
	}
	for k, c := range clients {
		fmt.Println(name, k, show(c.GetCoordinate()), c.Stats().Resets)
	}
	for i := 0; i < 4; i++ {
		for j := i + 1; j < 4; j++ {
			fmt.Println(name, i, j, int64(clients[i].DistanceTo(clients[j].GetCoordinate())))
		}
	}
}

func TestGolden(t *testing.T) {
	run("default", DefaultConfig(), 400)
	small := DefaultConfig()
	small.Dimensionality, small.AdjustmentWindowSize = 3, 0
	small.LatencyFilterSize, small.HeightMin = 1, 0
	run("small", small, 150)

	config := DefaultConfig()
	client, _ := NewClient(config)
	client.SetCoordinate(initial(config, 1))
	other := initial(config, 2)
	for k := 0; k < 3; k++ {
		client.Update("node", other, 20*time.Millisecond)
	}
	client.coord.Vec[0] = math.NaN()
	for k := 0; k < 25; k++ {
		client.Update("node", other, time.Duration(20000000+k*100000))
		fmt.Println("poison", k, client.Stats().Resets)
	}
	fmt.Println("poison", show(client.GetCoordinate()))

	c := NewCoordinate(config)
	c.Vec = []float64{0.1, -0.2, 1e-300, 5e-324, 0, math.Copysign(0, -1), 123.456, -1e-9}
	c.Error, c.Adjustment, c.Height = 1.5, -0.003, 1e-5
	var buf bytes.Buffer
	buf.WriteByte(1)
	codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(c)
	fmt.Println("encode", hex.EncodeToString(buf.Bytes()))
}
"""
