"""The data format in which values cross from the sandbox to the grader: it cannot run code when read.

What a student's code returns is untrusted, so it travels as data only — never pickle. A message is a
JSON header describing the value, followed by the raw bytes of its arrays::

    [8 bytes: header length][header: UTF-8 JSON][array buffers, back to back]

Values that can travel: ``None``, bools, ints, floats, complex numbers, strings, bytes, lists, tuples,
named tuples, dicts (string or integer keys), numpy arrays and scalars of numeric or boolean dtype,
and JAX arrays (sent as numpy; typed PRNG keys as their key data). Anything else is refused where it
is encoded, with a message naming its type. Reading checks every offset, dtype and shape, so a
malformed or hostile message is a :class:`WireError`, never a crash or an allocation without bound.
"""

from __future__ import annotations

import collections
import json
import keyword
import os
import struct
from typing import Any

import numpy as np

MAX_BYTES = 1 << 30  # a message larger than 1 GiB is refused
# The JSON header describes the value; the arrays' bytes follow it. Parsed JSON takes ~20x its size in
# Python objects (``[[],[],...]``), so the header is capped well below MAX_BYTES.
MAX_HEADER_BYTES = 16 << 20
MAX_DEPTH = 64  # containers nested deeper than this are refused
_HEAD = struct.Struct(">Q")
FRAME = _HEAD  # a frame on a pipe: 8-byte length, then the message
# Numeric and boolean dtypes only: an object dtype would be pickle in disguise.
_DTYPES = {
    name: np.dtype(name)
    for name in (
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}
try:  # JAX's extra float types (bfloat16, ...) come from ml_dtypes, which JAX depends on.
    import ml_dtypes

    for _name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        _DTYPES[_name] = np.dtype(getattr(ml_dtypes, _name))
except ImportError:  # pragma: no cover - ml_dtypes is always there with JAX
    pass
_KEY_IMPLS = {"threefry2x32", "rbg", "unsafe_rbg"}


class WireError(ValueError):
    """A value that cannot be sent, or a message that is not a well-formed one."""


class PRNGKeyData:
    """Placeholder for a typed PRNG key array received without JAX imported: its impl and raw data."""

    def __init__(self, impl: str, data: np.ndarray) -> None:
        self.impl, self.data = impl, data

    def __repr__(self) -> str:
        return f"PRNGKeyData({self.impl!r}, shape={self.data.shape})"


# ---------------------------------------------------------------------------------------------------
# Framing: 8-byte length, then the payload.


def read_frame(fd: int, limit: int = MAX_BYTES) -> bytes | None:
    head = _read_exactly(fd, FRAME.size)
    if head is None:
        return None
    (n,) = FRAME.unpack(head)
    if n > limit:
        raise OSError(f"a frame of {n} bytes")
    return _read_exactly(fd, n)


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(FRAME.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data) :]


# ---------------------------------------------------------------------------------------------------
# Writing (in the sandbox)


def encode(value: Any) -> bytes:
    """``value`` as one message; raises :class:`WireError` naming what cannot be sent."""
    buffers: list[bytes] = []
    offset = [0]

    def array(arr: np.ndarray) -> dict:
        arr = np.asarray(arr, order="C")  # (not ascontiguousarray, which makes a scalar 1-d)
        if arr.dtype.name not in _DTYPES or arr.dtype.hasobject:
            raise WireError(f"an array of dtype {arr.dtype} cannot be sent back (numbers and booleans only)")
        data = arr.tobytes()
        buffers.append(data)
        node = {"$a": [offset[0], len(data)], "dtype": arr.dtype.name, "shape": list(arr.shape)}
        offset[0] += len(data)
        if offset[0] > MAX_BYTES:
            raise WireError(f"the value is larger than {MAX_BYTES >> 20} MiB")
        return node

    def walk(v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"the value is nested more than {MAX_DEPTH} levels deep")
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, int):
            return {"$i": str(v)} if abs(v) >= 1 << 53 else v
        if isinstance(v, float):
            return {"$f": repr(v)}  # repr round-trips exactly, nan and inf included
        if isinstance(v, complex):
            return {"$c": [repr(v.real), repr(v.imag)]}
        if isinstance(v, bytes):
            return {"$b": array(np.frombuffer(v, np.uint8))["$a"]}
        if isinstance(v, (np.ndarray, np.generic)):
            return array(np.asarray(v))
        if _is_jax_array(v):
            return _jax_array(v, array)
        if isinstance(v, tuple) and hasattr(v, "_fields"):
            return {"$nt": type(v).__name__, "fields": list(v._fields), "values": [walk(x, depth + 1) for x in v]}
        if isinstance(v, tuple):
            return {"$t": [walk(x, depth + 1) for x in v]}
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        if isinstance(v, dict):
            items = []
            for k, x in v.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise WireError(f"a dict key of type {type(k).__name__} cannot be sent back (str or int keys only)")
                items.append([k, walk(x, depth + 1)])
            return {"$d": items}
        raise WireError(
            f"a value of type {type(v).__module__}.{type(v).__qualname__} cannot be sent back "
            "(arrays, numbers, strings and lists/tuples/dicts of them can)"
        )

    header = json.dumps({"v": 1, "value": walk(value, 0)}, allow_nan=False).encode()
    if len(header) > MAX_HEADER_BYTES:
        raise WireError(
            f"the value's structure takes {len(header) >> 20} MiB to describe (more than "
            f"{MAX_HEADER_BYTES >> 20} MiB): return numbers as arrays, not as long lists"
        )
    return b"".join([_HEAD.pack(len(header)), header, *buffers])


def _is_jax_array(v: Any) -> bool:
    module = type(v).__module__ or ""
    return module.startswith("jax") and hasattr(v, "shape") and hasattr(v, "dtype")


def _jax_array(v: Any, array) -> dict:
    import jax

    if jax.dtypes.issubdtype(v.dtype, jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(v))
        name = next((n for n in _KEY_IMPLS if n in impl), impl)
        return {"$key": name, "data": array(np.asarray(jax.random.key_data(v)))}
    return array(np.asarray(v))


# ---------------------------------------------------------------------------------------------------
# Reading (in the grader)


def decode(message: bytes) -> Any:
    """The value in ``message``; raises :class:`WireError` if it is not a well-formed message."""
    if len(message) < _HEAD.size:
        raise WireError("a truncated message")
    (n,) = _HEAD.unpack_from(message)
    if n > len(message) - _HEAD.size:
        raise WireError("a message whose header runs past its end")
    if n > MAX_HEADER_BYTES:
        raise WireError(f"a header of {n} bytes (more than {MAX_HEADER_BYTES >> 20} MiB: return arrays, not lists)")
    try:
        header = json.loads(message[_HEAD.size : _HEAD.size + n].decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, an integer of 5000 digits
        raise WireError(f"a message whose header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != 1 or "value" not in header:
        raise WireError("a message without a version-1 header")
    return _Reader(memoryview(message)[_HEAD.size + n :]).walk(header["value"], 0)


class _Reader:
    """A message's value read from its header's nodes, its arrays and bytes from the ``body`` after it."""

    def __init__(self, body: memoryview) -> None:
        self.body = body

    def buffer(self, span: Any) -> memoryview:
        if not (
            isinstance(span, list)
            and len(span) == 2
            and all(type(i) is int and i >= 0 for i in span)
            and span[0] + span[1] <= len(self.body)
        ):
            raise WireError(f"an array span {span!r} outside the message")
        return self.body[span[0] : span[0] + span[1]]

    def array(self, node: dict) -> np.ndarray:
        dtype, shape = _DTYPES.get(node.get("dtype")), node.get("shape")
        if dtype is None:
            raise WireError(f"an array of unknown dtype {node.get('dtype')!r}")
        if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
            raise WireError(f"an array of invalid shape {shape!r}")
        data = self.buffer(node["$a"])
        if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != len(data):
            raise WireError(f"an array of shape {shape} and dtype {dtype} with {len(data)} bytes")
        return np.frombuffer(data, dtype).reshape(tuple(shape)).copy()

    def walk(self, v: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise WireError(f"a value nested more than {MAX_DEPTH} levels deep")
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, list):
            return [self.walk(x, depth + 1) for x in v]
        if not isinstance(v, dict) or len(v) == 0:
            raise WireError(f"an unexpected node {v!r:.80}")
        try:
            return self.node(v, depth)
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, WireError):
                raise
            raise WireError(f"a malformed node {v!r:.80}: {exc}") from None

    def node(self, v: dict, depth: int) -> Any:
        """A tagged node: an array, a number JSON cannot hold, bytes, a tuple, a dict, a named tuple, a key."""
        if "$a" in v:
            return self.array(v)
        if "$f" in v:
            return float(v["$f"])
        if "$i" in v:
            return int(v["$i"])
        if "$c" in v:
            return complex(float(v["$c"][0]), float(v["$c"][1]))
        if "$b" in v:
            return bytes(self.buffer(v["$b"]))
        if "$t" in v:
            return tuple(self.walk(x, depth + 1) for x in v["$t"])
        if "$d" in v:
            out = {}
            for k, x in v["$d"]:
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise WireError(f"a dict key {k!r:.40}")
                out[k] = self.walk(x, depth + 1)
            return out
        if "$nt" in v:
            return _namedtuple(v["$nt"], v["fields"])(*(self.walk(x, depth + 1) for x in v["values"]))
        if "$key" in v:
            return _key(v["$key"], self.array(v["data"]))
        raise WireError(f"an unexpected node {v!r:.80}")


def _namedtuple(name: Any, fields: Any):
    names = [name, *fields] if isinstance(fields, list) else [None]
    if not all(
        isinstance(n, str) and n.isidentifier() and not keyword.iskeyword(n) and not n.startswith("_") for n in names
    ) or len(set(fields)) != len(fields):
        raise WireError(f"a named tuple with invalid names {name!r}, {fields!r}")
    return _NAMEDTUPLES.setdefault((name, tuple(fields)), collections.namedtuple(name, fields))


_NAMEDTUPLES: dict[tuple, type] = {}


def _key(impl: Any, data: np.ndarray):
    if impl not in _KEY_IMPLS:
        raise WireError(f"a PRNG key of unknown implementation {impl!r}")
    try:
        import jax
    except ImportError:  # pragma: no cover - the grader always has JAX
        return PRNGKeyData(impl, data)
    return jax.random.wrap_key_data(data, impl=impl)
