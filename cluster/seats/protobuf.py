"""Names in Kubernetes protobuf request bodies, rewritten for a seat without the API's schemas.

Why: kubectl's typed clients (``create job --from``, ``drain``'s evictions,
``debug``) send protobuf, and client-go falls back to JSON only after a 415 to
CBOR, never to protobuf. The answers are asked for as JSON, so only request
bodies are protobuf, and the only names they carry that a seat must have
rewritten sit at fixed field numbers of the envelope (``runtime.Unknown``:
``raw`` is field 2), the object (``metadata`` is field 1), ``ObjectMeta``
(``name`` 1, ``namespace`` 3) and ``PodSpec`` (``nodeName`` 10, under a Pod's
``spec``, field 2). The protobuf wire format is walked generically; a field
that is not there is left alone.
"""
from __future__ import annotations

from typing import Callable

MAGIC = b"k8s\x00"
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5

Field = tuple[int, int, "int | bytes"]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def parse(buf: bytes) -> list[Field]:
    fields: list[Field] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
            fields.append((number, wire, value))
        elif wire == _LEN:
            size, pos = _varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("truncated field")
            fields.append((number, wire, buf[pos:pos + size]))
            pos += size
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            fields.append((number, wire, buf[pos:pos + size]))
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def encode(fields: list[Field]) -> bytes:
    out = bytearray()
    for number, wire, value in fields:
        out += _put_varint(number << 3 | wire)
        if wire == _VARINT:
            out += _put_varint(int(value))
        elif wire == _LEN:
            assert isinstance(value, bytes)
            out += _put_varint(len(value)) + value
        else:
            assert isinstance(value, bytes)
            out += value
    return bytes(out)


def rewrite_at(message: bytes, path: tuple[int, ...], change: Callable[[str], str]) -> bytes:
    """``message`` with the string at field path ``path`` passed through ``change`` (absent: unchanged)."""
    fields = parse(message)
    head, rest = path[0], path[1:]
    out: list[Field] = []
    for number, wire, value in fields:
        if number == head and wire == _LEN and isinstance(value, bytes):
            value = rewrite_at(value, rest, change) if rest else change(value.decode()).encode()
        out.append((number, wire, value))
    return encode(out)


def rewrite_body(body: bytes, resource: str | None, namespace: Callable[[str], str],
                 node: Callable[[str], str]) -> bytes:
    """The envelope with the object's namespace (and a Namespace's name, a Pod's node) rewritten."""
    if not body.startswith(MAGIC):
        raise ValueError("not a Kubernetes protobuf body")
    unknown = body[len(MAGIC):]
    fields = parse(unknown)
    out: list[Field] = []
    for number, wire, value in fields:
        if number == 2 and wire == _LEN and isinstance(value, bytes):  # runtime.Unknown.raw: the object
            value = rewrite_at(value, (1, 3), lambda ns: namespace(ns) if ns else ns)
            if resource == "namespaces":
                value = rewrite_at(value, (1, 1), lambda name: namespace(name) if name else name)
            if resource == "pods":
                value = rewrite_at(value, (2, 10), lambda name: node(name) if name else name)
        out.append((number, wire, value))
    return MAGIC + encode(out)
