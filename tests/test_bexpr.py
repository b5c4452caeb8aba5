"""catalog.bexpr: Consul's ``?filter=`` language (go-bexpr v0.1.2, which Consul pins).

Every expected value in ``CASES``, ``SYNTAX_ERRORS`` and ``TYPE_ERRORS`` was checked against
go-bexpr v0.1.2 itself, built from its source, running ``CreateFilter`` + ``Execute`` on
the same JSON decoded into Go structs shaped like Consul's (AgentService, HealthCheck,
CheckServiceNode) and, for syntax errors, ``CreateEvaluator``. Two of the messages are the
ones quoted in hashicorp/consul#7338 and #9441. ``OURS`` holds the rows where a JSON value
has to stand in for a Go type and the module documents a different answer.
"""

from __future__ import annotations

import contextlib
import string
import sys
from types import FrameType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalog.bexpr import (
    FILTER_BYTES_MAX,
    NESTING_MAX,
    Filter,
    FilterError,
    compile_filter,
)

PREFIX = "Failed to create boolean expression evaluator: "

# /v1/agent/services values (api.AgentService)
SERVICE: dict[str, Any] = {
    "Kind": "",
    "ID": "web-1",
    "Service": "web",
    "Tags": ["v1", "primary"],
    "Meta": {"env": "prod", "some-key": "x"},
    "Port": 8080,
    "Address": "10.0.0.5",
    "TaggedAddresses": {},
    "Weights": {"Passing": 1, "Warning": 1},
    "EnableTagOverride": False,
}
NEGATIVE_PORT = {**SERVICE, "Port": -1, "Tags": []}

# /v1/health/checks, /v1/health/state values (structs.HealthCheck)
CHECK: dict[str, Any] = {
    "Node": "n1",
    "CheckID": "serfHealth",
    "Name": "Serf Health Status",
    "Status": "passing",
    "ServiceTags": [],
    "ServiceName": "",
}

# /v1/health/service/:name entries (structs.CheckServiceNode)
ENTRY: dict[str, Any] = {
    "Node": {
        "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "Node": "n1",
        "Address": "10.0.0.1",
        "Datacenter": "dc1",
        "TaggedAddresses": {"lan": "10.0.0.1", "wan": "198.18.0.1"},
        "Meta": {"env": "prod", "some-key": "v"},
        "CreateIndex": 5,
    },
    "Service": {
        "ID": "web-1",
        "Service": "web",
        "Tags": ["v1", "primary"],
        "Address": "",
        "Meta": {"version": "1.2"},
        "Port": 8080,
        "EnableTagOverride": False,
        "Weights": {"Passing": 1, "Warning": 1},
    },
    "Checks": [
        {
            "Node": "n1",
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": "passing",
            "ServiceTags": [],
            "ServiceName": "",
        },
        {
            "Node": "n1",
            "CheckID": "service:web-1",
            "Name": "web check",
            "Status": "critical",
            "ServiceTags": ["v1", "primary"],
            "ServiceName": "web",
        },
    ],
}
HEALTHY = {**ENTRY, "Checks": [ENTRY["Checks"][0]]}
NO_CHECKS = {**ENTRY, "Checks": []}

CASES: list[tuple[str, Any, bool]] = [
    # == and != : strings exactly, whichever way the value is written
    ('Service == "web"', SERVICE, True),
    ("Service == web", SERVICE, True),
    ("Service == `web`", SERVICE, True),
    ("Service==db", SERVICE, False),
    ('Service != "db"', SERVICE, True),
    ("Service != web", SERVICE, False),
    ('Service == "Web"', SERVICE, False),
    ('Address == "10.0.0.5"', SERVICE, True),
    # ints: the value is parsed as Go's ParseInt(value, 0, 64) would
    ("Port == 8080", SERVICE, True),
    ('Port == "8080"', SERVICE, True),
    ('Port == "0x1F90"', SERVICE, True),
    ('Port == "8_080"', SERVICE, True),
    ("Port == 80", SERVICE, False),
    ("Port != 80", SERVICE, True),
    ("not (Port == 80)", SERVICE, True),
    ("Port == -1", NEGATIVE_PORT, True),
    ("Weights.Passing == 1", SERVICE, True),
    # bools: ParseBool
    ("EnableTagOverride == false", SERVICE, True),
    ("EnableTagOverride == F", SERVICE, True),
    ("EnableTagOverride == 0", SERVICE, True),
    ("EnableTagOverride != true", SERVICE, True),
    ("EnableTagOverride == True", SERVICE, False),
    # maps: dotted or bracketed keys; a missing key is false for ==, true for !=
    ('Meta.env == "prod"', SERVICE, True),
    ("Meta.env == qa", SERVICE, False),
    ('Meta["env"] == prod', SERVICE, True),
    ('Meta[ "some-key" ] == x', SERVICE, True),
    ('Meta.missing == ""', SERVICE, False),
    ('Meta.missing != "prod"', SERVICE, True),
    ('"x" in Meta.missing', SERVICE, False),
    ('"x" not in Meta.missing', SERVICE, True),
    # ... and true for matches and not matches alike: v0.1.2 as Consul runs it
    ('Meta.missing matches "anything"', SERVICE, True),
    ('Meta.missing not matches "anything"', SERVICE, True),
    # in / contains on a list: some element equals
    ('"v1" in Tags', SERVICE, True),
    ("v1 in Tags", SERVICE, True),
    ('"x" in Tags', SERVICE, False),
    ('"v3" not in Tags', SERVICE, True),
    ('Tags contains "primary"', SERVICE, True),
    ('Tags not contains "v1"', SERVICE, False),
    ('"v1" in Tags', NEGATIVE_PORT, False),
    # on a map: the key is present (values do not count)
    ('"env" in Meta', SERVICE, True),
    ('Meta contains "some-key"', SERVICE, True),
    ('"prod" in Meta', SERVICE, False),
    ('"lan" not in TaggedAddresses', SERVICE, True),
    # on a string: substring
    ('"eb" in Service', SERVICE, True),
    ('Service contains "w"', SERVICE, True),
    ('Service not contains "db"', SERVICE, True),
    ('"" in Service', SERVICE, True),
    ('"0.0" in Address', SERVICE, True),
    # is empty on lists and maps
    ("Tags is empty", SERVICE, False),
    ("Tags is not empty", SERVICE, True),
    ("Tags is empty", NEGATIVE_PORT, True),
    ("Meta is not empty", SERVICE, True),
    ("TaggedAddresses is empty", SERVICE, True),
    ("ServiceTags is empty", CHECK, True),
    # matches: Go RE2, unanchored
    ('Service matches "^w.b$"', SERVICE, True),
    ('Service matches "^db"', SERVICE, False),
    ('Service not matches "^db"', SERVICE, True),
    ("Address matches `^10\\.0\\.`", SERVICE, True),
    ('Meta.env matches "ro"', SERVICE, True),
    ('ID matches "[0-9]+$"', SERVICE, True),
    # and, or, not, grouping; "and" binds tighter than "or"
    ("Service == web and Port == 8080", SERVICE, True),
    ("Service == web and Port == 80", SERVICE, False),
    ("Service == db or Port == 8080", SERVICE, True),
    ("Service == db or Port == 80", SERVICE, False),
    ("not Service == db", SERVICE, True),
    ("not not Service == web", SERVICE, True),
    ("not not not Service == web", SERVICE, False),
    ("Service == db and Port == 1 or Port == 8080", SERVICE, True),
    ("Service == db and (Port == 1 or Port == 8080)", SERVICE, False),
    ("Port == 8080 or Service == db and Port == 1", SERVICE, True),
    ("(Port == 8080 or Service == db) and Port == 1", SERVICE, False),
    ("(Service == web)", SERVICE, True),
    (" ( Service == web ) ", SERVICE, True),
    ("((Service == web) and ((Port == 8080)))", SERVICE, True),
    ('Service\t==\n"web"', SERVICE, True),
    ('not (Service == web and "v1" in Tags)', SERVICE, False),
    # health checks
    ("Status == `passing`", CHECK, True),
    ('Status == "critical"', CHECK, False),
    ('Node == "n"', CHECK, False),
    ('Node == "n1"', CHECK, True),
    ('ServiceName == ""', CHECK, True),
    ('ServiceName != ""', CHECK, False),
    # health entries: nested selectors
    ("Node.Node != ``", ENTRY, True),
    ('Node.Node == "n1"', ENTRY, True),
    ('Service.Service == "web"', ENTRY, True),
    ('Service.Tags contains "v1"', ENTRY, True),
    ('Node.Meta.env == "prod"', ENTRY, True),
    ('Node.Meta["some-key"] == "v"', ENTRY, True),
    ('Node.TaggedAddresses.wan == "198.18.0.1"', ENTRY, True),
    ("Node.CreateIndex == 5", ENTRY, True),
    ("Service.Weights.Passing == 1", ENTRY, True),
    ('Service.Meta.version == "1.2"', ENTRY, True),
    # selecting through a list: true if true for any element, whatever the operator
    ('Checks.Status == "critical"', ENTRY, True),
    ('Checks.Status == "warning"', ENTRY, False),
    ("Checks.Status != passing", ENTRY, True),
    ("Checks.Status != critical", ENTRY, True),
    ('Checks.ServiceTags contains "v1"', ENTRY, True),
    ("Checks.ServiceTags is empty", ENTRY, True),
    ("Checks.ServiceTags is not empty", ENTRY, True),
    ('Checks.Name matches "^web"', ENTRY, True),
    ("Checks is not empty", ENTRY, True),
    ("Checks is empty", NO_CHECKS, True),
    # ... and false for every operator on an empty list, so that Consul's own
    # "all checks passing" filter is: not Checks.Status != passing
    ("not Checks.Status != passing", ENTRY, False),
    ("not Checks.Status != passing", HEALTHY, True),
    ("not Checks.Status != passing", NO_CHECKS, True),
    ("Checks.Status != passing", NO_CHECKS, False),
    ("Checks.Status == critical", NO_CHECKS, False),
    ("Checks.ServiceTags is empty", NO_CHECKS, False),
    ('"v1" not in Checks.ServiceTags', NO_CHECKS, False),
    # the empty filter keeps everything (CreateFilter("") is the no-op filter)
    ("", SERVICE, True),
    ("", None, True),
]


@pytest.mark.parametrize(("expr", "obj", "expected"), CASES)
def test_cases(expr: str, obj: Any, expected: bool) -> None:
    assert compile_filter(expr).matches(obj) is expected


# Rows where a JSON value stands in for a Go type (module docstring, "Deliberate
# differences"); go-bexpr's answer on the Go struct is in the comment.
OURS: list[tuple[str, Any, bool]] = [
    ("Sevice == web", SERVICE, False),  # Go: Selector "Sevice" is not valid
    ("Sevice != web", SERVICE, True),  # Go: the same error
    ("Meta.missing is empty", SERVICE, True),  # Go: Invalid match operator "Is Empty"
    ('Weights contains "Passing"', SERVICE, True),  # Go (struct): Invalid match operator
    ('"x" in Tags', {"Tags": None}, False),  # nil slice: Go agrees
    ("Tags is empty", {"Tags": None}, True),  # nil slice: Go agrees
    ("Meta.env != prod", {"Meta": None}, True),  # nil map: Go agrees
    ("Checks.Status != passing", {"Checks": None}, True),  # nil slice: Go says false
    ('Port == "9223372036854775808"', {"Port": 2**63}, True),  # uint64 field: Go agrees
]


@pytest.mark.parametrize(("expr", "obj", "expected"), OURS)
def test_values_stand_in_for_types(expr: str, obj: Any, expected: bool) -> None:
    assert compile_filter(expr).matches(obj) is expected


SYNTAX_ERRORS: list[tuple[str, str]] = [
    # hashicorp/consul#7338, word for word
    (
        "foo",
        '1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \\t\\r\\n] or [a-zA-Z0-9_]',
    ),
    # hashicorp/consul#9441, word for word
    ("Address == 10.10.10.10", '1:17 (16): rule "number": Invalid number literal'),
    # the shape of hashicorp/consul#6467 (an unquoted value with a hyphen)
    (
        "Node==host-name",
        '1:11 (10): no match found, expected: ".", "[", [ \\t\\r\\n], [a-zA-Z0-9_] or EOF',
    ),
    ("(Port == 80", '1:12 (11): rule "grouping": Unmatched parentheses'),
    ("((Port == 80)", '1:14 (13): rule "grouping": Unmatched parentheses'),
    ("Port == 80)", '1:11 (10): no match found, expected: ".", [ \\t\\r\\n], [0-9] or EOF'),
    ('Service == "web', '1:16 (15): rule "string": Unterminated string literal'),
    ("Service == `web", '1:16 (15): rule "string": Unterminated string literal'),
    ('Meta["env" == x', '1:12 (11): rule "index": Unclosed index expression'),
    ("Meta[env] == x", '1:6 (5): rule "index": Invalid index'),
    ('"x" in "y"', '1:8 (7): rule "match": Invalid selector'),
    ('Service == "\\q"', '1:12 (11): rule "string": invalid syntax'),
    ('Service == "a\\"b"', '1:12 (11): rule "string": invalid syntax'),
    ("Port == 80x", '1:11 (10): rule "number": Invalid number literal'),
    ("Port == 08", '1:10 (9): rule "number": Invalid number literal'),
    (
        "Port ==",
        '1:8 (7): no match found, expected: "-", "0", "\\"", "`", [ \\t\\r\\n], [1-9] or [a-zA-Z]',
    ),
    (
        " ",
        '1:2 (1): no match found, expected: "(", "-", "0", "\\"", "`", "not", [ \\t\\r\\n], '
        "[1-9] or [a-zA-Z]",
    ),
    ("Port == 80 and", "1:15 (14): no match found, expected: [ \\t\\r\\n]"),
    ("Tags is emptyx", "1:14 (13): no match found, expected: [ \\t\\r\\n] or EOF"),
    (
        "Service == web AND Port == 80",
        '1:16 (15): no match found, expected: "and", "or", [ \\t\\r\\n] or EOF',
    ),
    ("Tags contains", "1:14 (13): no match found, expected: [ \\t\\r\\n]"),
    ("-Port == 1", '1:2 (1): no match found, expected: "0" or [1-9]'),
    # a bad byte is reported where the parser reads it, under the rule reading it; any
    # such error replaces "no match found", and several are joined by newlines
    ("Service == web\udcff", "1:15 (14): rule Identifier: invalid encoding"),
    ('Service == "\udcff"', '1:13 (12): rule "string": invalid encoding'),
    (
        'Service == "\\q" or (Port == 1',
        '1:12 (11): rule "string": invalid syntax\n'
        '1:30 (29): rule "grouping": Unmatched parentheses',
    ),
    ("\udcff", "1:1 (0): invalid encoding"),
]


@pytest.mark.parametrize(("expr", "detail"), SYNTAX_ERRORS)
def test_syntax_errors(expr: str, detail: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(expr)
    assert str(info.value) == PREFIX + detail
    assert isinstance(info.value, ValueError)


TYPE_ERRORS: list[tuple[str, Any, str]] = [
    (
        "Port == abc",
        SERVICE,
        'Failed to coerce value "abc" for selector "Port": '
        'strconv.ParseInt: parsing "abc": invalid syntax',
    ),
    (
        "Port == 99999999999999999999",
        SERVICE,
        'Failed to coerce value "99999999999999999999" for selector "Port": '
        'strconv.ParseInt: parsing "99999999999999999999": value out of range',
    ),
    (
        "EnableTagOverride == yes",
        SERVICE,
        'Failed to coerce value "yes" for selector "EnableTagOverride": '
        'strconv.ParseBool: parsing "yes": invalid syntax',
    ),
    ("Tags == v1", SERVICE, 'Invalid match operator "Equal" for selector "Tags"'),
    ("Service is empty", SERVICE, 'Invalid match operator "Is Empty" for selector "Service"'),
    ('"8080" in Port', SERVICE, 'Invalid match operator "In" for selector "Port"'),
    ('Port matches "8"', SERVICE, 'Invalid match operator "Matches" for selector "Port"'),
    ("Weights == 1", SERVICE, 'Invalid match operator "Equal" for selector "Weights"'),
    ("Port.x == 1", SERVICE, 'Selector "Port.x" is not valid'),
    ('Meta.env.x == "1"', SERVICE, 'Selector "Meta.env.x" is not valid'),
    ("Checks == x", ENTRY, 'Invalid match operator "Equal" for selector "Checks"'),
    ('"x" in Checks', ENTRY, 'Invalid match operator "In" for selector "Checks"'),
    ("Checks.Status.x == 1", ENTRY, 'Selector "Checks.Status.x" is not valid'),
    # go-bexpr checks every term before evaluating any, so or cannot hide one
    (
        "Service == web or Port == abc",
        SERVICE,
        'Failed to coerce value "abc" for selector "Port": '
        'strconv.ParseInt: parsing "abc": invalid syntax',
    ),
    (
        "Port == abc or Tags == x",
        SERVICE,
        'Failed to coerce value "abc" for selector "Port": '
        'strconv.ParseInt: parsing "abc": invalid syntax',
    ),
]


@pytest.mark.parametrize(("expr", "obj", "detail"), TYPE_ERRORS)
def test_type_errors(expr: str, obj: Any, detail: str) -> None:
    flt = compile_filter(expr)  # go-bexpr finds these against the Go type; we, on values
    with pytest.raises(FilterError) as info:
        flt.matches(obj)
    assert str(info.value) == PREFIX + detail


def test_bad_regexp_fails_at_compile_time() -> None:
    with pytest.raises(FilterError) as info:
        compile_filter('Service matches "("')
    # Go's regexp words this "missing closing ): `(`"; RE2 has its own wording
    assert str(info.value).startswith(
        PREFIX + 'Failed to compile regular expression "(": error parsing regexp: '
    )


def test_apply_keeps_matching_items_in_order() -> None:
    services = [
        {**SERVICE, "ID": "a", "Tags": ["v1"]},
        {**SERVICE, "ID": "b", "Tags": ["v2"]},
        {**SERVICE, "ID": "c", "Tags": ["v1", "v2"]},
    ]
    flt = compile_filter('"v1" in Tags')
    assert [s["ID"] for s in flt.apply(services)] == ["a", "c"]
    assert compile_filter("").apply(services) == services
    assert flt.apply([]) == []


def test_apply_map_filters_on_values() -> None:
    # /v1/agent/services: the filter sees each AgentService, not the ID key
    services = {
        "redis1": {**SERVICE, "ID": "redis1", "Meta": {"env": "production"}},
        "redis3": {**SERVICE, "ID": "redis3", "Meta": {"env": "qa"}},
    }
    assert list(compile_filter('Meta.env == "qa"').apply_map(services)) == ["redis3"]
    assert compile_filter('ID == "redis1"').apply_map(services) == {"redis1": services["redis1"]}
    assert compile_filter("redis1 in Meta").apply_map(services) == {}


def test_one_bad_item_fails_the_whole_filter() -> None:
    items = [{"Port": 1}, {"Port": "one"}, {"Port": [1]}]
    with pytest.raises(FilterError, match='Invalid match operator "Equal"'):
        compile_filter("Port == 1").apply(items)


def test_filter_is_reusable_and_described() -> None:
    flt = compile_filter("Service == web")
    assert isinstance(flt, Filter)
    assert repr(flt) == "Filter('Service == web')"
    assert flt.expression == "Service == web"
    assert [flt.matches(SERVICE) for _ in range(3)] == [True, True, True]


def test_string_escapes_are_go_escapes() -> None:
    obj = {"Name": "tab\there é \U0001f600", "Raw": "a\\nb"}
    assert compile_filter('Name == "tab\\there \\u00e9 \\U0001F600"').matches(obj)
    assert compile_filter('Name == "tab\\x09here \\303\\251 😀"').matches(obj)
    assert compile_filter("Raw == `a\\nb`").matches(obj)
    assert not compile_filter('Raw == "a\\nb"').matches(obj)
    assert compile_filter("Name == `tab\there é 😀`").matches(obj)
    assert compile_filter("Name == `tab\t\rhere é 😀`").matches(obj)  # raw: \r dropped


def test_number_values_compare_as_the_field_type() -> None:
    assert compile_filter("Score == 2.5").matches({"Score": 2.5})
    assert compile_filter('Score == "25e-1"').matches({"Score": 2.5})
    assert not compile_filter("Score == 2").matches({"Score": 2.5})
    assert compile_filter("Port == 0").matches({"Port": 0})
    assert compile_filter('Port == "0o17"').matches({"Port": 15})
    assert compile_filter('Port == "017"').matches({"Port": 15})
    assert compile_filter('Port == "-0b11"').matches({"Port": -3})
    assert compile_filter("Name == 0").matches({"Name": "0"})
    assert compile_filter("Name == -1.50").matches({"Name": "-1.50"})
    assert compile_filter('"80" in Ports').matches({"Ports": [443, 80]})
    assert not compile_filter('"8" in Ports').matches({"Ports": [443, 80]})
    assert compile_filter("true in Flags").matches({"Flags": [False, True]})
    with pytest.raises(FilterError, match="ParseFloat"):
        compile_filter("Score == abc").matches({"Score": 2.5})
    with pytest.raises(FilterError, match='parsing "_1"'):
        compile_filter('Port == "_1"').matches({"Port": 1})


# ---------------------------------------------------------------------------------------
# Bounds


def test_length_limit() -> None:
    body = "Service == "
    ok = body + '"' + "x" * (FILTER_BYTES_MAX - len(body) - 2) + '"'
    assert len(ok.encode()) == FILTER_BYTES_MAX
    assert not compile_filter(ok).matches(SERVICE)
    with pytest.raises(FilterError, match="over the limit of 4096"):
        compile_filter(ok + " ")
    with pytest.raises(FilterError, match="over the limit"):
        compile_filter('Service == "' + "é" * 2100 + '"')  # bytes, not characters


def test_nesting_limit() -> None:
    n = NESTING_MAX
    assert compile_filter("(" * n + "Port == 8080" + ")" * n).matches(SERVICE)
    assert compile_filter("not " * n + "Port == 8080").matches(SERVICE)
    assert compile_filter("(not " * (n // 2) + "Port == 8080" + ")" * (n // 2)).matches(SERVICE)
    for deep in (
        "(" * (n + 1) + "Port == 8080" + ")" * (n + 1),
        "not " * (n + 1) + "Port == 8080",
        "(not " * (n // 2 + 1) + "Port == 8080" + ")" * (n // 2 + 1),
        "(" * FILTER_BYTES_MAX,
    ):
        with pytest.raises(FilterError, match=f"more than {n} deep"):
            compile_filter(deep)


def test_long_chains_are_not_nesting() -> None:
    terms = ["Port == 1"] * 250 + ["Port == 8080"]
    assert compile_filter(" or ".join(terms)).matches(SERVICE)
    assert not compile_filter(" and ".join(reversed(terms))).matches(SERVICE)


def _frames() -> int:
    depth = 0
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


def _with_headroom(headroom: int, fn: Any) -> Any:
    """Call fn with only ``headroom`` frames left before the recursion limit."""
    limit = sys.getrecursionlimit()

    def dive() -> Any:
        return dive() if _frames() < limit - headroom else fn()

    return dive()


WORST = [
    "(" * NESTING_MAX + "Port == 8080" + ")" * NESTING_MAX,
    "(" * NESTING_MAX + "Port == 8080",
    "(Port == 1 or " * 40,
    "not " * NESTING_MAX + "Port == 8080",
    "(" * (NESTING_MAX - 1) + "Port == 1 and Tags is empty or not Port == 2" + ")" * 31,
]


@pytest.mark.parametrize("text", WORST)
def test_stack_use_is_bounded(text: str) -> None:
    def run() -> str:
        try:
            compile_filter(text).matches({"Port": [[[[8080]]]], "Tags": []})
        except FilterError as e:
            return str(e)
        return "ok"

    _with_headroom(250, run)  # a RecursionError would fail the test


HOSTILE = [
    " and ".join(["Port == 1"] * 400)[:FILTER_BYTES_MAX],
    "(Port == 1 or " * 290,
    "not " * 1000,
    "(" * 4000,
    "a[" * 2000,
    'a["' * 1300,
    '"' * 4000,
    "`" * 4000,
    "a" + ".b" * 2040 + " == 1",
    'a == "' + "\\x41" * 1000,
    "Port == " + "1" * 4000,
    "-" * 4000,
    "not (" * 800,
]


@pytest.mark.timeout(30)  # a bound against exponential blow-up, not a timing assertion
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_filters_finish(text: str) -> None:
    with contextlib.suppress(FilterError):
        compile_filter(text).matches(ENTRY)


def test_deep_values_do_not_recurse() -> None:
    deep: Any = {"Name": "web"}
    for _ in range(5000):
        deep = [deep]  # lists in lists are walked as one flat list, as go-bexpr does
    assert compile_filter("Service.Name == web").matches({"Service": deep}) is True
    assert compile_filter("Service.Name == db").matches({"Service": deep}) is False


# ---------------------------------------------------------------------------------------
# Fuzzing: any text in, only FilterError out


TOKENS = [
    "Service", "Tags", "Meta", "Port", "Checks", "Status", "Node", "env", "x_1", "not",
    "and", "or", "in", "is", "empty", "contains", "matches", "==", "!=", "=", "!", "(", ")",
    "[", "]", ".", '"', "`", "-", "0", "1", "8080", "3.5", "0.", "01", '"x"', "`y`",
    '"a\\nb"', '"\\q"', '"\\x41"', '"\\u00e9"', '"\\377"', '"\\400"', "\\", "é", "\t",
    "\n", "\r", " ", " ", " ", "_", "9a", '"é"', "nota", "orx", "'", ",", "/", "\udcff",
    "\x00", '"^w"', '"("', "passing", "web", "true", '"0x10"',
]  # fmt: skip

OBJECTS: list[Any] = [
    SERVICE,
    CHECK,
    ENTRY,
    NO_CHECKS,
    {},
    None,
    [],
    [ENTRY, SERVICE],
    "web",
    8080,
    {"Service": None, "Tags": [None, 1, "x", True, 2.5], "Meta": {"": None}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["Service", "Tags", "Meta", "Port", "env", "x"]), inner)
    ),
    max_leaves=20,
)
token_soup = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)
any_text = (
    st.text(max_size=60)
    | st.binary(max_size=40).map(lambda b: b.decode("utf-8", "surrogateescape"))
    | st.text(alphabet=string.printable, max_size=60)
    | token_soup
)


def _only_filter_errors(text: str, objects: list[Any]) -> int:
    """Compile and run ``text``; return how many objects it ran on without error."""
    try:
        flt = compile_filter(text)
    except FilterError as e:
        assert str(e).startswith(PREFIX)
        return 0
    ran = 0
    for obj in objects:
        try:
            assert flt.matches(obj) in (True, False)
            ran += 1
        except FilterError as e:
            assert str(e).startswith(PREFIX)
    return ran


@settings(max_examples=1500)
@given(any_text)
def test_fuzz_any_text_raises_only_filter_error(text: str) -> None:
    _only_filter_errors(text, OBJECTS)


SELECTORS = ["Service", "Tags", "Meta", "Meta.env", 'Meta["x"]', "Port", "x", "Meta.x.y"]
VALUES = ['"web"', "web", "1", "-2", "2.5", '"x"', "`env`", "true", '""', '"^w"', "Meta.env"]
OPERATORS = ["==", "!=", "contains", "not contains", "matches", "not matches"]


@st.composite
def filters(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.integers(0, 6 if depth < 3 else 2))
    if kind == 0:
        op = draw(st.sampled_from(OPERATORS))
        return f"{draw(st.sampled_from(SELECTORS))} {op} {draw(st.sampled_from(VALUES))}"
    if kind == 1:
        op = draw(st.sampled_from(["in", "not in"]))
        return f"{draw(st.sampled_from(VALUES))} {op} {draw(st.sampled_from(SELECTORS))}"
    if kind == 2:
        op = draw(st.sampled_from(["is empty", "is not empty"]))
        return f"{draw(st.sampled_from(SELECTORS))} {op}"
    if kind == 3:
        return "not " + draw(filters(depth + 1))
    if kind == 4:
        return "(" + draw(filters(depth + 1)) + ")"
    word = draw(st.sampled_from([" and ", " or "]))
    return draw(filters(depth + 1)) + word + draw(filters(depth + 1))


@settings(max_examples=800)
@given(filters(), json_values)
def test_fuzz_wellformed_filters_on_any_value(text: str, obj: Any) -> None:
    compile_filter(text)  # the generator only writes valid filters
    _only_filter_errors(text, [obj])


def _outcome(text: str, obj: Any) -> bool | None:
    try:
        return compile_filter(text).matches(obj)
    except FilterError:
        return None


@settings(max_examples=600)
@given(filters(depth=1), st.sampled_from(OBJECTS[:5]) | json_values)
def test_fuzz_logic_laws(text: str, obj: Any) -> None:
    base = _outcome(text, obj)
    negated = _outcome(f"not ({text})", obj)
    doubled_or = _outcome(f"({text}) or ({text})", obj)
    doubled_and = _outcome(f"({text}) and ({text})", obj)
    if base is None:  # an error anywhere fails every filter that contains the term
        assert negated is doubled_or is doubled_and is None
    else:
        assert negated is (not base)
        assert doubled_or is base
        assert doubled_and is base


def test_fuzz_corpus_reaches_evaluation() -> None:
    # the fuzzing above would prove little if nothing ever compiled
    assert _only_filter_errors('Service == web and "v1" in Tags', OBJECTS) >= 4
    assert _only_filter_errors("Meta.env is empty or Port != 1", OBJECTS) >= 3
