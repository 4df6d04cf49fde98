"""Hidden inputs hide every point: a lab that implements nothing and answers from a table of what the
visible tests asked and what the solution answered scores 0 under a hidden seed.

For each lab, a *recorder* (the solution, each of its functions wrapped) is graded at seed 0, and writes
down every call the graded tests made — its arguments (hashed) and the solution's answer, where that
answer is data. The *tabled* lab is then written from that record alone: each function looks its
arguments up and returns the recorded answer, a function whose recorded answer has the shape of one of
its arguments (``train``, ``fit``: state in, state out) returns that argument unchanged, and every other
call raises. At seed 0 the tabled lab scores what the table covers (reported for contrast); under a
hidden seed it must score 0 on every lab.

Minutes on 2 cores (every lab's solution is graded once more, to record it), so it runs with the other
big gradings (`python -m nox -s e2e`).
"""

import base64
import pickle
import zlib
from pathlib import Path

import pytest

from course import labs
from course.grader import grade

pytestmark = pytest.mark.solutions_only

HIDDEN_SEED = 4242

# Shared by the recorder and the tabled lab (each is a lab file of its own, so the code is pasted in).
COMMON = r'''
import hashlib as _hashlib
import types as _types

import jax as _jax
import numpy as _np


class NotData(Exception):
    """An answer that is not plain data (a model, a function): a table cannot hold it."""


def _canon(v, h, depth=0):
    """Feed a canonical description of ``v`` to the hash ``h``; LookupError for what has no stable value."""
    if depth > 40:
        raise LookupError("too deep")
    if isinstance(v, _jax.core.Tracer):
        raise LookupError("a traced value")
    name = getattr(v, "_lab_name", None)
    if isinstance(name, str):  # one of the lab's own functions, passed as an argument (lab.step)
        h.update(b"lab:" + name.encode())
    elif v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        h.update(repr((type(v).__name__, v)).encode())
    elif isinstance(v, (list, tuple)):
        h.update(f"{type(v).__name__}[{len(v)}".encode())
        for x in v:
            _canon(x, h, depth + 1)
        h.update(b"]")
    elif isinstance(v, dict):
        h.update(f"dict[{len(v)}".encode())
        for k in sorted(v, key=repr):
            _canon(k, h, depth + 1)
            _canon(v[k], h, depth + 1)
        h.update(b"]")
    elif isinstance(v, _jax.Array) and _jax.dtypes.issubdtype(v.dtype, _jax.dtypes.prng_key):
        h.update(b"key")
        _canon(_jax.random.key_data(v), h, depth + 1)
    elif isinstance(v, (_np.ndarray, _np.generic, _jax.Array)):
        a = _np.asarray(v)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(_np.ascontiguousarray(a).tobytes())
    elif isinstance(v, _types.CodeType):
        h.update(v.co_code)
        _canon([c for c in v.co_consts], h, depth + 1)
        _canon(list(v.co_names), h, depth + 1)
    elif callable(v) and getattr(v, "__code__", None) is not None:  # a test's function or lambda
        h.update(f"fn:{getattr(v, '__qualname__', '')}".encode())
        _canon(v.__code__, h, depth + 1)
        for cell in v.__closure__ or ():
            try:
                _canon(cell.cell_contents, h, depth + 1)
            except (LookupError, ValueError):
                h.update(b"?")
    elif callable(v) and getattr(v, "__wrapped__", None) is not None:  # jnp.sin and the like
        h.update(f"wrapped:{getattr(v, '__qualname__', '')}".encode())
        _canon(v.__wrapped__, h, depth + 1)
    else:  # another object: its pytree leaves if it has any, else only its type
        leaves, treedef = _jax.tree_util.tree_flatten(v)
        h.update(f"{type(v).__module__}.{type(v).__qualname__}".encode())
        if not (len(leaves) == 1 and leaves[0] is v):
            h.update(str(treedef).encode())
            _canon(leaves, h, depth + 1)


def _key(args, kwargs):
    h = _hashlib.sha256()
    _canon((tuple(args), dict(kwargs)), h)
    return h.hexdigest()


def _data(v, depth=0):
    """``v`` as plain data (numpy arrays, numbers, strings, lists, tuples, dicts), or NotData."""
    if depth > 40:
        raise NotData("too deep")
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return v
    if isinstance(v, _jax.Array) and _jax.dtypes.issubdtype(v.dtype, _jax.dtypes.prng_key):
        raise NotData("a key")
    if isinstance(v, (_np.ndarray, _np.generic, _jax.Array)):
        return _np.asarray(v)
    if isinstance(v, (list, tuple)):
        return type(v)(_data(x, depth + 1) for x in v) if type(v) in (list, tuple) else tuple(_data(x) for x in v)
    if isinstance(v, dict):
        return {k: _data(x, depth + 1) for k, x in v.items()}
    raise NotData(type(v).__name__)


def _shape(v):
    """The structure of ``v``: containers, and each array's shape and dtype."""
    if isinstance(v, (list, tuple)):
        return ("seq", len(v), tuple(_shape(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((repr(k), _shape(x)) for k, x in v.items())))
    if isinstance(v, (_np.ndarray, _np.generic, _jax.Array)) and not isinstance(v, _jax.core.Tracer):
        try:
            a = _np.asarray(v)
        except Exception:
            return ("?",)
        return ("array", a.shape, a.dtype.str)
    return ("other", type(v).__name__)
'''

RECORDER = '''"""Recorder of {lab}: the solution, every call of its functions written down."""
import importlib.util as _util
import pickle as _pickle
{common}
_spec = _util.spec_from_file_location("_recorded_{lab}", {solution!r})
_solution = _util.module_from_spec(_spec)
_spec.loader.exec_module(_solution)
globals().update({{k: v for k, v in vars(_solution).items() if not k.startswith("__")}})


def _recording(name, fn):
    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        try:
            entry = (name, _key(args, kwargs), _data(result), _shape(result))
        except (LookupError, NotData):
            entry = (name, None, None, _shape(result))
        with open({record!r}, "ab") as f:
            _pickle.dump(entry, f)
        return result

    wrapper._lab_name = name
    wrapper.__name__ = wrapper.__qualname__ = name
    return wrapper


for _name in {functions!r}:
    globals()[_name] = _recording(_name, getattr(_solution, _name))
'''

TABLED = '''"""{lab}, tabled: no implementation, only the answers the visible tests were given."""
import base64 as _base64
import pickle as _pickle
import zlib as _zlib
{common}
_TABLE = _pickle.loads(_zlib.decompress(_base64.b64decode({blob!r})))


def _answering(name):
    def tabled(*args, **kwargs):
        try:
            key = _key(args, kwargs)
        except LookupError:
            key = None
        answers = _TABLE["exact"].get(name, {{}})
        if key is not None and answers.get(key) is not None:
            return answers[key]
        for result in _TABLE["shapes"].get(name, []):  # state in, state out: hand the state back untouched
            for arg in list(args) + list(kwargs.values()):
                if _shape(arg) == result:
                    return arg
                if result[0] == "seq" and result[1] >= 1 and _shape(arg) == result[2][0]:
                    rest = _TABLE["rest"].get(name)
                    if rest is not None and len(rest) == result[1] - 1:
                        return (arg, *rest)
        raise LookupError(f"{{name}}: these arguments are not in the table")

    tabled._lab_name = name
    tabled.__name__ = tabled.__qualname__ = name
    return tabled


for _name in _TABLE["names"]:
    globals()[_name] = _answering(_name)
'''


def _functions(solution: Path) -> list[str]:
    """The lab's public functions and classes (what a student's file defines), read from the solution."""
    module = labs.import_file(solution)
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == module.__name__
    )


def _table(record: Path, names: list[str]) -> bytes:
    """The tabled lab's table from the recorder's record: exact answers, and answers' shapes."""
    exact: dict[str, dict] = {}
    shapes: dict[str, list] = {}
    rest: dict[str, tuple] = {}
    with record.open("rb") as f:
        while True:
            try:
                name, key, value, shape = pickle.load(f)
            except EOFError:
                break
            if key is not None and value is not None:
                known = exact.setdefault(name, {})
                if key in known and not _same(known[key], value):
                    known[key] = None  # the same question answered two ways: the table cannot say
                else:
                    known.setdefault(key, value)
            if shape not in shapes.setdefault(name, []):
                shapes[name].append(shape)
            if isinstance(value, tuple) and len(value) > 1 and name not in rest:
                rest[name] = value[1:]
    table = {"names": names, "exact": exact, "shapes": shapes, "rest": rest}
    return base64.b64encode(zlib.compress(pickle.dumps(table), 9))


def _same(a, b) -> bool:
    import numpy as np

    try:
        return pickle.dumps(a) == pickle.dumps(b) or bool(np.array_equal(a, b))
    except Exception:  # noqa: BLE001 - ragged structures: not the same
        return False


@pytest.mark.parametrize("lab", list(labs.lab_files("solutions")))
def test_a_tabled_lab_scores_zero_under_a_hidden_seed(tmp_path, lab):
    solution = labs.lab_files("solutions")[lab]
    names = _functions(solution)
    (tmp_path / "recorder").mkdir()
    record = tmp_path / "record.pickle"
    (tmp_path / "recorder" / solution.name).write_text(
        RECORDER.format(lab=lab, common=COMMON, solution=str(solution), record=str(record), functions=names)
    )
    recorded = grade([lab], impl=tmp_path / "recorder", timeout=120, budget="off", sandbox_user="none")
    assert recorded.score == recorded.max_score > 0, [(o.name, o.status, o.message) for o in recorded.outcomes]
    assert record.exists(), "the recorder wrote nothing down"

    (tmp_path / "tabled").mkdir()
    blob = _table(record, names).decode()
    (tmp_path / "tabled" / solution.name).write_text(TABLED.format(lab=lab, common=COMMON, blob=blob))
    visible = grade([lab], impl=tmp_path / "tabled", timeout=60, budget="off", sandbox_user="none")
    hidden = grade([lab], impl=tmp_path / "tabled", timeout=60, budget="off", sandbox_user="none", seed=HIDDEN_SEED)
    passed = [o.name for o in visible.outcomes if o.status == "passed"]
    print(f"{lab}: tabled {visible.score:g}/{visible.max_score:g} at seed 0 ({len(passed)} tests), ", end="")
    print(f"{hidden.score:g}/{hidden.max_score:g} under seed {HIDDEN_SEED}")
    assert visible.score > 0, f"{lab}: the table answers none of the visible tests: the recording is broken"
    leaked = [f"{o.name}: {o.status}" for o in hidden.outcomes if o.status == "passed"]
    assert hidden.score == 0, f"{lab}: answers tabled from the visible tests pass under seed {HIDDEN_SEED}: {leaked}"
