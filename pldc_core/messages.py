"""How errors read on every command: one line, naming the file and the problem."""
from __future__ import annotations


def first_sentence(text: str, limit: int = 160) -> str:
    """The first line and sentence of a library's error message (torch's run to a paragraph)."""
    text = str(text).strip()
    first = text.splitlines()[0].split(". ")[0].rstrip(".") if text else ""
    return first if len(first) <= limit else first[: limit - 3] + "..."


def error_line(exc: BaseException) -> str:
    """An error as a command prints it: ``FILE: reason`` for an OS error that names its file, else the message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror.lower()}"
    return str(exc)
