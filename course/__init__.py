"""Make You Dangerous: a deep-learning course in JAX.

The ``course`` package is the library the labs import: synthetic data, plotting, the lab registry,
the stub generator (``course assign``) and the autograder (``course grade``).
"""

__version__ = "0.1.0"


def check(lab: str, *functions: str, **options):
    """Grade the notebook's current code for ``lab`` (or the tests of ``functions``), inline.

    ``from course import check; check("lab01", "sigmoid")``: see :func:`course.notebooks.check`.
    """
    from course.notebooks import check as _check

    return _check(lab, *functions, **options)


def warm_up(lab: str | None = None) -> None:
    """Start the grader's processes in the background, so that the first ``check`` answers fast.

    A notebook's setup cell calls it: see :func:`course.notebooks.warm_up`.
    """
    from course.notebooks import warm_up as _warm_up

    _warm_up(lab)
