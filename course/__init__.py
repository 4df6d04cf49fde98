"""Make You Dangerous: a deep-learning course in JAX.

The package has three rooms (``docs/architecture.md``):

* ``course`` itself, what the labs import: data (``datasets``, ``mnist``, ``vgg16``), ``plotting``,
  ``images``, ``layers``, ``training`` (and its pure core ``train_core``), the lab registry ``labs``
  and ``errors``. A student reads these; they import nothing from the other two rooms.
* ``course.grader``, the autograder: the trusted pytest process and its plugin, the sandbox, the
  graded tests' assertions (``course.grader.testing``) and the student's ``check()``.
* ``course.staff``, the staff's tooling: ``assign`` (stubs), ``notebooks``, ``release``,
  ``gradescope``, ``running`` and the command line (``cli``).

``course.check`` and ``course.warm_up`` are the notebook's two doors into the grader, imported only
when called.
"""

__version__ = "0.1.0"


def check(lab: str, *functions: str, **options):
    """Grade the notebook's current code for ``lab`` (or the tests of ``functions``), inline.

    ``from course import check; check("lab01", "sigmoid")``: see :func:`course.grader.check.check`.
    """
    from course.grader.check import check as _check

    return _check(lab, *functions, **options)


def warm_up(lab: str | None = None) -> None:
    """Start the grader's processes in the background, so that the first ``check`` answers fast.

    A notebook's setup cell calls it: see :func:`course.grader.check.warm_up`.
    """
    from course.grader.check import warm_up as _warm_up

    _warm_up(lab)
