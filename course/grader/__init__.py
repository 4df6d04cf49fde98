"""The autograder: grades decided where student code never runs.

A trusted pytest process runs the graded tests and decides every status; the student's lab runs in a
sandbox process (its own session, resource limits, an unprivileged user when we are root) and only
data comes back from it. See :mod:`course.grader.model` for its words (statuses, outcomes, settings),
:mod:`course.grader.runner` for the flow, :mod:`course.grader.outside`
for the sandbox as the tests see it, and :mod:`course.grader.wire` for the data format.
"""

from course.grader.model import Outcome, Report, Settings, Status
from course.grader.runner import grade

__all__ = ["Outcome", "Report", "Settings", "Status", "grade"]
