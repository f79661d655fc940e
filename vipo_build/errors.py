"""The one error type users see: a single line naming the file or field at fault."""


class VipoError(Exception):
    """A problem with the user's input or environment; the CLI prints it on one line and exits 2."""


def one_line(err: BaseException) -> str:
    """An exception as "TypeName: first line of its message", for one-line reports."""
    first_line = next(iter(str(err).strip().splitlines()), "")
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__


def read_utf8(path) -> str:
    """A text file users write (config, category file); one that is not UTF-8 is a one-line error naming the byte."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise VipoError(f"{path}: line {line}: not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x}); "
                        "save the file as UTF-8") from None
