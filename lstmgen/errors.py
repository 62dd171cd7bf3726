"""The exception types the CLI turns into a single clear line on stderr."""


class LstmgenError(Exception):
    """A problem the user can fix; the message says what, where and how. The CLI exits 1."""


class UsageError(LstmgenError):
    """An option or argument out of its range, or options that contradict each other. The CLI exits 2."""


class OptionError(UsageError):
    """One option's value out of its range. `option` is the field's name (top_k) and `problem` what is wrong
    with it ("must be at least 1 (got 0)"), so each front end names the option its own way: the CLI's
    message is "--top-k must be ...", the server's "top_k must be ...". `hint` is for the CLI only."""

    def __init__(self, option: str, problem: str, hint: str = ""):
        self.option, self.problem = option, problem
        super().__init__(f"--{option.replace('_', '-')} {problem}" + (f"; {hint}" if hint else ""))

    def named(self, name: str) -> str:
        return f"{name} {self.problem}"


def shown_int(value: int) -> str:
    """An integer for an error line: a JSON body or a --set may carry 4,300 digits, not one line's worth."""
    return f"{value:,}" if abs(value) < 10**18 else f"a {len(str(abs(value)))}-digit number"
