"""The one error type users see: a single line naming the file or field at fault."""


class VipoError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""
