"""Consul's ``?filter=`` expressions: HashiCorp go-bexpr v0.1.2, as Consul runs it.

Consul evaluates ``filter`` with github.com/hashicorp/go-bexpr, pinned at **v0.1.2** (its
``go.mod`` through at least Consul 1.16; the pointerstructure-based v0.1.3+ API, with
JSON-pointer selectors, ``is nil`` and ``any``/``all``, is not what Consul runs). Every
endpoint does ``bexpr.CreateFilter(args.Filter, nil, reply.X)`` then ``filter.Execute``:
a list keeps the items that match, a map (``/v1/agent/services``, ``/v1/agent/checks``)
the entries whose *value* matches. :func:`compile_filter` is ``CreateFilter``;
:meth:`Filter.apply` / :meth:`Filter.apply_map` are ``Execute``.

Grammar (go-bexpr v0.1.2 ``grammar.peg``, a PEG compiled by pigeon). The parser below is
a transliteration of it that keeps pigeon's error reporting (furthest failure, what was
expected there, errors from the grammar's predicates and actions, the rule that raised
them), so a bad filter gets the text Consul sends: ``foo`` gives ``1:4 (3): no match
found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]`` (hashicorp/consul#7338),
``Address == 10.10.10.10`` gives ``1:17 (16): rule "number": Invalid number literal``
(#9441). Checked against go-bexpr v0.1.2 built from source on tens of thousands of
generated filters: same acceptance, same message. In outline::

    Input      <- _? "(" _? Or _? ")" _? EOF / _? Or _? EOF
    Or         <- And _ "or" _ Or / And              (right-nested; "or" binds loosest)
    And        <- Not _ "and" _ And / Not
    Not        <- "not" _ Not / Paren                (not not x is x)
    Paren      <- "(" _? Or _? ")" / Match / "(" _? Or _? !")" &{"Unmatched parentheses"}
    Match      <- Selector (== | != | contains | not contains | matches | not matches) Value
                / Selector (is empty | is not empty)
                / Value (in | not in) Selector
    Selector   <- Identifier ("." Identifier / "[" _? String _? "]")*
    Identifier <- [a-zA-Z] [a-zA-Z0-9_]*
    Value      <- Selector / Number / String         (a Selector value means its dotted text)
    Number     <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)?   followed by _ / EOF / ")"
    String     <- `raw` / "Go-escaped"               (strconv.Unquote; "..." cannot hold ")
    _          <- [ \\t\\r\\n]+

``==`` and ``!=`` may go without spaces; every word operator needs whitespace both sides.
Keywords are case-sensitive. So ``Status == passing`` compares with the string
``passing``, ``Port == 8080`` with ``8080``, and ``Node == host-name`` is a syntax error
(quote it).

Semantics (v0.1.2 ``evaluate.go``, ``field_config.go``, ``coerce.go``). go-bexpr checks a
filter against the Go type of the elements before running it; we have JSON-like values
instead (dicts with Consul's CamelCase keys, lists, str, int, float, bool, None), so the
type of each value stands in for the Go field type:

* A selector walks dict keys. **A dict is treated as a Go map**: a missing key makes the
  whole match take v0.1.2's missing-key answer — false for ``==``, ``in``/``contains``,
  ``is not empty``; true for ``!=``, ``not in``, ``is empty``, ``matches`` and ``not
  matches`` (both: that is v0.1.2's behaviour, which Consul serves; later go-bexpr made
  ``matches`` false). A JSON ``null`` is treated exactly like a missing key.
* A list met before the selector ends is walked element by element, and the match is true
  if it is true for **any** element (v0.1.2: "operations on slices are implicitly ANY").
  So ``Checks.Status == critical`` means some check is critical, ``Checks.Status !=
  passing`` means some check is not passing, and on an empty list every operator is false;
  Consul itself writes ``not Checks.Status != passing`` for "all checks pass".
* At the end of the selector, the value decides what is allowed (else "Invalid match
  operator"): a str takes ``==``, ``!=``, ``in``/``contains`` (substring), ``not in``,
  ``matches`` (Go RE2 search, via :mod:`gossamer.goregexp`) — but not ``is empty``; a bool,
  int or float takes ``==`` and ``!=`` with the value parsed as Go does (``ParseBool``:
  ``true``/``T``/``1``...; ``ParseInt`` base 0: ``0x1F``, ``0o17``, ``017``, ``1_000``;
  ``ParseFloat``), a value that does not parse is an error; a dict (map) takes ``in`` (key
  present) and ``is empty``; a list takes ``is empty`` and, if its elements are scalars,
  ``in`` (some element equals the value parsed for that element's type).
* A scalar met before the selector ends is an error: ``Selector "Port.x" is not valid``.
* go-bexpr checks every term against the type before evaluating any; we check every term
  against the item before evaluating it, so ``or`` cannot hide an ill-typed term. Then
  ``and``/``or`` short-circuit left to right. Any error fails the whole filter (go-bexpr
  returns it, and Consul fails the request), so :meth:`Filter.apply` raises.

Errors: :class:`FilterError`, whose text is what Consul sends back::

    Failed to create boolean expression evaluator: <detail>

the wrapping done by v0.1.2 ``filter.go`` ``CreateFilter``, which Consul passes through
unchanged (hashicorp/consul#7338, #9441; an agent forwarding to a server adds ``rpc error
making call: `` in front). Consul answers these with HTTP 500, having no way to tell them
from other RPC errors (its maintainer in #7338); the status is the HTTP layer's choice.

Deliberate differences from go-bexpr, all because values stand in for Go types:

* Type errors (unknown field, wrong operator, value that does not parse) surface when an
  item shows them, not when the filter is compiled: a filter over an empty list never
  fails, and a missing key is never an error, so a misspelt field (``Sevice == web``)
  matches nothing where Consul says ``Selector "Sevice" is not valid``.
* A dict is a map, never a struct, so ``in`` and ``is empty`` work on any dict (Go refuses
  them on a struct), and a missing key takes the map answer above.
* ``null`` is a missing key. Go agrees for a nil map, and for a nil list at the end of the
  selector; through a nil list Go makes every operator false (``Checks.Status !=
  passing`` with ``"Checks": null``), and through a nil struct pointer it panics. Send
  ``[]``, not ``null``, for an empty list that filters look through.
* An int is parsed as Go's int64 (errors name ``ParseInt``), taking values up to 2**64-1
  for uint64 fields; a float field must hold a Python float.
* Regular expressions are checked when the filter is compiled; RE2's error text differs
  from Go's ``regexp``.

Bounds (go-bexpr v0.1.2 has none, and its parser is exponential in nesting depth):
a filter longer than :data:`FILTER_BYTES_MAX` UTF-8 bytes, or nesting parentheses and
``not`` deeper than :data:`NESTING_MAX`, is a :class:`FilterError`. Parsing memoises
(results are unchanged, pigeon's reporting included), ``and``/``or`` chains are flattened
and walked iteratively, and value walks use an explicit stack, so Python's stack use is
bounded by :data:`NESTING_MAX`. An empty filter matches everything (``CreateFilter("")``
is the no-op filter). Pure: no I/O, no state shared between filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

from gossamer import goregexp

__all__ = ["FILTER_BYTES_MAX", "NESTING_MAX", "Filter", "FilterError", "compile_filter"]

FILTER_BYTES_MAX = 4096
"""Longest filter accepted, in UTF-8 bytes (Consul's own limit is the URL's)."""

NESTING_MAX = 32
"""Deepest nesting of parentheses and ``not`` accepted."""

_PREFIX = "Failed to create boolean expression evaluator: "

_K = TypeVar("_K")
_V = TypeVar("_V")


class FilterError(ValueError):
    """A filter that does not parse, or that a value shows to be ill-typed.

    ``str(error)`` is Consul's response body: ``Failed to create boolean expression
    evaluator: <detail>``.
    """


# ---------------------------------------------------------------------------------------
# Go's strings, strconv and utf8, as far as the grammar and the coercions need them.

_RUNE_ERROR = 0xFFFD


def _to_bytes(text: str) -> bytes:
    """The Go string for ``text``; lone surrogates from ``surrogateescape`` become bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _from_bytes(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _decode_rune(data: bytes, i: int) -> tuple[int, int]:
    """Go's ``utf8.DecodeRune(data[i:])`` for ``i < len(data)``."""
    b0 = data[i]
    if b0 < 0x80:
        return b0, 1
    if 0xC2 <= b0 <= 0xDF:
        n = 2
    elif 0xE0 <= b0 <= 0xEF:
        n = 3
    elif 0xF0 <= b0 <= 0xF4:
        n = 4
    else:
        return _RUNE_ERROR, 1
    chunk = data[i : i + n]
    if len(chunk) < n:
        return _RUNE_ERROR, 1
    try:
        return ord(chunk.decode("utf-8")), n
    except UnicodeDecodeError:  # overlong, surrogate, above U+10FFFF: as Go rejects them
        return _RUNE_ERROR, 1


def _go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (what ``%q`` prints) of the Go string for ``text``."""
    data = _to_bytes(text)
    out = ['"']
    i = 0
    while i < len(data):
        r, w = _decode_rune(data, i)
        if w == 1 and r == _RUNE_ERROR:
            out.append(f"\\x{data[i]:02x}")
            i += 1
            continue
        i += w
        if r in (0x22, 0x5C):
            out.append("\\" + chr(r))
        elif chr(r).isprintable():
            out.append(chr(r))
        elif r in _GO_ESCAPES:
            out.append(_GO_ESCAPES[r])
        elif r < 0x20 or r == 0x7F:
            out.append(f"\\x{r:02x}")
        elif r < 0x10000:
            out.append(f"\\u{r:04x}")
        else:
            out.append(f"\\U{r:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}
_UNESCAPES = {ord(k): v for k, v in zip("abfnrtv\\", b"\a\b\f\n\r\t\v\\", strict=True)}
_HEX = {ord(c): int(c, 16) for c in "0123456789abcdefABCDEF"}


def _go_unquote(raw: bytes) -> bytes | None:
    """Go's ``strconv.Unquote`` of a string literal the grammar matched; None: ErrSyntax.

    The grammar guarantees the quotes and that no quote character occurs inside.
    """
    body = raw[1:-1]
    if raw[0] == 0x60:  # `raw`: carriage returns are dropped, nothing else changes
        return body.replace(b"\r", b"")
    out = bytearray()
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c == 0x0A:  # an unescaped newline
            return None
        if c >= 0x80:
            r, w = _decode_rune(body, i)
            out += chr(r).encode("utf-8")  # invalid bytes become U+FFFD, as in Go
            i += w
            continue
        if c != 0x5C:
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            return None
        e = body[i + 1]
        i += 2
        if e in _UNESCAPES:
            out.append(_UNESCAPES[e])
        elif e in (0x78, 0x75, 0x55):  # \xhh \uhhhh \Uhhhhhhhh
            width = {0x78: 2, 0x75: 4, 0x55: 8}[e]
            digits = body[i : i + width]
            if len(digits) < width or any(d not in _HEX for d in digits):
                return None
            i += width
            v = int(digits, 16)
            if e == 0x78:
                out.append(v)  # one byte, possibly not UTF-8
            elif v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
                return None
            else:
                out += chr(v).encode("utf-8")
        elif 0x30 <= e <= 0x37:  # \ooo
            digits = body[i - 1 : i + 2]
            if len(digits) < 3 or any(not 0x30 <= d <= 0x37 for d in digits):
                return None
            i += 2
            v = int(digits, 8)
            if v > 255:
                return None
            out.append(v)
        else:  # includes \' (only valid in rune literals) and \" (cannot occur here)
            return None
    return bytes(out)


class _NumError(Exception):
    """Go's ``*strconv.NumError``; ``str()`` is its ``Error()``."""

    def __init__(self, func: str, num: str, range_error: bool) -> None:
        why = "value out of range" if range_error else "invalid syntax"
        super().__init__(f"strconv.{func}: parsing {_go_quote(num)}: {why}")
        self.range_error = range_error


def _underscore_ok(s: str) -> bool:
    """Go's ``strconv.underscoreOK``: underscores only between digits."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i = 2
        saw = "0"
        hexa = s[1].lower() == "x"
    while i < len(s):
        c = s[i]
        if "0" <= c <= "9" or (hexa and "a" <= c.lower() <= "f"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
        i += 1
    return saw != "_"


def _parse_uint(s: str, func: str, num: str) -> int:
    """Go's ``strconv.ParseUint(s, 0, 64)``; errors name ``func`` and ``num``."""
    if s == "":
        raise _NumError(func, num, False)
    s0 = s
    base = 10
    if s[0] == "0":
        if len(s) >= 3 and s[1].lower() in "box":
            base = {"b": 2, "o": 8, "x": 16}[s[1].lower()]
            s = s[2:]
        else:
            base = 8
            s = s[1:]
    n = 0
    underscores = False
    for c in s:
        if c == "_":
            underscores = True
            continue
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "a" <= c.lower() <= "z":
            d = ord(c.lower()) - 87
        else:
            raise _NumError(func, num, False)
        if d >= base:
            raise _NumError(func, num, False)
        n = n * base + d
        if n > 0xFFFF_FFFF_FFFF_FFFF:
            raise _NumError(func, num, True)
    if underscores and not _underscore_ok(s0):
        raise _NumError(func, num, False)
    return n


def _parse_int(s: str) -> int:
    """Go's ``strconv.ParseInt(s, 0, 64)``, falling back to uint64 for large positives."""
    if s == "":
        raise _NumError("ParseInt", s, False)
    neg = s[0] == "-"
    body = s[1:] if s[0] in "+-" else s
    un = _parse_uint(body, "ParseInt", s)
    if neg:
        if un > 1 << 63:
            raise _NumError("ParseInt", s, True)
        return -un
    return un  # up to 2**64-1: a uint64 field would take it, an int64 field never equals it


_TRUE = frozenset(("1", "t", "T", "TRUE", "true", "True"))
_FALSE = frozenset(("0", "f", "F", "FALSE", "false", "False"))


def _parse_bool(s: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _NumError("ParseBool", s, False)


def _parse_float(s: str) -> float:
    """Go's ``strconv.ParseFloat(s, 64)``."""
    sign = s[0] if s[:1] in ("+", "-") else ""
    body = s[len(sign) :]
    if body.lower() in ("inf", "infinity"):
        return float(sign + "inf")
    if body.lower() == "nan" and not sign:
        return float("nan")
    hexa = len(body) > 2 and body[0] == "0" and body[1] in "xX"
    digits = "0123456789abcdefABCDEF" if hexa else "0123456789"
    i = 2 if hexa else 0
    saw_digits = saw_dot = False
    while i < len(body):
        c = body[i]
        if c in digits:
            saw_digits = True
        elif c == "." and not saw_dot:
            saw_dot = True
        elif c != "_":
            break
        i += 1
    if not saw_digits:
        raise _NumError("ParseFloat", s, False)
    if i < len(body) and body[i] in ("pP" if hexa else "eE"):
        i += 1
        if i < len(body) and body[i] in "+-":
            i += 1
        if i >= len(body) or body[i] not in "0123456789":
            raise _NumError("ParseFloat", s, False)
        while i < len(body) and body[i] in "0123456789_":
            i += 1
    elif hexa:  # a hexadecimal mantissa needs a p exponent
        raise _NumError("ParseFloat", s, False)
    if i != len(body) or ("_" in body and not _underscore_ok(body)):
        raise _NumError("ParseFloat", s, False)
    clean = s.replace("_", "")
    try:
        f = float.fromhex(clean) if hexa else float(clean)
    except (ValueError, OverflowError):
        raise _NumError("ParseFloat", s, True) from None
    if f in (float("inf"), float("-inf")):
        raise _NumError("ParseFloat", s, True)
    return f


# ---------------------------------------------------------------------------------------
# The syntax tree (go-bexpr ast.go), with and/or chains flattened.

_EQ, _NE, _IN, _NOT_IN, _EMPTY, _NOT_EMPTY, _MATCHES, _NOT_MATCHES = range(8)
_OP_NAMES = (
    "Equal",
    "Not Equal",
    "In",
    "Not In",
    "Is Empty",
    "Is Not Empty",
    "Matches",
    "Not Matches",
)
_ABSENT = (False, True, False, True, True, False, True, True)
"""v0.1.2 ``evaluateMatchExpressionRecurse``: the answer when a map has no such key."""


@dataclass(frozen=True, slots=True)
class _Match:
    selector: tuple[str, ...]
    op: int
    value: str  # MatchValue.Raw; "" for is (not) empty


@dataclass(frozen=True, slots=True)
class _And:
    terms: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Or:
    terms: tuple[_Node, ...]


@dataclass(frozen=True, slots=True)
class _Not:
    operand: _Node


_Node: TypeAlias = _Match | _And | _Or | _Not


# ---------------------------------------------------------------------------------------
# The parser: grammar.peg rule by rule, with pigeon's bookkeeping (furthest failure and
# what was expected there, errors from actions and predicates, the rule stack that
# prefixes them, "invalid encoding" on every read of a bad byte).


class _TooDeep(Exception):
    pass


_QUOTED: dict[str, str] = {}


def _q(lit: str) -> str:
    """How pigeon names a literal it expected (``%q``); our literals are ASCII."""
    quoted = _QUOTED.get(lit)
    if quoted is None:
        quoted = _QUOTED[lit] = '"' + lit.replace('"', '\\"') + '"'
    return quoted


_WS_VAL = "[ \\t\\r\\n]"
_WS = frozenset(map(ord, " \t\r\n"))
_ALPHA_VAL = "[a-zA-Z]"
_ALPHA = frozenset(map(ord, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"))
_IDENT_VAL = "[a-zA-Z0-9_]"
_IDENT = _ALPHA | frozenset(map(ord, "0123456789_"))
_D19_VAL = "[1-9]"
_D19 = frozenset(map(ord, "123456789"))
_D09_VAL = "[0-9]"
_D09 = frozenset(map(ord, "0123456789"))

_OPT_WS = 0  # _?
_REQ_WS = 1  # _
# (rule name, tokens, operator) for the operator rules, in the grammar's choice order
_Tokens = tuple[int | str, ...]
_OPS_WITH_VALUE: tuple[tuple[str, _Tokens, int], ...] = (
    ("MatchEqual", (_OPT_WS, "==", _OPT_WS), _EQ),
    ("MatchNotEqual", (_OPT_WS, "!=", _OPT_WS), _NE),
    ("MatchContains", (_REQ_WS, "contains", _REQ_WS), _IN),
    ("MatchNotContains", (_REQ_WS, "not", _REQ_WS, "contains", _REQ_WS), _NOT_IN),
    ("MatchMatches", (_REQ_WS, "matches", _REQ_WS), _MATCHES),
    ("MatchNotMatches", (_REQ_WS, "not", _REQ_WS, "matches", _REQ_WS), _NOT_MATCHES),
)
_OPS_NO_VALUE: tuple[tuple[str, _Tokens, int], ...] = (
    ("MatchIsEmpty", (_REQ_WS, "is", _REQ_WS, "empty"), _EMPTY),
    ("MatchIsNotEmpty", (_REQ_WS, "is", _REQ_WS, "not", _REQ_WS, "empty"), _NOT_EMPTY),
)
_OPS_IN: tuple[tuple[str, _Tokens, int], ...] = (
    ("MatchIn", (_REQ_WS, "in", _REQ_WS), _IN),
    ("MatchNotIn", (_REQ_WS, "not", _REQ_WS, "in", _REQ_WS), _NOT_IN),
)


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = n = len(data)
        self.rune = [_RUNE_ERROR] * (n + 1)  # at EOF: RuneError, width 0
        self.width = [0] * (n + 1)
        self.invalid: set[int] = set()
        off = 0
        while off < n:
            r, w = _decode_rune(data, off)
            self.rune[off], self.width[off] = r, w
            if r == _RUNE_ERROR and w == 1:
                self.invalid.add(off)
            off += w
        self.pos = 0
        self.max_fail = 0
        self.expected: set[str] = set()
        self.invert = False
        self.errors: list[str] = []
        self.rules: list[str] = []
        self.depth = 0
        self.or_memo: dict[tuple[int, bool], tuple[_Node | None, int]] = {}
        if 0 in self.invalid:
            self.add_err("invalid encoding", 0)

    # -- pigeon's machinery

    def linecol(self, pos: int) -> tuple[int, int]:
        line, col, off = 1, 0, 0
        while True:
            col += 1
            if self.rune[off] == 0x0A and off < self.n:
                line += 1
                col = 0
            if off >= pos or self.width[off] == 0:
                return line, col
            off += self.width[off]

    def where(self, pos: int) -> str:
        line, col = self.linecol(pos)
        return f"{line}:{col} ({pos})"

    def add_err(self, msg: str, pos: int) -> None:
        rule = f": rule {self.rules[-1]}" if self.rules else ""
        self.errors.append(f"{self.where(pos)}{rule}: {msg}")

    def fail_at(self, fail: bool, pos: int, want: str) -> None:
        if fail == self.invert:
            if pos < self.max_fail:
                return
            if pos > self.max_fail:
                self.max_fail = pos
                self.expected.clear()
            self.expected.add("!" + want if self.invert else want)

    def read(self) -> None:
        self.pos += self.width[self.pos]
        if self.invalid and self.pos in self.invalid:
            self.add_err("invalid encoding", self.pos)

    def lit(self, text: str) -> bool:
        start = self.pos
        for ch in text:
            if self.rune[self.pos] != ord(ch):
                self.fail_at(False, start, _q(text))
                self.pos = start
                return False
            self.read()
        self.fail_at(True, start, _q(text))
        return True

    def cls(self, val: str, chars: frozenset[int]) -> bool:
        start = self.pos
        if start < self.n and self.rune[start] in chars:
            self.read()
            self.fail_at(True, start, val)
            return True
        self.fail_at(False, start, val)
        return False

    def any_char(self) -> bool:
        start = self.pos
        if start >= self.n:
            self.fail_at(False, start, ".")
            return False
        self.read()
        self.fail_at(True, start, ".")
        return True

    def not_lit(self, text: str) -> bool:
        start = self.pos
        self.invert = not self.invert
        ok = self.lit(text)
        self.invert = not self.invert
        self.pos = start
        return not ok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > NESTING_MAX:
            raise _TooDeep

    def tokens(self, rule: str, parts: _Tokens) -> bool:
        self.rules.append(rule)
        start = self.pos
        for part in parts:
            if part == _OPT_WS:
                self.ws()
            elif part == _REQ_WS:
                if not self.ws():
                    break
            elif not self.lit(str(part)):
                break
        else:
            self.rules.pop()
            return True
        self.pos = start
        self.rules.pop()
        return False

    # -- the rules

    def input(self) -> _Node | None:
        """Input <- _? "(" _? OrExpression _? ")" _? EOF / _? OrExpression _? EOF"""
        self.rules.append("Input")
        self.ws()
        if self.lit("("):
            self.enter()
            self.ws()
            expr = self.or_expr()
            self.depth -= 1
            if expr is not None:
                self.ws()
                if self.lit(")"):
                    self.ws()
                    if self.eof():
                        self.rules.pop()
                        return expr
        self.pos = 0
        self.ws()
        expr = self.or_expr()
        if expr is not None:
            self.ws()
            if self.eof():
                self.rules.pop()
                return expr
        self.pos = 0
        self.rules.pop()
        return None

    def or_expr(self) -> _Node | None:
        """OrExpression <- AndExpression _ "or" _ OrExpression / AndExpression

        Walked as a loop: the second alternative only re-parses the first term (same
        result, same failures recorded), so the chain is the longest run of
        ``_ "or" _ AndExpression`` that parses. Memoised per position.
        """
        key = (self.pos, self.invert)
        if key in self.or_memo:
            node, end = self.or_memo[key]
            self.pos = end
            return node
        self.rules.append("OrExpression")
        node = self.and_expr()
        if node is not None:
            terms: list[_Node] = []
            while node is not None:
                terms.extend(node.terms if isinstance(node, _Or) else (node,))
                end = self.pos
                more = self.ws() and self.lit("or") and self.ws()
                node = self.and_expr() if more else None
                if node is None:
                    self.pos = end
            node = terms[0] if len(terms) == 1 else _Or(tuple(terms))
        self.rules.pop()
        self.or_memo[key] = (node, self.pos)
        return node

    def and_expr(self) -> _Node | None:
        """AndExpression <- NotExpression _ "and" _ AndExpression / NotExpression"""
        self.rules.append("AndExpression")
        node = self.not_expr()
        if node is not None:
            terms: list[_Node] = []
            while node is not None:
                terms.extend(node.terms if isinstance(node, _And) else (node,))
                end = self.pos
                more = self.ws() and self.lit("and") and self.ws()
                node = self.not_expr() if more else None
                if node is None:
                    self.pos = end
            node = terms[0] if len(terms) == 1 else _And(tuple(terms))
        self.rules.pop()
        return node

    def not_expr(self) -> _Node | None:
        """NotExpression <- "not" _ NotExpression / ParenthesizedExpression"""
        self.rules.append("NotExpression")
        start = self.pos
        if self.lit("not") and self.ws():
            self.enter()
            operand = self.not_expr()
            self.depth -= 1
            if operand is not None:
                self.rules.pop()
                return operand.operand if isinstance(operand, _Not) else _Not(operand)
        self.pos = start
        node = self.paren_expr()
        self.rules.pop()
        return node

    def paren_expr(self) -> _Node | None:
        """ParenthesizedExpression "grouping" <- "(" _? OrExpression _? ")"
        / MatchExpression / "(" _? OrExpression _? !")" &{Unmatched parentheses}"""
        self.rules.append('"grouping"')
        start = self.pos
        if self.lit("("):
            self.enter()
            self.ws()
            expr = self.or_expr()
            self.depth -= 1
            if expr is not None:
                self.ws()
                if self.lit(")"):
                    self.rules.pop()
                    return expr
        self.pos = start
        match = self.match_expr()
        if match is not None:
            self.rules.pop()
            return match
        self.pos = start
        if self.lit("("):
            self.enter()
            self.ws()
            expr = self.or_expr()
            self.depth -= 1
            if expr is not None:
                self.ws()
                if self.not_lit(")"):
                    self.add_err("Unmatched parentheses", self.pos)
        self.pos = start
        self.rules.pop()
        return None

    def match_expr(self) -> _Match | None:
        """MatchExpression "match" <- MatchSelectorOpValue / MatchSelectorOp
        / MatchValueOpSelector"""
        self.rules.append('"match"')
        node = self.match_selector_op_value()
        if node is None:
            node = self.match_selector_op()
        if node is None:
            node = self.match_value_op_selector()
        self.rules.pop()
        return node

    def operator(self, choices: tuple[tuple[str, _Tokens, int], ...]) -> int | None:
        for rule, parts, op in choices:
            if self.tokens(rule, parts):
                return op
        return None

    def match_selector_op_value(self) -> _Match | None:
        self.rules.append('"match"')
        start = self.pos
        node = None
        selector = self.selector()
        if selector is not None:
            op = self.operator(_OPS_WITH_VALUE)
            if op is not None:
                value = self.value()
                if value is not None:
                    node = _Match(selector, op, value)
        if node is None:
            self.pos = start
        self.rules.pop()
        return node

    def match_selector_op(self) -> _Match | None:
        self.rules.append('"match"')
        start = self.pos
        node = None
        selector = self.selector()
        if selector is not None:
            op = self.operator(_OPS_NO_VALUE)
            if op is not None:
                node = _Match(selector, op, "")
        if node is None:
            self.pos = start
        self.rules.pop()
        return node

    def match_value_op_selector(self) -> _Match | None:
        """Value (MatchIn / MatchNotIn) Selector
        / Value (MatchIn / MatchNotIn) !Selector &{Invalid selector}"""
        self.rules.append('"match"')
        start = self.pos
        value = self.value()
        if value is not None:
            op = self.operator(_OPS_IN)
            if op is not None:
                selector = self.selector()
                if selector is not None:
                    self.rules.pop()
                    return _Match(selector, op, value)
        self.pos = start
        if self.value() is not None and self.operator(_OPS_IN) is not None:
            here = self.pos
            self.invert = not self.invert
            found = self.selector() is not None
            self.invert = not self.invert
            self.pos = here
            if not found:
                self.add_err("Invalid selector", self.pos)
        self.pos = start
        self.rules.pop()
        return None

    def selector(self) -> tuple[str, ...] | None:
        """Selector "selector" <- Identifier SelectorOrIndex*"""
        self.rules.append('"selector"')
        first = self.identifier()
        if first is None:
            self.rules.pop()
            return None
        parts = [first]
        while (part := self.selector_or_index()) is not None:
            parts.append(part)
        self.rules.pop()
        return tuple(parts)

    def identifier(self) -> str | None:
        """Identifier <- [a-zA-Z] [a-zA-Z0-9_]*"""
        self.rules.append("Identifier")
        start = self.pos
        if not self.cls(_ALPHA_VAL, _ALPHA):
            self.rules.pop()
            return None
        while self.cls(_IDENT_VAL, _IDENT):
            pass
        self.rules.pop()
        return self.data[start : self.pos].decode("ascii")

    def selector_or_index(self) -> str | None:
        """SelectorOrIndex <- "." Identifier / IndexExpression"""
        self.rules.append("SelectorOrIndex")
        start = self.pos
        if self.lit("."):
            ident = self.identifier()
            if ident is not None:
                self.rules.pop()
                return ident
            self.pos = start
        part = self.index_expr()
        self.rules.pop()
        return part

    def index_expr(self) -> str | None:
        """IndexExpression "index" <- "[" _? StringLiteral _? "]"
        / "[" _? !StringLiteral &{Invalid index}
        / "[" _? StringLiteral _? !"]" &{Unclosed index expression}"""
        self.rules.append('"index"')
        start = self.pos
        if self.lit("["):
            self.ws()
            lit = self.string_literal()
            if lit is not None:
                self.ws()
                if self.lit("]"):
                    self.rules.pop()
                    return lit
        self.pos = start
        if self.lit("["):
            self.ws()
            here = self.pos
            self.invert = not self.invert
            found = self.string_literal() is not None
            self.invert = not self.invert
            self.pos = here
            if not found:
                self.add_err("Invalid index", self.pos)
        self.pos = start
        if self.lit("["):
            self.ws()
            if self.string_literal() is not None:
                self.ws()
                if self.not_lit("]"):
                    self.add_err("Unclosed index expression", self.pos)
        self.pos = start
        self.rules.pop()
        return None

    def value(self) -> str | None:
        """Value "value" <- Selector / NumberLiteral / StringLiteral (as MatchValue.Raw)"""
        self.rules.append('"value"')
        selector = self.selector()
        raw = ".".join(selector) if selector is not None else self.number_literal()
        if raw is None:
            raw = self.string_literal()
        self.rules.pop()
        return raw

    def number_literal(self) -> str | None:
        """NumberLiteral "number" <- "-"? IntegerOrFloat &AfterNumbers
        / "-"? IntegerOrFloat !AfterNumbers &{Invalid number literal}"""
        self.rules.append('"number"')
        start = self.pos
        self.lit("-")
        if self.integer_or_float() and self.after_numbers():
            self.rules.pop()
            return self.data[start : self.pos].decode("ascii")
        self.pos = start
        self.lit("-")
        if self.integer_or_float():
            self.invert = not self.invert
            after = self.after_numbers()
            self.invert = not self.invert
            if not after:
                self.add_err("Invalid number literal", self.pos)
        self.pos = start
        self.rules.pop()
        return None

    def after_numbers(self) -> bool:
        """AfterNumbers <- &(_ / EOF / ")"), itself used as &AfterNumbers/!AfterNumbers"""
        self.rules.append("AfterNumbers")
        start = self.pos
        ok = self.ws() or self.eof() or self.lit(")")
        self.pos = start
        self.rules.pop()
        return ok

    def integer_or_float(self) -> bool:
        """IntegerOrFloat <- ("0" / [1-9][0-9]*) ("." [0-9]+)?"""
        self.rules.append("IntegerOrFloat")
        start = self.pos
        if not self.lit("0"):
            if not self.cls(_D19_VAL, _D19):
                self.pos = start
                self.rules.pop()
                return False
            while self.cls(_D09_VAL, _D09):
                pass
        frac = self.pos
        if self.lit("."):
            if self.cls(_D09_VAL, _D09):
                while self.cls(_D09_VAL, _D09):
                    pass
            else:
                self.pos = frac
        self.rules.pop()
        return True

    def string_literal(self) -> str | None:
        """StringLiteral "string" <- ('`' RawStringChar* '`' / '"' DoubleStringChar* '"')
        {strconv.Unquote} / ('`' RawStringChar* / '"' DoubleStringChar*) EOF
        &{Unterminated string literal}"""
        self.rules.append('"string"')
        start = self.pos
        closed = False
        for quote, rule in (("`", "RawStringChar"), ('"', "DoubleStringChar")):
            if self.lit(quote):
                while self.string_char(quote, rule):
                    pass
                if self.lit(quote):
                    closed = True
                    break
            self.pos = start
        if closed:
            unquoted = _go_unquote(self.data[start : self.pos])
            if unquoted is None:
                self.add_err("invalid syntax", start)
                unquoted = b""
            self.rules.pop()
            return _from_bytes(unquoted)
        for quote, rule in (("`", "RawStringChar"), ('"', "DoubleStringChar")):
            if self.lit(quote):
                while self.string_char(quote, rule):
                    pass
                if self.eof():
                    self.add_err("Unterminated string literal", self.pos)
                break
        self.pos = start
        self.rules.pop()
        return None

    def string_char(self, quote: str, rule: str) -> bool:
        """RawStringChar <- !'`' . ; DoubleStringChar <- !'"' ."""
        self.rules.append(rule)
        ok = self.not_lit(quote) and self.any_char()
        self.rules.pop()
        return ok

    def ws(self) -> bool:
        """_ "whitespace" <- [ \\t\\r\\n]+"""
        self.rules.append('"whitespace"')
        ok = False
        while self.cls(_WS_VAL, _WS):
            ok = True
        self.rules.pop()
        return ok

    def eof(self) -> bool:
        """EOF <- !."""
        self.rules.append("EOF")
        start = self.pos
        self.invert = not self.invert
        ok = self.any_char()
        self.invert = not self.invert
        self.pos = start
        self.rules.pop()
        return not ok

    # -- Parse(): the value, or pigeon's error list

    def parse(self) -> _Node:
        node = self.input()
        errors = list(dict.fromkeys(self.errors))  # errList.dedupe keeps the first of each
        if node is None and not errors:
            expected = set(self.expected)
            eof = "!." in expected
            expected.discard("!.")
            items = sorted(expected) + (["EOF"] if eof else [])
            listed = (
                ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)
            )
            errors.append(f"{self.where(self.max_fail)}: no match found, expected: {listed}")
        if errors:
            raise FilterError(_PREFIX + "\n".join(errors))
        assert node is not None
        return node


# ---------------------------------------------------------------------------------------
# Evaluation (v0.1.2 evaluate.go and validate.go, with values standing in for Go types).


class _Missing:
    """What a selector reaches through a missing key or a null."""


_MISSING = _Missing()


def _selector_text(selector: tuple[str, ...]) -> str:
    return _go_quote(".".join(selector))


def _bad_operator(m: _Match) -> FilterError:
    op = _go_quote(_OP_NAMES[m.op])
    where = _selector_text(m.selector)
    return FilterError(f"{_PREFIX}Invalid match operator {op} for selector {where}")


def _coerce(m: _Match, sample: object) -> object:
    """The match value parsed for the type of ``sample`` (a str, bool, int or float)."""
    try:
        if isinstance(sample, bool):
            return _parse_bool(m.value)
        if isinstance(sample, int):
            return _parse_int(m.value)
        if isinstance(sample, float):
            return _parse_float(m.value)
    except _NumError as e:
        raise FilterError(
            f"{_PREFIX}Failed to coerce value {_go_quote(m.value)} for selector "
            f"{_selector_text(m.selector)}: {e}"
        ) from None
    return m.value


def _scalar(value: object) -> bool:
    return isinstance(value, str | bool | int | float)


def _reached(m: _Match, obj: object) -> Iterator[object]:
    """Every value the selector reaches in ``obj``, in go-bexpr's order: dicts by key, a
    list met before the selector ends by each element; ``_MISSING`` for a missing key or
    a null on the way. A scalar met before the selector ends is an invalid selector."""
    selector = m.selector
    stack: list[tuple[int, object]] = [(0, obj)]
    while stack:
        depth, value = stack.pop()
        while depth < len(selector):
            if value is None:
                value = _MISSING
                break
            if isinstance(value, dict):
                if selector[depth] not in value:
                    value = _MISSING
                    break
                value = value[selector[depth]]
                depth += 1
            elif isinstance(value, list | tuple):
                stack.extend((depth, item) for item in reversed(value))
                break
            else:
                invalid = _selector_text(selector[: depth + 1])
                raise FilterError(f"{_PREFIX}Selector {invalid} is not valid")
        else:
            yield _MISSING if value is None else value
            continue
        if value is _MISSING:
            yield value


def _validate(m: _Match, obj: object) -> None:
    """What v0.1.2 ``validate`` checks against the Go type, checked against what ``obj``
    holds: the selector leads somewhere, the operator suits each value it reaches, and
    the match value parses as that value's type."""
    for value in _reached(m, obj):
        if value is _MISSING:
            continue
        op = m.op
        if op in (_EQ, _NE):
            if not _scalar(value):
                raise _bad_operator(m)
            _coerce(m, value)
        elif op in (_IN, _NOT_IN):
            if isinstance(value, list | tuple):
                for element in value:
                    if element is not None and not _scalar(element):
                        raise _bad_operator(m)
                for element in value:
                    if element is not None:
                        _coerce(m, element)
            elif not isinstance(value, str | dict):
                raise _bad_operator(m)
        elif op in (_EMPTY, _NOT_EMPTY):
            if not isinstance(value, list | tuple | dict):
                raise _bad_operator(m)
        elif not isinstance(value, str):
            raise _bad_operator(m)


def _search(pattern: str, text: str) -> bool:
    try:
        return goregexp.search(pattern, text)
    except UnicodeError:  # text holds raw bytes: Go's regexp reads bad UTF-8 as U+FFFD
        return goregexp.search(pattern, _to_bytes(text).decode("utf-8", "replace"))


def _leaf(m: _Match, value: object) -> bool:
    """The operator applied to one value the selector reached (already validated)."""
    op = m.op
    if value is _MISSING:
        return _ABSENT[op]
    if op in (_EQ, _NE):
        found = value == _coerce(m, value)
    elif op in (_IN, _NOT_IN):
        if isinstance(value, list | tuple):
            found = any(e is not None and e == _coerce(m, e) for e in value)
        elif isinstance(value, str | dict):
            found = m.value in value
        else:
            raise _bad_operator(m)
    elif op in (_EMPTY, _NOT_EMPTY):
        if not isinstance(value, list | tuple | dict):
            raise _bad_operator(m)
        found = len(value) == 0
    elif isinstance(value, str):
        found = _search(m.value, value)
    else:
        raise _bad_operator(m)
    return found == (op in (_EQ, _IN, _EMPTY, _MATCHES))


def _evaluate(node: _Node, obj: object) -> bool:
    if isinstance(node, _Match):
        return any(_leaf(node, value) for value in _reached(node, obj))
    if isinstance(node, _And):
        return all(_evaluate(term, obj) for term in node.terms)
    if isinstance(node, _Or):
        return any(_evaluate(term, obj) for term in node.terms)
    return not _evaluate(node.operand, obj)


def _match_nodes(node: _Node) -> list[_Match]:
    """The match expressions in source order, as v0.1.2 ``validateRecurse`` visits them."""
    if isinstance(node, _Match):
        return [node]
    if isinstance(node, _Not):
        return _match_nodes(node.operand)
    return [m for term in node.terms for m in _match_nodes(term)]


def _check_regexp(m: _Match) -> None:
    """What v0.1.2 ``validate`` does for ``matches`` on a string field: compile it."""
    try:
        goregexp.compile_check(m.value)
    except goregexp.RegexpError as e:
        raise FilterError(
            f"{_PREFIX}Failed to compile regular expression {_go_quote(m.value)}: {e}"
        ) from None


class Filter:
    """A compiled filter. Immutable; safe to share between tasks and threads."""

    __slots__ = ("_matches", "_root", "expression")

    def __init__(self, root: _Node | None, expression: str) -> None:
        self._root = root
        self._matches = () if root is None else tuple(_match_nodes(root))
        self.expression = expression

    def __repr__(self) -> str:
        return f"Filter({self.expression!r})"

    def matches(self, obj: object) -> bool:
        """Does the JSON-like ``obj`` match? FilterError where go-bexpr would fail.

        Every match expression is first checked against ``obj`` (go-bexpr checks them all
        against the Go type before evaluating), so an ill-typed term fails the filter
        even where ``and``/``or`` would not have reached it.
        """
        if self._root is None:
            return True
        for m in self._matches:
            _validate(m, obj)
        return _evaluate(self._root, obj)

    def apply(self, items: list[_V]) -> list[_V]:
        """The items that match, in order (``Filter.Execute`` on a slice)."""
        return [item for item in items if self.matches(item)]

    def apply_map(self, items: dict[_K, _V]) -> dict[_K, _V]:
        """The entries whose value matches (``Filter.Execute`` on a map)."""
        return {key: value for key, value in items.items() if self.matches(value)}


def compile_filter(text: str) -> Filter:
    """Parse a ``?filter=`` expression; FilterError (Consul's text) if it is not one."""
    if text == "":
        return Filter(None, text)
    data = _to_bytes(text)
    if len(data) > FILTER_BYTES_MAX:
        raise FilterError(
            f"{_PREFIX}filter is {len(data)} bytes, over the limit of {FILTER_BYTES_MAX}"
        )
    try:
        root = _Parser(data).parse()
    except _TooDeep:
        raise FilterError(
            f"{_PREFIX}filter nests parentheses and not more than {NESTING_MAX} deep"
        ) from None
    flt = Filter(root, text)
    for m in flt._matches:
        if m.op in (_MATCHES, _NOT_MATCHES):
            _check_regexp(m)
    return flt
