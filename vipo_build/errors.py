"""The one error type users see: a single line naming the file or field at fault."""


class VipoError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""


def one_line(err: BaseException) -> str:
    """An exception as "TypeName: first line of its message", for one-line reports."""
    first_line = next(iter(str(err).strip().splitlines()), "")
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
