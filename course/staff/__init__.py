"""The course staff's tooling: stubs (``assign``), notebooks, the student bundle (``release``), the
Gradescope autograder, running the solutions (``running``) and the command line (``cli``).

It imports the labs' room (``course``) and the grader; neither imports it.
"""
