"""The data format from the sandbox to the grader: values round-trip, anything else is refused.

Reading happens in the trusted process, so every malformed or hostile message must be a WireError
(which the grader turns into "crashed"), never another exception, never code run, never a huge
allocation.
"""

import collections
import json
import struct

import numpy as np
import pytest

from course.grader import wire

Point = collections.namedtuple("Point", ["x", "y"])


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -7,
        1 << 70,
        0.1,
        float("inf"),
        1 + 2j,
        "text",
        b"\x00\xff",
        [1, [2, [3]]],
        (1, "a"),
        {"a": 1, 2: [3.5]},
        Point(1, 2.0),
        np.arange(6, dtype=np.int16).reshape(2, 3),
        np.float32(1.5),
        np.zeros((0, 4)),
        np.array([True, False]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_values_round_trip(value):
    got = wire.decode(wire.encode(value))
    if isinstance(value, np.ndarray | np.generic):
        assert isinstance(got, np.ndarray) and got.dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(got, value)
    else:
        assert got == value and type(got) is type(value) or isinstance(value, tuple) and tuple(got) == value


def test_nan_round_trips():
    assert np.isnan(wire.decode(wire.encode(float("nan"))))


@pytest.mark.parametrize(
    "value, named",
    [
        (object(), "builtins.object"),
        (np.array([object()], dtype=object), "dtype object"),
        ({(1, 2): 3}, "dict key of type tuple"),
        (lambda: 0, "function"),
    ],
    ids=["object", "object-array", "tuple-key", "function"],
)
def test_what_is_not_data_is_refused_where_it_is_encoded(value, named):
    with pytest.raises(wire.WireError, match=named):
        wire.encode(value)


def test_a_structure_too_large_to_describe_is_refused_with_advice(monkeypatch):
    # The same check at a limit of 2 MiB instead of 16: a structure of 1M lists, not 8M (seconds, not 20).
    monkeypatch.setattr(wire, "MAX_HEADER_BYTES", 2 << 20)
    with pytest.raises(wire.WireError, match=r"more than 2 MiB\): return numbers as arrays, not as long lists"):
        wire.encode([[] for _ in range(wire.MAX_HEADER_BYTES // 2)])


def _message(header, body: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack(">Q", len(text)) + text + body


@pytest.mark.parametrize(
    "message",
    [
        b"\x00\x01",
        struct.pack(">Q", 100) + b"{}",
        _message(b"\xff\xfe not utf-8"),
        _message(b"{not json"),
        _message(b'{"v": 1, "value": ' + b"9" * 5000 + b"}"),  # Python refuses to parse an int this long
        _message(b"[" * 100_000 + b"]" * 100_000),
        _message({"v": 2, "value": 1}),
        _message({"v": 1, "value": {"$a": [0, 8], "dtype": "object", "shape": [1]}}, b"\x00" * 8),
        _message({"v": 1, "value": {"$a": [0, 800], "dtype": "float64", "shape": [100]}}, b"\x00" * 8),
        _message({"v": 1, "value": {"$a": [0, 8], "dtype": "float64", "shape": [2]}}, b"\x00" * 8),
        _message({"v": 1, "value": {"$a": [0, 8], "dtype": "float64", "shape": [-1]}}, b"\x00" * 8),
        _message({"v": 1, "value": {"$nt": "os.system", "fields": ["a"], "values": [1]}}),
        _message({"v": 1, "value": {"$nt": "P", "fields": ["__class__"], "values": [1]}}),
        _message(
            {"v": 1, "value": {"$key": "evil", "data": {"$a": [0, 8], "dtype": "uint32", "shape": [2]}}}, b"\x00" * 8
        ),
        _message({"v": 1, "value": {"$pickle": "gASVAAAAAAAAAAAu"}}),
        _message({"v": 1, "value": {"$d": [[[1], 2]]}}),
        _message({"v": 1, "value": {"$f": "not a float"}}),
        _message({"v": 1, "value": {"$i": "1e9999"}}),
        _message({"v": 1, "value": json.loads("[" * (wire.MAX_DEPTH + 2) + "]" * (wire.MAX_DEPTH + 2))}),
    ],
    ids=lambda m: repr(m[8:40]),
)
def test_a_malformed_message_is_a_wire_error(message):
    with pytest.raises(wire.WireError):
        wire.decode(message)


def test_a_header_larger_than_the_cap_is_refused_before_it_is_parsed():
    header = b'{"v": 1, "value": [' + b"[]," * (wire.MAX_HEADER_BYTES // 3) + b"[]]}"
    with pytest.raises(wire.WireError, match="MiB"):
        wire.decode(struct.pack(">Q", len(header)) + header)
