"""The one exception type the CLI turns into a single clear line on stderr."""


class LstmgenError(Exception):
    """A problem the user can fix; the message says what, where and how."""
