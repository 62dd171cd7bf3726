"""The exception types the CLI turns into a single clear line on stderr."""


class LstmgenError(Exception):
    """A problem the user can fix; the message says what, where and how. The CLI exits 1."""


class UsageError(LstmgenError):
    """An option or argument out of its range, or options that contradict each other. The CLI exits 2."""
