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
