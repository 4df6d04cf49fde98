"""The course's errors: mistakes a person can fix, said in words (the CLI prints them without a traceback)."""


class CourseError(Exception):
    """A mistake a person can fix; the CLI prints the message without a traceback."""


class DataError(CourseError):
    """Data that are missing or damaged; the message names the file and what to do."""
