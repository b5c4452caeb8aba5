"""Consul's catalog and KV verbs: ``kv``, ``catalog``, ``services`` and ``watch``.

Each verb copies hashicorp/consul's ``command/...`` source for its flags, messages and exit
codes, and the parts of its ``api`` package the command leans on (KV's 404-is-nil reads,
``-cas``/``-acquire`` query strings, the watch plan's blocking loop in
``api/watch/plan.go`` and ``funcs.go``):

- ``kv put|get|delete|export|import``: command/kv/*; export's JSON is impexp.Entry.
- ``catalog services|nodes|datacenters``: command/catalog/list/*.
- ``services register|deregister``: command/services/*; definition files are JSON only.
- ``watch``: command/watch/watch.go over api/watch.

Where gossamer differs on purpose the docstring of the function says so. The verbs are
registered in ``gossamer.cli`` (which imports this module lazily: this module builds its
table from that one's ``Verb`` and ``Flag``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gossamer.cli import (
    ApiClient,
    ApiError,
    ApiResponse,
    CommandError,
    Flag,
    FlagKind,
    Verb,
    _as_dict,
    _as_int,
    _as_str,
    _Context,
    _err,
    _go_parse_bool,
    _out,
    _verb_help,
    columnize,
)
from gossamer.duration import format_duration
from gossamer.duration import go_quote as _go_quote

__all__ = ["VERBS"]

# --------------------------------------------------------------------------------------
# Small Go compatibility helpers
# --------------------------------------------------------------------------------------


class _DataError(Exception):
    """Reading a DATA argument failed; the text is Consul's (``Failed to read file: …``)."""


def _go_os_error(op: str, path: str, e: OSError) -> str:
    """``*fs.PathError`` text: ``open x: no such file or directory``."""
    if isinstance(e, IsADirectoryError):
        return f"read {path}: is a directory"
    reason = os.strerror(e.errno).lower() if e.errno is not None else str(e)
    return f"{op} {path}: {reason}"


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise _DataError(f"Failed to read file: {_go_os_error('open', path, e)}") from None


def _read_stdin() -> bytes:
    try:
        stream = getattr(sys.stdin, "buffer", None)
        if stream is not None:
            data: bytes = stream.read()
            return data
        return os.fsencode(sys.stdin.read())
    except (OSError, ValueError) as e:
        raise _DataError(f"Failed to read stdin: {e}") from None


def _load_data_source(arg: str) -> bytes:
    """command/helpers ``LoadDataSource``: ``@file``, ``-`` for stdin, else the text itself."""
    if not arg:
        return b""
    if arg[0] == "@":
        return _read_file(arg[1:])
    if arg == "-":
        return _read_stdin()
    return os.fsencode(arg)


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _go_b64decode(data: bytes | str) -> bytes:
    """``base64.StdEncoding.DecodeString``: padding required, CR and LF ignored; ValueError
    with Go's ``illegal base64 data at input byte N``."""
    raw = data.encode("latin-1", "replace") if isinstance(data, str) else data
    stripped = raw.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        pass
    offset = next((i for i, c in enumerate(stripped) if c not in _B64_ALPHABET), None)
    if offset is None:
        pad = stripped.find(b"=")
        offset = pad if 0 <= pad < len(stripped) - 2 else len(stripped) - len(stripped) % 4
    raise ValueError(f"illegal base64 data at input byte {offset}")


def _go_json(value: object, indent: str | None = None) -> str:
    """encoding/json's output: UTF-8 as is, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped
    (its HTML-safe default); ``indent`` as ``MarshalIndent`` takes it, else compact."""
    if indent is None:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, ensure_ascii=False, indent=indent)
    for ch, esc in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(ch, esc)  # these occur only inside JSON strings
    return text


def _go_path_clean(path: str) -> str:
    """Go's ``path.Clean``."""
    if not path:
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _go_path_join(*elems: str) -> str:
    """Go's ``path.Join``: "" when every element is empty."""
    for i, e in enumerate(elems):
        if e:
            return _go_path_clean("/".join(elems[i:]))
    return ""


def _tabwriter(rows: Sequence[tuple[str, str]]) -> str:
    """``tabwriter.NewWriter(w, 0, 2, 6, ' ', 0)`` for rows of ``label\\tvalue\\n``: the
    label column padded to its widest cell plus 6."""
    if not rows:
        return ""
    width = max(len(label) for label, _ in rows) + 6
    return "".join(f"{label.ljust(width)}{value}\n" for label, value in rows)


def _write_line(data: bytes) -> None:
    """``UI.Info(string(b))``: the bytes as they are, then a newline."""
    sys.stdout.flush()
    stream = getattr(sys.stdout, "buffer", None)
    if stream is None:
        sys.stdout.write(data.decode("utf-8", "replace") + "\n")
        return
    stream.write(data + b"\n")
    stream.flush()


def _map_flag(ctx: _Context, name: str) -> dict[str, str]:
    """flags.FlagMapValue: repeated ``key=value``; a later key wins."""
    out: dict[str, str] = {}
    for item in ctx.flags.get_list(name):
        key, eq, value = item.partition("=")
        if not eq:
            raise CommandError(
                f"invalid value {_go_quote(item)} for flag -{name}: "
                f'Missing "=" value in argument: {item}\n{_verb_help(ctx.verb)}'
            )
        out[key] = value
    return out


def _node_meta_params(meta: dict[str, str]) -> list[tuple[str, str]]:
    """api ``QueryOptions.NodeMeta``: ``node-meta=key:value`` for each pair."""
    return [("node-meta", f"{k}:{v}") for k, v in meta.items()]


# --------------------------------------------------------------------------------------
# API reads
# --------------------------------------------------------------------------------------


def _decode(resp: ApiResponse) -> object:
    try:
        decoded: object = json.loads(resp.body) if resp.body.strip() else None
    except ValueError as e:
        raise ApiError(f"invalid JSON in response: {e}") from None
    return decoded


def _read(
    api: ApiClient,
    path: str,
    params: Sequence[tuple[str, str]] = (),
    *,
    nil_on_404: bool = False,
    timeout_s: float | None = None,
) -> tuple[object, int]:
    """A GET's decoded body and ``X-Consul-Index``. With ``nil_on_404``, a 404 is ``None``
    (api's ``requireNotFoundOrOK``, which KV reads use); other non-2xx are ApiError."""
    resp = api.request("GET", path, params, timeout_s=timeout_s)
    if nil_on_404 and resp.status == 404:
        return None, resp.index()
    if not resp.ok:
        raise resp.error()
    return _decode(resp), resp.index()


def _list_of(value: object, what: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(f"json: cannot unmarshal {_json_kind(value)} into Go value of type {what}")
    return value


def _json_kind(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


@dataclass(frozen=True)
class _KVPair:
    """api.KVPair with its Value decoded from base64."""

    key: str
    create_index: int
    modify_index: int
    lock_index: int
    flags: int
    value: bytes
    session: str
    namespace: str
    partition: str

    @classmethod
    def from_json(cls, raw: object) -> _KVPair:
        d = _as_dict(raw)
        encoded = d.get("Value")
        try:
            value = _go_b64decode(encoded) if isinstance(encoded, str) else b""
        except ValueError as e:
            raise ApiError(str(e)) from None
        return cls(
            key=_as_str(d.get("Key")),
            create_index=_as_int(d.get("CreateIndex")),
            modify_index=_as_int(d.get("ModifyIndex")),
            lock_index=_as_int(d.get("LockIndex")),
            flags=_as_int(d.get("Flags")),
            value=value,
            session=_as_str(d.get("Session")),
            namespace=_as_str(d.get("Namespace")),
            partition=_as_str(d.get("Partition")),
        )


def _kv_path(key: str) -> str:
    return "/v1/kv/" + key.removeprefix("/")


def _kv_list(api: ApiClient, prefix: str, stale: bool) -> list[_KVPair]:
    """api ``KV.List``: ``?recurse``; 404 is an empty list."""
    params = [("recurse", "")] + ([("stale", "")] if stale else [])
    raw, _ = _read(api, _kv_path(prefix), params, nil_on_404=True)
    return [_KVPair.from_json(p) for p in _list_of(raw, "[]*api.KVPair")]


def _kv_write(
    api: ApiClient,
    method: str,
    key: str,
    params: Sequence[tuple[str, str]],
    value: bytes | None = None,
) -> bool:
    """api ``KV.put``/``deleteInternal``: the answer is true when the body says ``true``."""
    if method == "PUT":
        if key.startswith("/"):
            raise ApiError(f"Invalid key. Key must not begin with a '/': {key}")
        resp = api.request(
            "PUT",
            _kv_path(key),
            params,
            raw_body=value or b"",
            content_type="application/octet-stream",
        )
    else:
        resp = api.request("DELETE", _kv_path(key), params)
    if not resp.ok:
        raise resp.error()
    return b"true" in resp.body


# --------------------------------------------------------------------------------------
# kv
# --------------------------------------------------------------------------------------


def _run_kv_put(ctx: _Context) -> int:
    """command/kv/put. Unlike Consul, a -base64 decode failure stops the command (Consul
    prints the error and goes on to write whatever part decoded)."""
    f = ctx.flags
    args = f.args
    if not args:
        raise CommandError("Error! Missing KEY argument")
    if len(args) > 2:
        raise CommandError(f"Error! Too many arguments (expected 1 or 2, got {len(args)})")
    key = args[0]
    try:
        data = _load_data_source(args[1]) if len(args) == 2 else b""
    except _DataError as e:
        raise CommandError(f"Error! {e}") from None
    if f.get_bool("base64"):
        try:
            data = _go_b64decode(data)
        except ValueError as e:
            raise CommandError(f"Error! Cannot base 64 decode data: {e}") from None
    session = f.get_str("session")
    acquire, release, cas = f.get_bool("acquire"), f.get_bool("release"), f.get_bool("cas")
    if (release or acquire) and not session:
        raise CommandError("Error! Missing -session (required with -acquire and -release)")
    api = ctx.client()
    modify_index, kv_flags = f.get_int("modify-index"), f.get_int("flags")
    flag_params = [("flags", str(kv_flags))] if kv_flags else []
    if cas:
        try:
            ok = _kv_write(api, "PUT", key, [("cas", str(modify_index)), *flag_params], data)
        except ApiError as e:
            raise CommandError(f"Error! Did not write to {key}: {e}") from None
        if not ok and modify_index == 0:
            raise CommandError(
                f"Error! Did not write to {key}: CAS performed with index=0 and key already exists."
            )
        if not ok:
            raise CommandError(f"Error! Did not write to {key}: CAS failed")
        _out(f"Success! Data written to: {key}")
        return 0
    if acquire:
        try:
            ok = _kv_write(api, "PUT", key, [("acquire", session), *flag_params], data)
        except ApiError as e:
            raise CommandError(f"Error! Failed writing data: {e}") from None
        if not ok:
            raise CommandError("Error! Did not acquire lock")
        _out(f"Success! Lock acquired on: {key}")
        return 0
    if release:
        try:
            ok = _kv_write(api, "PUT", key, [("release", session), *flag_params], data)
        except ApiError:
            raise CommandError(f"Error! Failed writing data: {key}") from None  # sic, Consul
        if not ok:
            raise CommandError("Error! Did not release lock")
        _out(f"Success! Lock released on: {key}")
        return 0
    try:
        _kv_write(api, "PUT", key, flag_params, data)
    except ApiError as e:
        raise CommandError(f"Error! Failed writing data: {e}") from None
    _out(f"Success! Data written to: {key}")
    return 0


def _one_key_arg(ctx: _Context) -> str:
    """The optional KEY of kv get/delete/export, with one leading "/" dropped."""
    args = ctx.flags.args
    if len(args) > 1:
        raise CommandError(f"Too many arguments (expected 1, got {len(args)})")
    key = args[0] if args else ""
    return key[1:] if key.startswith("/") else key


def _pretty_kv_pair(pair: _KVPair, base64_value: bool, keys_only: bool) -> str:
    """command/kv/get ``prettyKVPair``."""
    rows = [
        ("CreateIndex", str(pair.create_index)),
        ("Flags", str(pair.flags)),
        ("Key", pair.key),
        ("LockIndex", str(pair.lock_index)),
        ("ModifyIndex", str(pair.modify_index)),
        ("Session", pair.session or "-"),
    ]
    if pair.partition:
        rows.append(("Partition", pair.partition))
    if pair.namespace:
        rows.append(("Namespace", pair.namespace))
    text = _tabwriter(rows)
    if keys_only:
        return text
    value = _value_text(pair.value, base64_value)
    width = max(len(label) for label, _ in rows) + 6
    return text + "Value".ljust(width) + value


def _value_text(value: bytes, base64_value: bool) -> str:
    if base64_value:
        return base64.standard_b64encode(value).decode("ascii")
    return value.decode("utf-8", "surrogateescape")


def _print_text(text: str) -> None:
    _write_line(text.encode("utf-8", "surrogateescape"))


def _run_kv_get(ctx: _Context) -> int:
    f = ctx.flags
    key = _one_key_arg(ctx)
    keys, recurse = f.get_bool("keys"), f.get_bool("recurse")
    detailed, b64 = f.get_bool("detailed"), f.get_bool("base64")
    if not key and not (recurse or keys):
        raise CommandError("Error! Missing KEY argument")
    api = ctx.client()
    stale = [("stale", "")] if f.get_bool("stale") else []
    what = "Error querying Consul agent"
    try:
        if keys and recurse:
            pairs = _kv_list(api, key, bool(stale))
            for i, pair in enumerate(pairs):
                if detailed:
                    _print_text(_pretty_kv_pair(pair, False, True))
                    if i < len(pairs) - 1:
                        _out()
                else:
                    _print_text(pair.key)
            return 0
        if keys:
            params = [("keys", ""), ("separator", f.get_str("separator")), *stale]
            params = [(k, v) for k, v in params if k != "separator" or v]
            raw, _ = _read(api, _kv_path(key), params, nil_on_404=True)
            for k in _list_of(raw, "[]string"):
                _print_text(_as_str(k))
            return 0
        if recurse:
            pairs = _kv_list(api, key, bool(stale))
            for i, pair in enumerate(pairs):
                if detailed:
                    _print_text(_pretty_kv_pair(pair, b64, False))
                    if i < len(pairs) - 1:
                        _out()
                else:
                    _write_line(pair.key.encode() + b":" + _value_bytes(pair.value, b64))
            return 0
        raw, _ = _read(api, _kv_path(key), stale, nil_on_404=True)
        found = _list_of(raw, "[]*api.KVPair")
        single = _KVPair.from_json(found[0]) if found else None
    except ApiError as e:
        raise CommandError(f"{what}: {e}") from None
    if single is None:
        raise CommandError(f"Error! No key exists at: {key}")
    if detailed:
        _print_text(_pretty_kv_pair(single, b64, False))
    else:
        _write_line(_value_bytes(single.value, b64))
    return 0


def _value_bytes(value: bytes, base64_value: bool) -> bytes:
    return base64.standard_b64encode(value) if base64_value else value


def _run_kv_delete(ctx: _Context) -> int:
    f = ctx.flags
    key = _one_key_arg(ctx)
    recurse, cas, modify_index = f.get_bool("recurse"), f.get_bool("cas"), f.get_int("modify-index")
    if not key and not recurse:
        raise CommandError("Error! Missing KEY argument")
    if cas and modify_index == 0:
        raise CommandError(
            "Cannot delete a key that does not exist. Provide a -modify-index greater than than 0."
        )
    if modify_index != 0 and not cas:
        raise CommandError("Cannot specify -modify-index without -cas!")
    if recurse and cas:
        raise CommandError("Cannot specify both -cas and -recurse!")
    api = ctx.client()
    if recurse:
        try:
            _kv_write(api, "DELETE", key, [("recurse", "")])
        except ApiError as e:
            raise CommandError(f"Error! Did not delete prefix {key}: {e}") from None
        _out(f"Success! Deleted keys with prefix: {key}")
        return 0
    if cas:
        try:
            ok = _kv_write(api, "DELETE", key, [("cas", str(modify_index))])
        except ApiError as e:
            raise CommandError(f"Error! Did not delete key {key}: {e}") from None
        if not ok:
            raise CommandError(f"Error! Did not delete key {key}: CAS failed")
        _out(f"Success! Deleted key: {key}")
        return 0
    try:
        _kv_write(api, "DELETE", key, [])
    except ApiError as e:
        raise CommandError(f"Error deleting key {key}: {e}") from None
    _out(f"Success! Deleted key: {key}")
    return 0


def _run_kv_export(ctx: _Context) -> int:
    """command/kv/exp: impexp.Entry objects, ``MarshalIndent`` with a tab."""
    key = _one_key_arg(ctx)
    api = ctx.client()
    try:
        pairs = _kv_list(api, key, ctx.flags.get_bool("stale"))
    except ApiError as e:
        raise CommandError(f"Error querying Consul agent: {e}") from None
    exported: list[dict[str, object]] = []
    for pair in pairs:
        entry: dict[str, object] = {
            "key": pair.key,
            "flags": pair.flags,
            "value": base64.standard_b64encode(pair.value).decode("ascii"),
        }
        if pair.namespace:
            entry["namespace"] = pair.namespace
        if pair.partition:
            entry["partition"] = pair.partition
        exported.append(entry)
    _print_text(_go_json(exported, indent="\t"))
    return 0


@dataclass
class _Entry:
    key: str = ""
    flags: int = 0
    value: str = ""
    namespace: str = ""


def _decode_entries(data: bytes) -> list[_Entry]:
    """``json.Unmarshal`` into ``[]*impexp.Entry`` (field names matched case-insensitively,
    as encoding/json does); ValueError with encoding/json's wording where we can."""
    try:
        raw = json.loads(data)
    except ValueError as e:
        if not data.strip():
            raise ValueError("unexpected end of JSON input") from None
        raise ValueError(str(e)) from None
    if raw is None:
        return []
    if not isinstance(raw, list):
        kind = _json_kind(raw)
        raise ValueError(f"json: cannot unmarshal {kind} into Go value of type []*impexp.Entry")
    entries: list[_Entry] = []
    for item in raw:
        if item is None:
            continue  # a null element stays a nil pointer; Consul would then crash
        if not isinstance(item, dict):
            kind = _json_kind(item)
            raise ValueError(f"json: cannot unmarshal {kind} into Go value of type impexp.Entry")
        entry = _Entry()
        for name, value in item.items():
            field_name = name.lower()
            if field_name in ("key", "value", "namespace"):
                if not isinstance(value, str) and value is not None:
                    raise ValueError(
                        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                        f"Entry.{field_name} of type string"
                    )
                setattr(entry, field_name, value or "")
            elif field_name == "flags":
                ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
                if not ok and value is not None:
                    raise ValueError(
                        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                        "Entry.flags of type uint64"
                    )
                entry.flags = int(value or 0)
        entries.append(entry)
    return entries


def _run_kv_import(ctx: _Context) -> int:
    args = ctx.flags.args
    if not args:
        raise CommandError("Error! Missing DATA argument")
    if len(args) > 1:
        raise CommandError(f"Error! Too many arguments (expected 1, got {len(args)})")
    if not args[0]:
        raise CommandError("Error! Empty DATA argument")
    try:
        data = _load_data_source(args[0])
    except _DataError as e:
        raise CommandError(f"Error! {e}") from None
    api = ctx.client()
    try:
        entries = _decode_entries(data)
    except ValueError as e:
        raise CommandError(f"Cannot unmarshal data: {e}") from None
    prefix = ctx.flags.get_str("prefix")
    for entry in entries:
        try:
            value = _go_b64decode(entry.value)
        except ValueError as e:
            raise CommandError(f"Error base 64 decoding value for key {entry.key}: {e}") from None
        key = _go_path_join(prefix, entry.key)
        if entry.key.endswith("/"):
            key += "/"
        params = [("flags", str(entry.flags))] if entry.flags else []
        if entry.namespace:
            params.append(("ns", entry.namespace))
        try:
            _kv_write(api, "PUT", key, params, value)
        except ApiError as e:
            raise CommandError(f"Error! Failed writing data for key {key}: {e}") from None
        _out(f"Imported: {key}")
    return 0


# --------------------------------------------------------------------------------------
# catalog
# --------------------------------------------------------------------------------------


def _no_args(ctx: _Context) -> None:
    if ctx.flags.args:
        raise CommandError(f"Too many arguments (expected 0, got {len(ctx.flags.args)})")


def _run_catalog_datacenters(ctx: _Context) -> int:
    _no_args(ctx)
    api = ctx.client()
    try:
        raw, _ = _read(api, "/v1/catalog/datacenters")
        dcs = _list_of(raw, "[]string")
    except ApiError as e:
        raise CommandError(f"Error listing datacenters: {e}") from None
    for dc in dcs:
        _print_text(_as_str(dc))
    return 0


def _run_catalog_services(ctx: _Context) -> int:
    """command/catalog/list/services. With -node it reads
    ``/v1/catalog/node-services/<node>`` (Consul's CLI reads ``/v1/catalog/node/<node>``;
    both carry the node's services, as a list or as a map by ID)."""
    _no_args(ctx)
    node_meta = _node_meta_params(_map_flag(ctx, "node-meta"))
    node = ctx.flags.get_str("node")
    api = ctx.client()
    services: dict[str, list[str]] = {}
    if node:
        try:
            raw, _ = _read(api, f"/v1/catalog/node-services/{node}", node_meta, nil_on_404=True)
        except ApiError as e:
            raise CommandError(f"Error listing services for node: {e}") from None
        listed = _as_dict(raw).get("Services")
        entries = list(listed.values()) if isinstance(listed, dict) else listed
        for s_raw in entries if isinstance(entries, list) else []:
            entry = _as_dict(s_raw)
            tags = entry.get("Tags")
            name = _as_str(entry.get("Service"))
            services.setdefault(name, []).extend(
                _as_str(t) for t in (tags if isinstance(tags, list) else [])
            )
    else:
        try:
            raw, _ = _read(api, "/v1/catalog/services", node_meta)
        except ApiError as e:
            raise CommandError(f"Error listing services: {e}") from None
        for name, tags in _as_dict(raw).items():
            services[name] = [_as_str(t) for t in tags] if isinstance(tags, list) else []
    if not services:
        _err("No services match the given query - try expanding your search.")
        return 0
    order = sorted(services)
    if ctx.flags.get_bool("tags"):
        rows = [(s, ",".join(sorted(services[s]))) for s in order]
        _print_text(_tabwriter(rows).strip(" \t\n\r\v\f"))
    else:
        for s in order:
            _print_text(s)
    return 0


def _map_to_kv(value: object) -> str:
    """command/catalog ``mapToKV``: ``k=v`` sorted by key, joined by ", "."""
    m = _as_dict(value)
    return ", ".join(f"{k}={_as_str(m[k])}" for k in sorted(m))


def _run_catalog_nodes(ctx: _Context) -> int:
    _no_args(ctx)
    f = ctx.flags
    params = _node_meta_params(_map_flag(ctx, "node-meta"))
    near, service = f.get_str("near"), f.get_str("service")
    api = ctx.client()
    flt = f.get_str("filter")
    if flt:
        try:
            flt = _load_data_source(flt).decode("utf-8", "surrogateescape")
        except _DataError as e:
            raise CommandError(f"Could not process filter argument: {e}") from None
    if near:
        params.append(("near", near))
    if flt:
        params.append(("filter", flt))
    nodes: list[dict[str, object]] = []
    if service:
        try:
            raw, _ = _read(api, f"/v1/catalog/service/{service}", params)
            listed = _list_of(raw, "[]*api.CatalogService")
        except ApiError as e:
            raise CommandError(f"Error listing nodes for service: {e}") from None
        for s_raw in listed:
            s = _as_dict(s_raw)
            nodes.append(
                {
                    "ID": s.get("ID"),
                    "Node": s.get("Node"),
                    "Address": s.get("Address"),
                    "Datacenter": s.get("Datacenter"),
                    "TaggedAddresses": s.get("TaggedAddresses"),
                    "Meta": s.get("NodeMeta"),
                }
            )
    else:
        try:
            raw, _ = _read(api, "/v1/catalog/nodes", params)
            nodes = [_as_dict(n) for n in _list_of(raw, "[]*api.Node")]
        except ApiError as e:
            raise CommandError(f"Error listing nodes: {e}") from None
    if not nodes:
        _err("No nodes match the given query - try expanding your search.")
        return 0
    detailed = f.get_bool("detailed")
    if detailed:
        rows = ["Node\x1fID\x1fAddress\x1fDC\x1fTaggedAddresses\x1fMeta"]
    else:
        rows = ["Node\x1fID\x1fAddress\x1fDC"]
    for n in nodes:
        node_id = _as_str(n.get("ID"))
        cells = [_as_str(n.get("Node")), node_id, _as_str(n.get("Address"))]
        cells.append(_as_str(n.get("Datacenter")))
        if detailed:
            cells += [_map_to_kv(n.get("TaggedAddresses")), _map_to_kv(n.get("Meta"))]
        else:
            dash = node_id.find("-")
            if dash > 0:  # only the first group of the UUID
                cells[1] = node_id[:dash]
        rows.append("\x1f".join(cells))
    _print_text(columnize(rows))
    return 0


# --------------------------------------------------------------------------------------
# services register / deregister
# --------------------------------------------------------------------------------------

# api.AgentServiceRegistration's fields, in its order, by their lower-case, underscore-free
# spelling (how Consul's config decoder matches service definition keys).
_SERVICE_FIELDS = {
    name.lower(): name
    for name in (
        "Kind",
        "ID",
        "Name",
        "Tags",
        "Port",
        "Address",
        "SocketPath",
        "TaggedAddresses",
        "EnableTagOverride",
        "Meta",
        "Weights",
        "Check",
        "Checks",
        "Proxy",
        "Connect",
        "Namespace",
        "Partition",
        "Locality",
    )
}
_SERVICE_DROPPED = frozenset({"token"})
"""Accepted in a definition file but not part of the registration (api has no field)."""

_CHECK_FIELDS = {
    name.lower(): name
    for name in (
        "CheckID",
        "Name",
        "Args",
        "DockerContainerID",
        "Shell",
        "Interval",
        "Timeout",
        "TTL",
        "HTTP",
        "Header",
        "Method",
        "Body",
        "TCP",
        "TCPUseTLS",
        "UDP",
        "Status",
        "Notes",
        "TLSServerName",
        "TLSSkipVerify",
        "GRPC",
        "GRPCUseTLS",
        "H2PING",
        "H2PingUseTLS",
        "AliasNode",
        "AliasService",
        "SuccessBeforePassing",
        "FailuresBeforeWarning",
        "FailuresBeforeCritical",
        "DeregisterCriticalServiceAfter",
        "OSService",
    )
}
_CHECK_ALIASES = {"id": "CheckID", "scriptargs": "Args"}
_OPAQUE_KEYS = frozenset({"meta", "header", "config"})
"""Maps of user data: their keys are kept as written."""


def _squash(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def _camel(key: str) -> str:
    """``destination_service_name`` -> ``DestinationServiceName``; Go's JSON decoding on the
    agent matches field names case-insensitively, so ``Id`` reaches ``ID``."""
    if "_" not in key:
        return key[:1].upper() + key[1:]
    return "".join(part[:1].upper() + part[1:] for part in key.split("_") if part)


def _camel_tree(value: object) -> object:
    if isinstance(value, list):
        return [_camel_tree(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, object] = {}
    for k, v in value.items():
        out[_camel(k)] = v if _squash(k) in _OPAQUE_KEYS else _camel_tree(v)
    return out


def _api_check(raw: object) -> object:
    if not isinstance(raw, dict):
        return raw
    out: dict[str, object] = {}
    for k, v in raw.items():
        squashed = _squash(k)
        name = _CHECK_ALIASES.get(squashed) or _CHECK_FIELDS.get(squashed) or _camel(k)
        out[name] = v if squashed in _OPAQUE_KEYS else _camel_tree(v)
    return out


def _api_service(raw: object, where: str) -> dict[str, object]:
    """A service definition (config-file keys, any case, snake_case allowed) as the
    ``api.AgentServiceRegistration`` JSON ``services register`` sends."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {_json_kind(raw)}")
    fields: dict[str, object] = {}
    for k, v in raw.items():
        squashed = _squash(k)
        if squashed in _SERVICE_DROPPED:
            continue
        name = _SERVICE_FIELDS.get(squashed)
        if name is None:
            raise ValueError(f"invalid config key {where}.{k}")
        if name == "Check":
            v = _api_check(v) if v else None  # a zero Check is nil (serviceToAgentService)
        elif name == "Checks":
            v = [_api_check(c) for c in v] if isinstance(v, list) else v
        elif name == "TaggedAddresses" and isinstance(v, dict):
            v = {ak: _camel_tree(av) for ak, av in v.items()}
        elif name != "Meta":
            v = _camel_tree(v)
        fields[name] = v
    fields.setdefault("Check", None)  # not omitempty in api.AgentServiceRegistration
    fields.setdefault("Checks", None)
    order = list(_SERVICE_FIELDS.values())
    return {name: fields[name] for name in order if name in fields}


def _services_from_files(paths: Sequence[str]) -> list[dict[str, object]]:
    """command/services ``ServicesFromFiles`` for JSON files (and directories of them): the
    ``service`` object and ``services`` array of each, as registrations. HCL is refused with
    a one-line error; other extensions are skipped with Consul's warning."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += [os.path.join(path, n) for n in sorted(os.listdir(path))]
            files = [p for p in files if not os.path.isdir(p)]
        else:
            files.append(path)
    out: list[dict[str, object]] = []
    for path in files:
        if path.endswith(".hcl"):
            raise CommandError(
                f"Error: {path}: HCL service definitions are not supported by gossamer; "
                'write the definition as JSON ({"service": {...}}) in a .json file'
            )
        if not path.endswith(".json") and os.path.exists(path):
            _err(
                f"skipping file {path}, extension must be .hcl or .json, or config "
                "format must be set"
            )
            continue
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as e:
            raise CommandError(
                f"Error: config: Open failed on {path}. {_go_os_error('open', path, e)}"
            ) from None
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError(f"expected a JSON object, got {_json_kind(doc)}")
            if "service" in doc and doc["service"] is not None:
                out.append(_api_service(doc["service"], "service"))
            many = doc.get("services")
            if many is not None:
                if not isinstance(many, list):
                    raise ValueError(f"services: expected an array, got {_json_kind(many)}")
                out += [_api_service(s, "services") for s in many]
        except ValueError as e:
            raise CommandError(f"Error: failed to parse {path}: {e}") from None
    return out


def _split_host_port(text: str) -> tuple[str, str]:
    """Go's ``net.SplitHostPort``; ValueError with its wording."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise ValueError(f"address {text}: missing ']' in address")
        if close + 1 == len(text):
            raise ValueError(f"address {text}: missing port in address")
        if text[close + 1] != ":":
            raise ValueError(f"address {text}: missing port in address")
        return text[1:close], text[close + 2 :]
    colon = text.rfind(":")
    if colon == -1:
        raise ValueError(f"address {text}: missing port in address")
    host = text[:colon]
    if ":" in host:
        raise ValueError(f"address {text}: too many colons in address")
    return host, text[colon + 1 :]


def _parse_service_addr(text: str) -> dict[str, object]:
    """api ``ParseServiceAddr``."""
    host, port = _split_host_port(text)
    try:
        number = int(port, 10) if port.lstrip("+-").isdigit() else int("x")
    except ValueError:
        raise ValueError(f"strconv.Atoi: parsing {_go_quote(port)}: invalid syntax") from None
    return {"Address": host, "Port": number}


def _run_services_register(ctx: _Context) -> int:
    f = ctx.flags
    tagged: dict[str, object] = {}
    for name, addr in _map_flag(ctx, "tagged-address").items():
        try:
            tagged[name] = _parse_service_addr(addr)
        except ValueError as e:
            raise CommandError(f"Invalid Tagged Address: {e}") from None
    meta = _map_flag(ctx, "meta")
    name = f.get_str("name")
    args = f.args
    if not args and not name:
        raise CommandError("Service registration requires at least one argument or flags.")
    if args and name:
        raise CommandError("Service registration requires arguments or -id, not both.")
    if args:
        services = _services_from_files(args)
    else:
        svc: dict[str, object] = {}
        for key, value in (
            ("Kind", f.get_str("kind")),
            ("ID", f.get_str("id")),
            ("Name", name),
            ("Tags", list(f.get_list("tag"))),
            ("Port", f.get_int("port")),
            ("Address", f.get_str("address")),
            ("SocketPath", f.get_str("socket")),
            ("TaggedAddresses", dict(sorted(tagged.items()))),
            ("Meta", dict(sorted(meta.items()))),
        ):
            if value:  # omitempty
                svc[key] = value
        svc["Check"] = None
        svc["Checks"] = None
        services = [svc]
    api = ctx.client()
    for svc in services:
        svc_name = _as_str(svc.get("Name"))
        try:
            api.call("PUT", "/v1/agent/service/register", body=svc)
        except ApiError as e:
            raise CommandError(f"Error registering service {_go_quote(svc_name)}: {e}") from None
        _out(f"Registered service: {svc_name}")
    return 0


def _run_services_deregister(ctx: _Context) -> int:
    flag_id = ctx.flags.get_str("id")
    args = ctx.flags.args
    if not args and not flag_id:
        raise CommandError("Service deregistration requires at least one argument or -id.")
    if args and flag_id:
        raise CommandError("Service deregistration requires arguments or -id, not both.")
    services = _services_from_files(args) if args else [{"ID": flag_id}]
    api = ctx.client()
    for svc in services:
        svc_id = _as_str(svc.get("ID")) or _as_str(svc.get("Name"))
        if not svc_id:
            continue
        try:
            api.call("PUT", f"/v1/agent/service/deregister/{svc_id}")
        except ApiError as e:
            svc_name = _go_quote(_as_str(svc.get("Name")))
            raise CommandError(f"Error deregistering service {svc_name}: {e}") from None
        _out(f"Deregistered service: {svc_id}")
    return 0


# --------------------------------------------------------------------------------------
# watch
# --------------------------------------------------------------------------------------

WATCH_WAIT_S = 300.0
"""The blocking wait sent as ``?wait=`` with each indexed query (Consul's server default)."""
WATCH_SLACK_S = 10.0
"""Added to ``wait + wait/16`` (the server's jitter) for each query's client timeout."""
WATCH_RETRY_BASE_S = 5.0
"""api/watch/plan.go ``retryInterval``: an error waits base * failures², at most…"""
WATCH_RETRY_MAX_S = 180.0
"""…``maxBackoffTime``."""
_WATCH_MAX_ROUNDS: int | None = None
"""Tests only: stop after this many queries (the exit status is then the plan's)."""

_HEALTH_STATES = ("any", "warning", "critical", "passing")


@dataclass
class _WatchQuery:
    """A parsed watch plan (api/watch ``Parse`` and the type's factory in funcs.go)."""

    type: str
    key: str = ""
    prefix: str = ""
    service: str = ""
    tags: tuple[str, ...] = ()
    passing_only: bool = False
    state: str = ""
    name: str = ""
    stale: bool = False
    filter: str = ""

    def fetch(self, api: ApiClient, last: int | None, timeout_s: float) -> tuple[int, object]:
        """One query: the new index and the result handed to the handler."""
        params: list[tuple[str, str]] = []
        if last:
            params += [("index", str(last)), ("wait", f"{int(WATCH_WAIT_S * 1000)}ms")]
        if self.stale:
            params.append(("stale", ""))
        if self.filter:
            params.append(("filter", self.filter))
        match self.type:
            case "key":
                raw, index = _read(
                    api, _kv_path(self.key), params, nil_on_404=True, timeout_s=timeout_s
                )
                pairs = _list_of(raw, "[]*api.KVPair")
                return index, (pairs[0] if pairs else None)
            case "keyprefix":
                params.append(("recurse", ""))
                raw, index = _read(
                    api, _kv_path(self.prefix), params, nil_on_404=True, timeout_s=timeout_s
                )
                return index, raw
            case "services":
                return _swap(_read(api, "/v1/catalog/services", params, timeout_s=timeout_s))
            case "nodes":
                return _swap(_read(api, "/v1/catalog/nodes", params, timeout_s=timeout_s))
            case "service":
                params += [("tag", t) for t in self.tags]
                if self.passing_only:
                    params.append(("passing", "1"))
                path = f"/v1/health/service/{self.service}"
                return _swap(_read(api, path, params, timeout_s=timeout_s))
            case "checks":
                if self.state:
                    path = f"/v1/health/state/{self.state}"
                else:
                    path = f"/v1/health/checks/{self.service}"
                return _swap(_read(api, path, params, timeout_s=timeout_s))
            case _:  # event
                if self.name:
                    params.append(("name", self.name))
                raw, index = _read(api, "/v1/event/list", params, timeout_s=timeout_s)
                events = _list_of(raw, "[]*api.UserEvent")
                for i, event in enumerate(events):  # prune to the events after the last one
                    if last is not None and _event_index(_as_dict(event).get("ID")) == last:
                        events = events[i + 1 :]
                        break
                return index, raw if raw is None else events


def _swap(pair: tuple[object, int]) -> tuple[int, object]:
    return pair[1], pair[0]


def _event_index(event_id: object) -> int | None:
    """api ``Event.IDToIndex``: the two halves of the UUID XORed."""
    u = _as_str(event_id)
    try:
        lower = int(u[0:8] + u[9:13] + u[14:18], 16)
        upper = int(u[19:23] + u[24:36], 16)
    except ValueError:
        return None
    return lower ^ upper


def _parse_watch(params: dict[str, object]) -> _WatchQuery:
    """api/watch ``Parse``: generic keys, the type's own, then nothing may be left over.
    ValueError with its messages."""
    params = dict(params)
    for generic in ("datacenter", "token"):
        params.pop(generic, None)
    watch_type = _as_str(params.pop("type", ""))
    if not watch_type:
        raise ValueError("Watch type must be specified")
    q = _WatchQuery(type=watch_type)

    def take_str(name: str) -> str:
        return _as_str(params.pop(name, ""))

    def take_bool(name: str) -> bool:
        return bool(params.pop(name, False))

    match watch_type:
        case "key":
            q.stale = take_bool("stale")
            q.key = take_str("key")
            if not q.key:
                raise ValueError("Must specify a single key to watch")
        case "keyprefix":
            q.stale = take_bool("stale")
            q.prefix = take_str("prefix")
            if not q.prefix:
                raise ValueError("Must specify a single prefix to watch")
        case "services" | "nodes":
            q.stale = take_bool("stale")
            q.filter = take_str("filter")
        case "service":
            q.stale = take_bool("stale")
            q.filter = take_str("filter")
            q.service = take_str("service")
            if not q.service:
                raise ValueError("Must specify a single service to watch")
            tags = params.pop("tag", ())
            q.tags = tuple(tags) if isinstance(tags, (list, tuple)) else ()
            q.passing_only = take_bool("passingonly")
        case "checks":
            q.stale = take_bool("stale")
            q.filter = take_str("filter")
            q.service, q.state = take_str("service"), take_str("state")
            if q.service and q.state:
                raise ValueError("Cannot specify service and state")
            if not q.service and not q.state:
                q.state = "any"
        case "event":
            q.name = take_str("name")
        case "connect_roots":
            pass
        case "connect_leaf":
            q.service = take_str("service")
        case "agent_service":
            take_str("service_id")
        case _:
            raise ValueError(f"Unsupported watch type: {watch_type}")
    if params:
        raise ValueError(f"Invalid parameters: [{' '.join(sorted(params))}]")
    return q


class _WatchStopped(Exception):
    """Raised out of whatever the watch was doing when SIGINT or SIGTERM arrived."""


@dataclass
class _WatchState:
    stopped: bool = False
    exit_code: int = 0
    child: subprocess.Popen[bytes] | None = None
    last_result: object = None
    has_result: bool = False
    handler_args: tuple[str, ...] = ()
    shell: bool = True
    watch_type: str = ""
    retries: list[float] = field(default_factory=list)


_GO_SIGNAL_NAMES = {
    signal.SIGINT: "interrupt",
    signal.SIGTERM: "terminated",
    signal.SIGKILL: "killed",
    signal.SIGHUP: "hangup",
    signal.SIGQUIT: "quit",
    signal.SIGPIPE: "broken pipe",
}


def _exit_text(returncode: int) -> str:
    """``exec.ExitError`` text: ``exit status 2``, ``signal: killed``."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return f"signal {-returncode}"
    return f"signal: {_GO_SIGNAL_NAMES.get(sig, sig.name.lower())}"


def _handler_command(state: _WatchState) -> list[str]:
    """agent/exec ``Script`` ($SHELL or /bin/sh, ``-c``, the words joined by spaces) or,
    with -shell=false, ``Subprocess``."""
    if state.shell:
        return [os.environ.get("SHELL") or "/bin/sh", "-c", " ".join(state.handler_args)]
    return list(state.handler_args)


def _run_handler(state: _WatchState, index: int, result: object) -> None:
    """command/watch's handler with a child: the result as JSON on its stdin,
    ``CONSUL_INDEX`` in its environment, its stdout and stderr ours. A failure stops the
    watch with exit status 1."""
    cmd = _handler_command(state)
    env = {**os.environ, "CONSUL_INDEX": str(index)}
    payload = (_go_json(result) + "\n").encode("utf-8", "surrogateescape")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env)
    except OSError as e:
        exe = cmd[0]
        if isinstance(e, FileNotFoundError) and "/" not in exe:
            why = f"exec: {_go_quote(exe)}: executable file not found in $PATH"
        else:
            why = f"fork/exec {exe}: {os.strerror(e.errno).lower() if e.errno else e}"
        _err(f"Error starting handler: {why}")
        state.stopped, state.exit_code = True, 1
        return
    state.child = proc  # kept if a stop signal interrupts us, so that we can wait for it
    proc.communicate(payload)
    state.child = None
    if proc.returncode != 0:
        _err(f"Error executing handler: {_exit_text(proc.returncode)}")
        state.stopped, state.exit_code = True, 1


def _print_result(state: _WatchState, result: object) -> None:
    """command/watch without a child: the result once, ``MarshalIndent`` by four spaces,
    and the watch ends. Go sorts map keys, which matters for the ``services`` map."""
    if state.watch_type == "services" and isinstance(result, dict):
        result = dict(sorted(result.items()))
    _print_text(_go_json(result, indent="    "))
    state.stopped = True


def _watch_loop(api: ApiClient, query: _WatchQuery, state: _WatchState) -> None:
    """api/watch/plan.go ``RunWithClientAndHclog``.

    Blocking queries carry ``?index=`` (the last ``X-Consul-Index``) and ``?wait=``; the
    client timeout is ``wait + wait/16`` plus slack. An unchanged index does nothing; an
    index that went backwards is reset to 0 for the next query (Consul's documented rule);
    a changed index runs the handler, the first time always and afterwards only when the
    result differs. An error drops the index and waits base * failures², capped. gossamer
    also treats an index of 0 (header missing) as 1, so such a server is not polled in a
    tight loop.
    """
    timeout_s = WATCH_WAIT_S + WATCH_WAIT_S / 16 + WATCH_SLACK_S
    last: int | None = None
    failures = 0
    rounds = 0
    while not state.stopped:
        if _WATCH_MAX_ROUNDS is not None and rounds >= _WATCH_MAX_ROUNDS:
            return
        rounds += 1
        try:
            index, result = query.fetch(api, last, timeout_s)
        except ApiError as e:
            failures += 1
            last = None
            retry = min(WATCH_RETRY_BASE_S * failures * failures, WATCH_RETRY_MAX_S)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S") + time.strftime("%z")
            _err(
                f"{stamp} [ERROR] watch.watch: Watch errored: type={query.type} "
                f"error={_go_quote(str(e))} retry={format_duration(round(retry * 1e9))}"
            )
            state.retries.append(retry)
            time.sleep(retry)
            continue
        failures = 0
        index = index or 1
        if last is not None and last == index:
            continue
        old = last
        last = 0 if old is not None and index < old else index
        if old is not None and state.has_result and state.last_result == result:
            continue
        state.last_result, state.has_result = result, True
        if state.handler_args:
            _run_handler(state, index, result)
        else:
            _print_result(state, result)


def _run_watch(ctx: _Context) -> int:
    """command/watch. SIGINT and SIGTERM end it with status 0, passed on first to a handler
    that is running. Unlike Consul, an unknown -state for the checks type is refused at
    once (Consul's api refuses it on every query and the watch retries forever)."""
    f = ctx.flags
    watch_type = f.get_str("type")
    if not watch_type:
        raise CommandError(f"Watch type must be specified\n\n{_verb_help(ctx.verb)}")
    api = ctx.client()
    params: dict[str, object] = {"type": watch_type}
    if api.datacenter:
        params["datacenter"] = api.datacenter
    if api.token:
        params["token"] = api.token
    for name in ("key", "prefix", "service", "filter"):
        if f.get_str(name):
            params[name] = f.get_str(name)
    if f.get_list("tag"):
        params["tag"] = list(f.get_list("tag"))
    if f.get_bool("stale"):
        params["stale"] = True
    for name in ("state", "name"):
        if f.get_str(name):
            params[name] = f.get_str(name)
    passing = f.get_str("passingonly")
    if passing:
        try:
            params["passingonly"] = _go_parse_bool(passing)
        except ValueError:
            raise CommandError(
                "Failed to parse passingonly flag: strconv.ParseBool: parsing "
                f"{_go_quote(passing)}: invalid syntax"
            ) from None
    try:
        query = _parse_watch(params)
    except ValueError as e:
        raise CommandError(str(e)) from None
    if query.type.startswith(("connect_", "agent_")):
        raise CommandError(f"Type {query.type} is not supported in the CLI tool")
    if query.type == "checks" and query.state and query.state not in _HEALTH_STATES:
        raise CommandError(f"Unsupported state: {query.state}")
    try:
        api.call("GET", "/v1/status/leader")
    except ApiError as e:
        raise CommandError(f"Error querying Consul agent: {e}") from None
    state = _WatchState(handler_args=tuple(f.args), shell=f.get_bool("shell"))
    state.watch_type = query.type
    restore = _catch_stop_signals(state)
    try:
        try:
            _watch_loop(api, query, state)
        finally:
            state.stopped = True  # from here on a signal no longer raises
    except _WatchStopped:
        child = state.child
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired, _WatchStopped):
                child.wait(timeout=1.0)
        return 0
    finally:
        restore()
    return state.exit_code


def _catch_stop_signals(state: _WatchState) -> Callable[[], None]:
    """SIGINT/SIGTERM: forward to a running handler (agent.ForwardSignals), then end the
    watch (Consul: ``wp.Stop(); os.Exit(0)``). Returns what puts the old handlers back."""

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        child = state.child
        if child is not None and child.poll() is None:
            with contextlib.suppress(OSError):
                child.send_signal(signum)
        if not state.stopped:
            state.stopped = True
            raise _WatchStopped()

    try:
        old_int = signal.signal(signal.SIGINT, on_signal)
        old_term = signal.signal(signal.SIGTERM, on_signal)
    except ValueError:  # not the main thread: leave signals alone
        return lambda: None

    def restore() -> None:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)

    return restore


# --------------------------------------------------------------------------------------
# The verb table
# --------------------------------------------------------------------------------------

_CAS_HELP = (
    "Perform a Check-And-Set operation. Specifying this value also requires the "
    "-modify-index flag to be set. The default value is false."
)
_MODIFY_INDEX_HELP = (
    "Unsigned integer representing the ModifyIndex of the key. This is used in combination "
    "with the -cas flag."
)
_NODE_META_HELP = (
    "Metadata to filter nodes with the given `key=value` pairs. This flag may be specified "
    "multiple times to filter on multiple sources of metadata."
)


def _leaf(
    name: str,
    synopsis: str,
    usage: str,
    run: Callable[[_Context], int],
    *flags: Flag,
) -> Verb:
    return Verb(name, synopsis, usage, run, flags=flags, server_flags=True)


_KV_VERBS = (
    _leaf(
        "put",
        "Sets or updates data in the KV store",
        """
Usage: gossamer kv put [options] KEY [DATA]

  Writes the data to the given path in the key-value store. The data can be of
  any type.

      $ gossamer kv put config/redis/maxconns 5

  The data can also be consumed from a file on disk by prefixing with the "@"
  symbol. For example:

      $ gossamer kv put config/program/license @license.lic

  Or it can be read from stdin using the "-" symbol:

      $ echo "abcd1234" | gossamer kv put config/program/license -

  The DATA argument itself is optional. If omitted, this will create an empty
  key-value pair at the specified path:

      $ gossamer kv put webapp/beta/active

  If the -base64 flag is specified, the data will be treated as base 64
  encoded.

  To perform a Check-And-Set operation, specify the -cas flag with the
  appropriate -modify-index flag corresponding to the key you want to perform
  the CAS operation on:

      $ gossamer kv put -cas -modify-index=844 config/redis/maxconns 5

  Additional flags and more advanced use cases are detailed below.
""",
        _run_kv_put,
        Flag(
            "acquire",
            FlagKind.BOOL,
            "Obtain a lock on the key. If the key does not exist, this operation will create "
            "the key and obtain the lock. The session must already exist and be specified via "
            "the -session flag. The default value is false.",
        ),
        Flag(
            "base64",
            FlagKind.BOOL,
            "Treat the data as base 64 encoded. The default value is false.",
        ),
        Flag("cas", FlagKind.BOOL, _CAS_HELP),
        Flag(
            "flags",
            FlagKind.UINT,
            "Unsigned integer value to assign to this key-value pair. This value is not read "
            "by gossamer, so clients can use this value however makes sense for their use "
            "case. The default value is 0 (no flags).",
        ),
        Flag("modify-index", FlagKind.UINT, _MODIFY_INDEX_HELP),
        Flag(
            "release",
            FlagKind.BOOL,
            "Forfeit the lock on the key at the given path. This requires the -session flag "
            "to be set. The key must be held by the session in order to be unlocked. The "
            "default value is false.",
        ),
        Flag(
            "session",
            FlagKind.STRING,
            "User-defined identifer for this session as a string. This is commonly used with "
            "the -acquire and -release operations to build robust locking, but it can be set "
            "on any key. The default value is empty (no session).",
        ),
    ),
    _leaf(
        "get",
        "Retrieves or lists data from the KV store",
        """
Usage: gossamer kv get [options] [KEY_OR_PREFIX]

  Retrieves the value from gossamer's key-value store at the given key name. If no
  key exists with that name, an error is returned. If a key exists with that
  name but has no data, nothing is returned. If the name or prefix is omitted,
  it defaults to "" which is the root of the key-value store.

  To retrieve the value for the key named "foo" in the key-value store:

      $ gossamer kv get foo

  This will return the original, raw value stored in gossamer. To view detailed
  information about the key, specify the "-detailed" flag. This will output all
  known metadata about the key including ModifyIndex and any user-supplied
  flags:

      $ gossamer kv get -detailed foo

  To treat the path as a prefix and list all keys which start with the given
  prefix, specify the "-recurse" flag:

      $ gossamer kv get -recurse foo

  This will return all key-value pairs. To just list the keys which start with
  the specified prefix, use the "-keys" option instead:

      $ gossamer kv get -keys foo
""",
        _run_kv_get,
        Flag("base64", FlagKind.BOOL, "Base64 encode the value. The default value is false."),
        Flag(
            "detailed",
            FlagKind.BOOL,
            "Provide additional metadata about the key in addition to the value such as the "
            "ModifyIndex and any flags that may have been set on the key. The default value "
            "is false.",
        ),
        Flag(
            "keys",
            FlagKind.BOOL,
            "List keys which start with the given prefix, but not their values. This is "
            "especially useful if you only need the key names themselves. This option is "
            "commonly combined with the -separator option. The default value is false.",
        ),
        Flag(
            "recurse",
            FlagKind.BOOL,
            "Recursively look at all keys prefixed with the given path. The default value is "
            "false.",
        ),
        Flag(
            "separator",
            FlagKind.STRING,
            'String to use as a separator between keys. The default value is "/", but this '
            "option is only taken into account when paired with the -keys flag.",
            default="/",
        ),
    ),
    _leaf(
        "delete",
        "Removes data from the KV store",
        """
Usage: gossamer kv delete [options] KEY_OR_PREFIX

  Removes the value from gossamer's key-value store at the given path. If no
  key exists at the path, no action is taken.

  To delete the value for the key named "foo" in the key-value store:

      $ gossamer kv delete foo

  To delete all keys which start with "foo", specify the -recurse option:

      $ gossamer kv delete -recurse foo

  This will delete the keys named "foo", "food", and "foo/bar/zip" if they
  existed.
""",
        _run_kv_delete,
        Flag("cas", FlagKind.BOOL, _CAS_HELP),
        Flag("modify-index", FlagKind.UINT, _MODIFY_INDEX_HELP),
        Flag(
            "recurse",
            FlagKind.BOOL,
            "Recursively delete all keys with the path. The default value is false.",
        ),
    ),
    _leaf(
        "export",
        "Exports a tree from the KV store as JSON",
        """
Usage: gossamer kv export [KEY_OR_PREFIX]

  Retrieves key-value pairs for the given prefix from gossamer's key-value store,
  and writes a JSON representation to stdout. This can be used with the command
  "gossamer kv import" to move entire trees between clusters.

      $ gossamer kv export vault
""",
        _run_kv_export,
    ),
    _leaf(
        "import",
        "Imports a tree stored as JSON to the KV store",
        """
Usage: gossamer kv import [DATA]

  Imports key-value pairs to the key-value store from the JSON representation
  generated by the "gossamer kv export" command.

  The data can be read from a file by prefixing the filename with the "@"
  symbol. For example:

      $ gossamer kv import @filename.json

  Or it can be read from stdin using the "-" symbol:

      $ cat filename.json | gossamer kv import -

  Alternatively the data may be provided as the final parameter to the command,
  though care must be taken with regards to shell escaping.
""",
        _run_kv_import,
        Flag("prefix", FlagKind.STRING, "Key prefix for imported data"),
    ),
)

_CATALOG_VERBS = (
    _leaf(
        "datacenters",
        "Lists all known datacenters",
        """
Usage: gossamer catalog datacenters [options]

  Retrieves the list of all known datacenters. This datacenters are sorted in
  ascending order based on the estimated median round trip time from the servers
  in this datacenter to the servers in the other datacenters.

  To retrieve the list of datacenters:

      $ gossamer catalog datacenters
""",
        _run_catalog_datacenters,
    ),
    _leaf(
        "nodes",
        "Lists all nodes in the given datacenter",
        """
Usage: gossamer catalog nodes [options]

  Retrieves the list nodes registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of nodes:

      $ gossamer catalog nodes

  To print detailed information including full node IDs, tagged addresses, and
  metadata information:

      $ gossamer catalog nodes -detailed

  To list nodes which are running a particular service:

      $ gossamer catalog nodes -service=web

  To filter by node metadata:

      $ gossamer catalog nodes -node-meta="foo=bar"

  To sort nodes by estimated round-trip time from node-web:

      $ gossamer catalog nodes -near=node-web
""",
        _run_catalog_nodes,
        Flag(
            "detailed",
            FlagKind.BOOL,
            "Output detailed information about the nodes including their addresses and metadata.",
        ),
        Flag("filter", FlagKind.STRING, "Filter to use with the request"),
        Flag(
            "near",
            FlagKind.STRING,
            "Node name to sort the node list in ascending order based on estimated "
            'round-trip time from that node. Passing "_agent" will use this agent\'s node for '
            "sorting.",
        ),
        Flag("node-meta", FlagKind.LIST, _NODE_META_HELP),
        Flag(
            "service",
            FlagKind.STRING,
            "Service `id or name` to filter nodes. Only nodes which are providing the given "
            "service will be returned.",
        ),
    ),
    _leaf(
        "services",
        "Lists all registered services in a datacenter",
        """
Usage: gossamer catalog services [options]

  Retrieves the list services registered in a given datacenter. By default, the
  datacenter of the local agent is queried.

  To retrieve the list of services:

      $ gossamer catalog services

  To include the services' tags in the output:

      $ gossamer catalog services -tags

  To list services which run on a particular node:

      $ gossamer catalog services -node=web

  To filter services on node metadata:

      $ gossamer catalog services -node-meta="foo=bar"
""",
        _run_catalog_services,
        Flag("node", FlagKind.STRING, "Node `id or name` for which to list services."),
        Flag(
            "node-meta",
            FlagKind.LIST,
            "Metadata to filter nodes with the given `key=value` pairs. If specified, only "
            "services running on nodes matching the given metadata will be returned. This "
            "flag may be specified multiple times to filter on multiple sources of metadata.",
        ),
        Flag(
            "tags",
            FlagKind.BOOL,
            "Display each service's tags as a comma-separated list beside each service entry.",
        ),
    ),
)

_SERVICES_VERBS = (
    _leaf(
        "register",
        "Register services with the local agent",
        """
Usage: gossamer services register [options] [FILE...]

  Register one or more services using the local agent API. Services can
  be registered from JSON service definition files ({"service": {...}} or
  {"services": [...]}) or using flags. The service is registered and the
  command returns. The caller must remember to call "gossamer services
  deregister" or a similar API to deregister the service when complete.

      $ gossamer services register web.json

  Additional flags and more advanced use cases are detailed below.
""",
        _run_services_register,
        Flag(
            "address",
            FlagKind.STRING,
            "Address of the service to register for arg-based registration.",
        ),
        Flag(
            "id",
            FlagKind.STRING,
            "ID of the service to register for arg-based registration. If this isn't set, it "
            "will default to the -name value.",
        ),
        Flag("kind", FlagKind.STRING, "The services 'kind'"),
        Flag(
            "meta",
            FlagKind.LIST,
            "Metadata to set on the service, formatted as key=value. This flag may be "
            "specified multiple times to set multiple meta fields.",
        ),
        Flag(
            "name", FlagKind.STRING, "Name of the service to register for arg-based registration."
        ),
        Flag("port", FlagKind.INT, "Port of the service to register for arg-based registration."),
        Flag(
            "socket",
            FlagKind.STRING,
            "Path to the Unix domain socket to register for arg-based registration "
            "(conflicts with address and port).",
        ),
        Flag(
            "tag",
            FlagKind.LIST,
            "Tag to add to the service. This flag can be specified multiple times to set "
            "multiple tags.",
        ),
        Flag(
            "tagged-address",
            FlagKind.LIST,
            "Tagged address to set on the service, formatted as key=value. This flag may be "
            "specified multiple times to set multiple addresses.",
        ),
    ),
    _leaf(
        "deregister",
        "Deregister services with the local agent",
        """
Usage: gossamer services deregister [options] [FILE...]

  Deregister one or more services that were previously registered with
  the local agent.

      $ gossamer services deregister web.json db.json

  The -id flag may be used to deregister a single service by ID:

      $ gossamer services deregister -id=web

  Services are deregistered from the local agent catalog. This command must
  be run against the same agent where the service was registered.
""",
        _run_services_deregister,
        Flag("id", FlagKind.STRING, "ID to delete. This must not be set if arguments are given."),
    ),
)

_WATCH_FLAGS = (
    Flag("filter", FlagKind.STRING, "Filter to use with the request"),
    Flag("key", FlagKind.STRING, "Specifies the key to watch. Only for 'key' type."),
    Flag("name", FlagKind.STRING, "Specifies an event name to watch. Only for 'event' type."),
    Flag(
        "passingonly",
        FlagKind.STRING,
        "Specifies if only hosts passing all checks are displayed. Optional for 'service' "
        "type, must be one of `[true|false]`. Defaults false.",
    ),
    Flag(
        "prefix",
        FlagKind.STRING,
        "Specifies the key prefix to watch. Only for 'keyprefix' type.",
    ),
    Flag(
        "service",
        FlagKind.STRING,
        "Specifies the service to watch. Required for 'service' type, optional for 'checks' type.",
    ),
    Flag(
        "shell",
        FlagKind.BOOL,
        "Use a shell to run the command (can set a custom shell via the SHELL environment "
        "variable).",
        default=True,
    ),
    Flag("state", FlagKind.STRING, "Specifies the states to watch. Optional for 'checks' type."),
    Flag(
        "tag",
        FlagKind.LIST,
        "Specifies the service tag(s) to filter on. Optional for 'service' type. May be "
        "specified multiple times",
    ),
    Flag(
        "type",
        FlagKind.STRING,
        "Specifies the watch type. One of key, keyprefix, services, nodes, service, checks, "
        "or event.",
    ),
)

VERBS: tuple[Verb, ...] = (
    Verb(
        "catalog",
        "Interact with the catalog",
        """
Usage: gossamer catalog <subcommand> [options] [args]

  This command has subcommands for interacting with gossamer's catalog. The
  catalog should not be confused with the agent, although the APIs and
  responses may be similar.

  Here are some simple examples, and more detailed examples are available
  in the subcommands or the documentation.

  List all datacenters:

      $ gossamer catalog datacenters

  List all nodes:

      $ gossamer catalog nodes

  List all services:

      $ gossamer catalog services

  For more examples, ask for subcommand help or view the documentation.
""",
        http=False,
        subcommands=_CATALOG_VERBS,
    ),
    Verb(
        "kv",
        "Interact with the key-value store",
        """
Usage: gossamer kv <subcommand> [options] [args]

  This command has subcommands for interacting with gossamer's key-value
  store. Here are some simple examples, and more detailed examples are
  available in the subcommands or the documentation.

  Create or update the key named "redis/config/connections" with the value "5":

      $ gossamer kv put redis/config/connections 5

  Read this value back:

      $ gossamer kv get redis/config/connections

  Or get detailed key information:

      $ gossamer kv get -detailed redis/config/connections

  Finally, delete the key:

      $ gossamer kv delete redis/config/connections

  For more examples, ask for subcommand help or view the documentation.
""",
        http=False,
        subcommands=_KV_VERBS,
    ),
    Verb(
        "services",
        "Interact with services",
        """
Usage: gossamer services <subcommand> [options] [args]

  This command has subcommands for interacting with services. The subcommands
  default to working with services registered with the local agent. Please see
  the "gossamer catalog" command for interacting with the entire catalog.

  For more examples, ask for subcommand help or view the documentation.
""",
        http=False,
        subcommands=_SERVICES_VERBS,
    ),
    Verb(
        "watch",
        "Watch for changes in gossamer",
        """
Usage: gossamer watch [options] [child...]

  Watches for changes in a given data view from gossamer. If a child process
  is specified, it will be invoked with the latest results on changes. Otherwise,
  the latest values are dumped to stdout and the watch terminates.

  Providing the watch type is required, and other parameters may be required
  or supported depending on the watch type.
""",
        _run_watch,
        flags=_WATCH_FLAGS,
        server_flags=True,
    ),
)
