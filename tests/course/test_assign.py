"""`course assign`: stubs generated from the solutions, and labs/ kept in step with them."""

import ast
import textwrap

import pytest

from course import labs
from course.errors import CourseError
from course.staff import assign

SOLUTION = textwrap.dedent('''
    """A lab."""
    import math

    def area(r):
        """Area of a circle of radius r."""
        # BEGIN SOLUTION
        return math.pi * r * r
        # END SOLUTION

    class Shape:
        def perimeter(self, r):
            # BEGIN SOLUTION
            return 2 * math.pi * r
            # END SOLUTION

    # BEGIN SOLUTION constants
    TAU = 2 * math.pi
    # END SOLUTION
''')


def _write(tmp_path, text, name="lab07_shapes.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_regions_replace_code_and_keep_everything_else(tmp_path):
    stub = assign.stub_source(_write(tmp_path, SOLUTION))
    assert 'raise NotImplementedError("lab07: area")' in stub
    # Methods are named with their class, and the region keeps its own indentation.
    assert '        raise NotImplementedError("lab07: Shape.perimeter")' in stub
    assert 'raise NotImplementedError("lab07: constants")' in stub
    assert "math.pi * r * r" not in stub and "2 * math.pi * r" not in stub and "TAU" not in stub

    # Outside the regions, nothing changes: drop the regions from both and the rest is identical.
    def outside(text):
        keep, inside = [], False
        for line in text.splitlines():
            if "BEGIN SOLUTION" in line or "YOUR CODE HERE" in line:
                inside = True
            elif inside and ("END SOLUTION" in line or "raise NotImplementedError" in line):
                inside = False
            elif not inside:
                keep.append(line)
        return keep

    assert outside(stub) == outside(SOLUTION)
    ast.parse(stub)  # the stub is valid Python


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("def f():\n    # BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("def f():\n    return 1\n    # END SOLUTION\n", "without a BEGIN"),
        ("# BEGIN SOLUTION\nX = 1\n# END SOLUTION\n", "needs a name"),
        (
            "def f():\n    # BEGIN SOLUTION\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION\n",
            "inside the region",
        ),
        ("def f():\n    return 1  # BEGIN SOLUTION\n", "line of its own"),
    ],
    ids=["unclosed", "unopened", "unnamed-module-level", "nested", "trailing-marker"],
)
def test_malformed_markers_are_reported_with_their_line(tmp_path, text, complaint):
    with pytest.raises(CourseError, match=complaint):
        assign.regions(_write(tmp_path, text))


def test_check_reports_stale_and_missing_files(tmp_path):
    sol, out = tmp_path / "solutions", tmp_path / "labs"
    sol.mkdir()
    _write(sol, SOLUTION)
    assert assign.assign(solutions=sol, labs_dir=out, check=True) == ["lab07_shapes.py"]
    assert assign.assign(solutions=sol, labs_dir=out) == ["lab07_shapes.py"]
    assert assign.assign(solutions=sol, labs_dir=out, check=True) == []
    (out / "lab07_shapes.py").write_text("edited by hand\n")
    assert assign.assign(solutions=sol, labs_dir=out, check=True) == ["lab07_shapes.py"]


@pytest.mark.solutions_only
def test_labs_folder_is_generated_from_solutions():
    stale = assign.assign(check=True)
    assert stale == [], f"labs/ is stale, run `course assign`: {stale}"


@pytest.mark.solutions_only
@pytest.mark.parametrize("lab", list(labs.lab_files("solutions")) if labs.has_solutions() else [])
def test_every_solution_has_student_work_and_stubs_name_it(lab):
    path = labs.lab_files("solutions")[lab]
    regions = assign.regions(path)
    assert regions, f"{path.name} has no BEGIN SOLUTION regions: nothing for students to do"
    stub = assign.stub_source(path)
    for r in regions:
        assert f'raise NotImplementedError("{lab}: {r.function}")' in stub
