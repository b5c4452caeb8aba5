"""Vivaldi network coordinates, a port of Serf's ``coordinate`` package (v0.9.4).

Sources: hashicorp/serf ``coordinate/config.go``, ``coordinate.go``, ``client.go`` and, for the
wire form, ``serf/ping_delegate.go``. The algorithm is Vivaldi [1] with the refinements of [2]
(a height for access links, a per-node median latency filter, gravity towards the origin) and the
adjustment term of [3].

[1] Dabek, Cox, Kaashoek, Morris. "Vivaldi: A Decentralized Network Coordinate System."
    ACM SIGCOMM 2004.
[2] Ledlie, Gardner, Seltzer. "Network Coordinates in the Wild." NSDI 2007.
[3] Lee et al. "On Suitability of Euclidean Embedding for Host-Based Network Coordinate
    Systems." IEEE/ACM Transactions on Networking 18(1), 2010.

Rules (all quantities in seconds, except the dimensionless error):

1. distance(a, b) = |a.vec - b.vec| + a.height + b.height ("raw"); adding a.adjustment +
   b.adjustment gives the estimate, unless that sum is <= 0, when the raw distance is used.
   Like Go's ``time.Duration`` the estimate is truncated to whole nanoseconds.
2. An observation (node, other, rtt) is rejected unless 0 <= rtt <= 10 s and ``other`` is finite
   and has our dimensionality. The RTT used is the median of the node's last
   ``latency_filter_size`` samples.
3. Vivaldi: w = e / (e + e_other); wrongness = |dist - rtt| / rtt;
   e' = min(ce*w*wrongness + e*(1 - ce*w), error_max); move cc*w*(rtt - dist) along the unit
   vector from ``other`` to us (a random one from ``rng`` if we coincide), and scale the height
   by the same force, never below ``height_min``.
4. Adjustment: the mean of the last ``adjustment_window_size`` values of (rtt - raw distance),
   halved (each side of a pair carries half).
5. Gravity: a force -(|origin distance| / gravity_rho)**2 pulls the coordinate towards the origin.
6. A coordinate that ends up non-finite is replaced by the origin and counted in
   ``stats["resets"]``.

The module is a sans-IO core: no clock, no I/O, and randomness only from the injected
``random.Random``. The arithmetic follows Go's operation order (including the 1/mag
multiplication and a left-to-right sum of the adjustment window), so with the same inputs and no
coincident points the coordinates are bit-identical to Serf's.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from math import isfinite, sqrt
from operator import mul, sub
from random import Random  # injected by the driver; cores never call the module
from typing import Any

import msgpack

__all__ = [
    "MAX_RTT_S",
    "PING_VERSION",
    "Coordinate",
    "CoordinateCache",
    "CoordinateClient",
    "CoordinateConfig",
    "CoordinateError",
    "DimensionalityConflictError",
    "decode_ack_payload",
    "encode_ack_payload",
]

PING_VERSION = 1
"""First byte of Serf's ack payload (SERF/ping_delegate.go ``PingVersion``)."""

MAX_RTT_S = 10.0
"""Largest RTT accepted by ``CoordinateClient.update`` (Go ``maxRTT``), inclusive."""

_ZERO_THRESHOLD = 1.0e-6
"""Go ``zeroThreshold``: below this two points coincide, an RTT is clamped, an error floors."""

_INT64_LIMIT_NS = 9.223372036854775808e18
"""2**63: Go's float-to-Duration conversion is only defined below this many nanoseconds."""

_WIRE_KEYS = {
    b"Adjustment": "adjustment",
    b"Error": "error",
    b"Height": "height",
    b"Vec": "vec",
}
_FIELD_ORDER = ("vec", "error", "adjustment", "height")
"""Go's declaration order, used when a struct arrives as a msgpack array."""


class CoordinateError(ValueError):
    """A coordinate, RTT or payload was rejected (Go returns an ``error`` for these)."""


class DimensionalityConflictError(CoordinateError):
    """Two coordinates of different dimensionality met (Go panics with this type)."""

    def __init__(self) -> None:
        super().__init__("coordinate dimensionality does not match")


@dataclass(frozen=True)
class CoordinateConfig:
    """Tuning of the Vivaldi client (Go ``coordinate.Config``)."""

    dimensionality: int = 8
    """Euclidean dimensions; [2] found 8 plus a height a good trade-off."""
    vivaldi_error_max: float = 1.5
    """Error (dimensionless) of a fresh coordinate, and the cap on the error."""
    vivaldi_ce: float = 0.25
    """Vivaldi c_e: the largest share one observation has in the new error [1]."""
    vivaldi_cc: float = 0.25
    """Vivaldi c_c: the largest step one observation moves the coordinate, times the RTT gap [1]."""
    adjustment_window_size: int = 20
    """Samples averaged for the adjustment term [3]; 0 disables it."""
    height_min: float = 10.0e-6
    """Floor of the height, in seconds (> 0 keeps heights positive; small vs. real RTTs)."""
    latency_filter_size: int = 3
    """RTT samples kept per peer; the median of them feeds Vivaldi [2]."""
    gravity_rho: float = 150.0
    """Gravity scale, in seconds: the pull is (distance from origin / rho)**2 [2]."""

    @classmethod
    def default(cls) -> CoordinateConfig:
        """Go ``DefaultConfig()``."""
        return cls()

    def validate(self) -> None:
        """Raise ``ValueError`` for a configuration the algorithm cannot run with.

        Go's ``NewClient`` checks only the dimensionality; a zero latency filter would make its
        median index out of range and a non-positive rho divides by zero, so those fail here.
        """
        if self.dimensionality <= 0:
            raise ValueError("dimensionality must be >0")
        if self.latency_filter_size <= 0:
            raise ValueError("latency_filter_size must be >0")
        if self.adjustment_window_size < 0:
            raise ValueError("adjustment_window_size must be >=0")
        if not self.gravity_rho > 0.0:
            raise ValueError("gravity_rho must be >0")
        if not self.height_min >= 0.0:
            raise ValueError("height_min must be >=0")
        for name in ("vivaldi_error_max", "vivaldi_ce", "vivaldi_cc", "height_min"):
            if not isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite")


_DEFAULT_CONFIG = CoordinateConfig()


def _go_seconds(seconds: float) -> float:
    """``time.Duration(seconds * 1e9).Seconds()``: truncate to whole nanoseconds, as Go does.

    Outside the int64 range (and for NaN/inf) Go's conversion is implementation-defined; the
    value is returned unchanged there, which keeps NaN/inf propagating to the reset rule.
    """
    ns = seconds * 1.0e9
    if 0.0 <= ns < 1.0e9:
        return int(ns) / 1.0e9
    if not -_INT64_LIMIT_NS <= ns < _INT64_LIMIT_NS:
        return seconds
    whole = int(ns)
    sec, nsec = divmod(abs(whole), 1_000_000_000)
    if whole < 0:
        sec, nsec = -sec, -nsec
    return float(sec) + nsec / 1.0e9


def _add(vec1: list[float], vec2: list[float]) -> list[float]:
    return [a + b for a, b in zip(vec1, vec2, strict=True)]


def _diff(vec1: list[float], vec2: list[float]) -> list[float]:
    return [a - b for a, b in zip(vec1, vec2, strict=True)]


def _mul(vec: list[float], factor: float) -> list[float]:
    return [a * factor for a in vec]


def _magnitude(vec: list[float]) -> float:
    # A left-to-right sum like Go's loop (not fsum/hypot, which round differently).
    total = 0.0
    for a in vec:
        total += a * a
    return sqrt(total)


def _random_unit(n: int, rng: Random) -> list[float]:
    """The fallback of Go ``unitVectorAt`` for coincident points."""
    ret = [rng.random() - 0.5 for _ in range(n)]
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        return _mul(ret, 1.0 / mag)
    # Go: "just give up and make a unit vector along the first dimension".
    ret = [0.0] * n
    ret[0] = 1.0
    return ret


def _unit_vector_at(vec1: list[float], vec2: list[float], rng: Random) -> tuple[list[float], float]:
    """Unit vector pointing at vec1 from vec2, and their distance (0.0 when they coincide)."""
    ret = _diff(vec1, vec2)
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        return _mul(ret, 1.0 / mag), mag
    return _random_unit(len(ret), rng), 0.0


def _sum_loop(values: Iterable[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


# Go sums left to right. So does sum() before Python 3.12; from 3.12 it compensates rounding.
_sequential_sum: Callable[[list[float]], float] = sum if sys.version_info < (3, 12) else _sum_loop


def _sum_squares_loop(vec: list[float]) -> float:
    total = 0.0
    for a in vec:
        total += a * a
    return total


def _sum_squares_c(vec: list[float]) -> float:
    return sum(map(mul, vec, vec))  # type: ignore[no-any-return]


_sum_squares: Callable[[list[float]], float] = (
    _sum_squares_c if sys.version_info < (3, 12) else _sum_squares_loop
)
"""Left-to-right sum of squares (Go's loop): in C where ``sum`` does not compensate."""


def _all_finite(vec: list[float]) -> bool:
    return all(map(isfinite, vec))


def _wire_float(value: Any, what: str) -> float:
    # Go's msgpack decoder fills a float64 from any int or float, and nil leaves it zero.
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CoordinateError(f"{what}: expected a number, got {type(value).__name__}")
    try:
        result = float(value)
    except OverflowError as exc:
        raise CoordinateError(f"{what}: number out of range") from exc
    if not isfinite(result):
        raise CoordinateError(f"{what}: not finite")
    return result


@dataclass(slots=True)
class Coordinate:
    """A network coordinate (Go ``coordinate.Coordinate``); all values in seconds except error.

    Mutable like Go's struct; the client hands out and takes copies.
    """

    vec: list[float]
    """Euclidean part, seconds."""
    error: float
    """Confidence (dimensionless), between 0 and the config's error max."""
    adjustment: float = 0.0
    """Offset from recent observations [3], seconds; may be negative."""
    height: float = _DEFAULT_CONFIG.height_min
    """Non-Euclidean access-link offset [2], seconds, >= height_min."""

    @classmethod
    def new(cls, config: CoordinateConfig) -> Coordinate:
        """Go ``NewCoordinate``: the origin, with the config's error max and height min."""
        return cls(
            vec=[0.0] * config.dimensionality,
            error=config.vivaldi_error_max,
            adjustment=0.0,
            height=config.height_min,
        )

    @classmethod
    def origin(cls, dimensionality: int) -> Coordinate:
        """``NewCoordinate`` for the default config with the given dimensionality."""
        return cls(
            vec=[0.0] * dimensionality,
            error=_DEFAULT_CONFIG.vivaldi_error_max,
            adjustment=0.0,
            height=_DEFAULT_CONFIG.height_min,
        )

    def clone(self) -> Coordinate:
        """An independent copy (Go ``Clone``)."""
        return Coordinate(list(self.vec), self.error, self.adjustment, self.height)

    def is_valid(self) -> bool:
        """True when no component is NaN or infinite."""
        return (
            _all_finite(self.vec)
            and isfinite(self.error)
            and isfinite(self.adjustment)
            and isfinite(self.height)
        )

    def is_compatible_with(self, other: Coordinate) -> bool:
        """True when both have the same dimensionality."""
        return len(self.vec) == len(other.vec)

    def apply_force(
        self, config: CoordinateConfig, force: float, other: Coordinate, rng: Random
    ) -> Coordinate:
        """Go ``ApplyForce``: a copy moved by ``force`` seconds away from ``other``.

        A positive force pushes away, a negative one pulls closer; the height scales with
        force/distance and never falls below ``config.height_min``. ``rng`` picks the direction
        when the two points coincide.
        """
        if len(self.vec) != len(other.vec):
            raise DimensionalityConflictError()
        unit, mag = _unit_vector_at(self.vec, other.vec, rng)
        ret = self.clone()
        ret.vec = _add(ret.vec, _mul(unit, force))
        if mag > _ZERO_THRESHOLD:
            height = (ret.height + other.height) * force / mag + ret.height
            ret.height = max(height, config.height_min)
        return ret

    def raw_distance_to(self, other: Coordinate) -> float:
        """Vivaldi distance in seconds, heights included, adjustments not (Go ``rawDistanceTo``)."""
        if len(self.vec) != len(other.vec):
            raise DimensionalityConflictError()
        return _magnitude(_diff(self.vec, other.vec)) + self.height + other.height

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds (Go ``DistanceTo(...).Seconds()``, so whole nanoseconds).

        Adjustments are added unless that makes the estimate <= 0.
        """
        dist = self.raw_distance_to(other)
        adjusted = dist + self.adjustment + other.adjustment
        if adjusted > 0.0:
            dist = adjusted
        return _go_seconds(dist)

    def to_wire(self) -> dict[str, Any]:
        """The Go field names and values, keys in Go's byte-wise order."""
        return {
            "Adjustment": float(self.adjustment),
            "Error": float(self.error),
            "Height": float(self.height),
            "Vec": [float(x) for x in self.vec],
        }

    @classmethod
    def from_wire(cls, d: Any) -> Coordinate:
        """Build from a decoded msgpack/JSON map with str or bytes keys.

        Like Go's msgpack decoder: unknown keys are skipped, missing ones (and nil values) are
        zero, ints are taken as floats, and an array is read positionally in Go's field order
        (Vec, Error, Adjustment, Height). Stricter than Go: a non-finite value is refused here
        rather than later by the client. Raises ``CoordinateError`` on anything else.
        """
        values: dict[str, Any] = {}
        if isinstance(d, dict):
            for key, value in d.items():
                if isinstance(key, str):
                    key = key.encode("utf-8", "surrogatepass")
                if isinstance(key, bytes) and key in _WIRE_KEYS:
                    values[_WIRE_KEYS[key]] = value
        elif isinstance(d, list | tuple):
            values.update(zip(_FIELD_ORDER, d, strict=False))  # extras are skipped, as in Go
        else:
            raise CoordinateError(f"coordinate: expected a map, got {type(d).__name__}")
        raw_vec = values.get("vec")
        if raw_vec is None:
            vec: list[float] = []
        elif isinstance(raw_vec, list | tuple):
            vec = [_wire_float(x, "Vec") for x in raw_vec]
        else:
            raise CoordinateError(f"Vec: expected an array, got {type(raw_vec).__name__}")
        return cls(
            vec=vec,
            error=_wire_float(values.get("error"), "Error"),
            adjustment=_wire_float(values.get("adjustment"), "Adjustment"),
            height=_wire_float(values.get("height"), "Height"),
        )


class CoordinateClient:
    """Go ``coordinate.Client``: our coordinate, refined by each (peer, RTT) observation.

    Not thread-safe (Go's mutex is the driver's business here). ``stats`` counts ``resets``
    (Go ``ClientStats.Resets``), ``zero_rtt`` (Go metric ``serf.coordinate.zero-rtt``) and
    ``rejected`` (Go metric ``serf.coordinate.rejected``, counted by Serf's ping delegate when
    ``Update`` fails).
    """

    __slots__ = (
        "_ack",
        "_ack_for",
        "_adjustment_index",
        "_adjustment_samples",
        "_cc",
        "_ce",
        "_config",
        "_coord",
        "_error_max",
        "_filter_size",
        "_height_min",
        "_latency_samples",
        "_rho",
        "_rng",
        "_window",
        "stats",
    )

    def __init__(self, config: CoordinateConfig, rng: Random) -> None:
        config.validate()
        self._config = config
        self._rng = rng
        self._coord = Coordinate.new(config)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * config.adjustment_window_size
        self._latency_samples: dict[str, bytes] = {}
        """node -> its last RTT samples, oldest first, packed as native doubles."""
        # Hot-path copies of the config.
        self._ce = config.vivaldi_ce
        self._cc = config.vivaldi_cc
        self._error_max = config.vivaldi_error_max
        self._height_min = config.height_min
        self._rho = config.gravity_rho
        self._window = config.adjustment_window_size
        self._filter_size = config.latency_filter_size
        self.stats: dict[str, int] = {"resets": 0, "zero_rtt": 0, "rejected": 0}
        self._ack = b""
        self._ack_for: Coordinate | None = None
        """The coordinate ``_ack`` encodes (``_coord`` is replaced, never changed in place)."""

    @property
    def config(self) -> CoordinateConfig:
        return self._config

    def coordinate(self) -> Coordinate:
        """A copy of our coordinate (Go ``GetCoordinate``)."""
        return self._coord.clone()

    def ack_payload(self) -> bytes:
        """``encode_ack_payload(self.coordinate())``, encoded once per coordinate: every
        ping we answer carries it, and it only changes when one of our own probes ends."""
        c = self._coord
        if self._ack_for is not c:
            self._ack = encode_ack_payload(c)
            self._ack_for = c
        return self._ack

    def set_coordinate(self, c: Coordinate) -> None:
        """Force our coordinate (Go ``SetCoordinate``); ``CoordinateError`` if unusable."""
        self._check(c)
        self._coord = c.clone()

    def forget_node(self, node: str) -> None:
        """Drop the latency samples kept for ``node`` (Go ``ForgetNode``)."""
        self._latency_samples.pop(node, None)

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT in seconds from us to ``other`` (Go ``DistanceTo``)."""
        return self._coord.distance_to(other)

    def _check(self, c: Coordinate) -> None:
        if len(c.vec) != len(self._coord.vec):
            raise CoordinateError("dimensions aren't compatible")
        if not c.is_valid():
            raise CoordinateError("coordinate is invalid")

    def _latency_filter(self, node: str, rtt_s: float) -> float:
        """Median of the last ``latency_filter_size`` RTTs of ``node``, this one included.

        A client keeps samples for every member it probes, i.e. every member: they are
        stored packed (8 bytes a sample in one bytes object, not a list of float objects),
        which is a third of the memory; packing a double is exact.
        """
        samples_of = self._latency_samples
        packed = samples_of.get(node)
        if packed is None:
            samples_of[node] = _doubles(1).pack(rtt_s)
            return rtt_s
        samples = list(_doubles(len(packed) >> 3).unpack(packed))
        samples.append(rtt_s)
        if len(samples) > self._filter_size:
            del samples[0]
        samples_of[node] = _doubles(len(samples)).pack(*samples)
        median: float = sorted(samples)[len(samples) // 2]
        return median

    def update(self, node: str, other: Coordinate, rtt_s: float) -> Coordinate:
        """Go ``Update``: fold in one RTT to ``node``, whose coordinate is ``other``.

        Returns a copy of the new coordinate. Raises ``CoordinateError`` (state unchanged) for an
        incompatible or invalid ``other``, or an RTT outside [0, 10] seconds (NaN included).
        """
        coord = self._coord
        vec = coord.vec
        ovec = other.vec
        if len(ovec) != len(vec):
            self.stats["rejected"] += 1
            raise CoordinateError("dimensions aren't compatible")
        if not (
            all(map(isfinite, ovec))
            and isfinite(other.error)
            and isfinite(other.adjustment)
            and isfinite(other.height)
        ):
            self.stats["rejected"] += 1
            raise CoordinateError("coordinate is invalid")
        if not 0.0 <= rtt_s <= MAX_RTT_S:
            self.stats["rejected"] += 1
            raise CoordinateError(
                f"round trip time not in valid range, duration {rtt_s!r} s is not "
                f"a positive value less than {MAX_RTT_S} s"
            )
        if rtt_s == 0.0:
            # Seen with coarse clocks (hashicorp/consul#3789); the clamp below copes with it.
            self.stats["zero_rtt"] += 1

        rtt = self._latency_filter(node, rtt_s)

        # Go's updateVivaldi, updateAdjustment and updateGravity, inlined in Go's arithmetic
        # order: the results are bit-identical to Serf's (see the golden test).
        height = coord.height
        other_height = other.height
        height_min = self._height_min

        # updateVivaldi: dist = c.DistanceTo(other), whole nanoseconds like Go.
        diffs = list(map(sub, vec, ovec))
        mag = sqrt(_sum_squares(diffs))
        dist = mag + height + other_height
        adjusted = dist + coord.adjustment + other.adjustment
        if adjusted > 0.0:
            dist = adjusted
        ns = dist * 1.0e9
        dist = int(ns) / 1.0e9 if 0.0 <= ns < 1.0e9 else _go_seconds(dist)
        rtt_v = rtt if rtt >= _ZERO_THRESHOLD else _ZERO_THRESHOLD
        wrongness = abs(dist - rtt_v) / rtt_v
        error = coord.error
        total_error = error + other.error
        if total_error < _ZERO_THRESHOLD:
            total_error = _ZERO_THRESHOLD
        weight = error / total_error
        ce = self._ce
        error = ce * weight * wrongness + error * (1.0 - ce * weight)
        if error > self._error_max:
            error = self._error_max
        force = self._cc * weight * (rtt_v - dist)
        # ApplyForce(force, other); its unit vector is diffs * (1/mag) (Go multiplies).
        if mag > _ZERO_THRESHOLD:
            inv = 1.0 / mag
            vec = [
                v + d * inv * force for v, d in zip(vec, diffs, strict=True)
            ]  # same length, checked
            height = (height + other_height) * force / mag + height
            if height < height_min:
                height = height_min
        else:
            unit = _random_unit(len(vec), self._rng)
            vec = [v + u * force for v, u in zip(vec, unit, strict=True)]

        # updateAdjustment: raw distance from the moved coordinate, unclamped RTT.
        window = self._window
        if window:
            total = _sum_squares(list(map(sub, vec, ovec)))
            window_samples = self._adjustment_samples
            index = self._adjustment_index
            window_samples[index] = rtt - (sqrt(total) + height + other_height)
            self._adjustment_index = (index + 1) % window
            adjustment = _sequential_sum(window_samples) / (2.0 * window)
        else:
            adjustment = coord.adjustment

        # updateGravity: origin.DistanceTo(c), then ApplyForce(-(dist/rho)**2, origin).
        mag = sqrt(_sum_squares(vec))
        dist = mag + height_min + height
        adjusted = dist + 0.0 + adjustment  # + origin.adjustment, kept for Go's rounding
        if adjusted > 0.0:
            dist = adjusted
        ns = dist * 1.0e9
        dist = int(ns) / 1.0e9 if 0.0 <= ns < 1.0e9 else _go_seconds(dist)
        scaled = dist / self._rho
        force = -(scaled * scaled)  # Go math.Pow(x, 2.0) == x*x for normal floats
        if mag > _ZERO_THRESHOLD:
            inv = 1.0 / mag
            vec = [v + v * inv * force for v in vec]
            height = (height + height_min) * force / mag + height
            if height < height_min:
                height = height_min
        else:
            unit = _random_unit(len(vec), self._rng)
            vec = [v + u * force for v, u in zip(vec, unit, strict=True)]

        if (
            all(map(isfinite, vec))
            and isfinite(error)
            and isfinite(adjustment)
            and isfinite(height)
        ):
            self._coord = Coordinate(vec, error, adjustment, height)
            return Coordinate(list(vec), error, adjustment, height)
        # Go resets the coordinate but not the adjustment window, so a NaN sample there makes
        # the next adjustment_window_size - 1 updates reset too (the golden test pins this).
        self.stats["resets"] += 1
        self._coord = Coordinate.new(self._config)
        return self._coord.clone()


_DOUBLES: dict[int, struct.Struct] = {}


def _doubles(n: int) -> struct.Struct:
    st = _DOUBLES.get(n)
    if st is None:
        st = _DOUBLES[n] = struct.Struct(f"={n}d")
    return st


class CoordinateCache(MutableMapping[str, Coordinate]):
    """Serf's coordinate cache (SERF coordCache): the latest coordinate of each member.

    A member caches one coordinate per member it has probed, i.e. per member, so this is
    N^2 coordinates in a simulated cluster. A Coordinate object (a list and eleven float
    objects) takes ~450 bytes; :meth:`put_compact` stores its components packed as native
    doubles instead (~120 bytes; packing a double is exact), and reading builds an equal
    Coordinate again. Values set with ``[]=`` are kept as given.
    """

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[str, Coordinate | bytes] = {}

    def put_compact(self, node: str, c: Coordinate) -> None:
        vec = c.vec
        self._d[node] = _doubles(len(vec) + 3).pack(*vec, c.error, c.adjustment, c.height)

    def __getitem__(self, node: str) -> Coordinate:
        v = self._d[node]
        if type(v) is bytes:
            f = _doubles(len(v) >> 3).unpack(v)
            return Coordinate(list(f[:-3]), f[-3], f[-2], f[-1])
        return v  # type: ignore[return-value]

    def __setitem__(self, node: str, c: Coordinate) -> None:
        self._d[node] = c

    def __delitem__(self, node: str) -> None:
        del self._d[node]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, node: object) -> bool:
        return node in self._d


def encode_ack_payload(c: Coordinate) -> bytes:
    """Serf's ack payload: ``PingVersion`` then the coordinate as Go's msgpack codec writes it.

    A fixmap of the four fields in byte-wise key order, old-spec raw strings, float64 (``cb``).
    """
    body: bytes = msgpack.packb(c.to_wire(), use_bin_type=False)
    return bytes((PING_VERSION,)) + body


def decode_ack_payload(b: bytes) -> Coordinate:
    """Parse a peer's ack payload; ``CoordinateError`` for anything malformed.

    Like Go's decoder, bytes after the first msgpack value are ignored. Serf skips empty
    payloads before decoding; here an empty payload is an error the caller may ignore.
    """
    if not isinstance(b, bytes | bytearray | memoryview):
        raise CoordinateError(f"ack payload: expected bytes, got {type(b).__name__}")
    data = b if type(b) is bytes else bytes(b)
    if not data:
        raise CoordinateError("ack payload is empty")
    if data[0] != PING_VERSION:
        raise CoordinateError(f"unsupported ping version: {data[0]}")
    try:
        obj = msgpack.unpackb(memoryview(data)[1:], raw=True)
    except msgpack.ExtraData as extra:
        obj = extra.unpacked
    except Exception as exc:  # msgpack raises several types for malformed input
        raise CoordinateError(f"failed to decode coordinate from ping: {exc}") from exc
    if type(obj) is dict and len(obj) == 4:
        # What every Serf sends: the four fields as finite floats. from_wire would take
        # them as they are (float(x) is x), so build the coordinate directly.
        vec = obj.get(b"Vec")
        error = obj.get(b"Error")
        adjustment = obj.get(b"Adjustment")
        height = obj.get(b"Height")
        if (
            type(vec) is list
            and type(error) is float
            and type(adjustment) is float
            and type(height) is float
            and isfinite(error)
            and isfinite(adjustment)
            and isfinite(height)
            and all(type(x) is float for x in vec)
            and all(map(isfinite, vec))
        ):
            return Coordinate(vec, error, adjustment, height)
    return Coordinate.from_wire(obj)
