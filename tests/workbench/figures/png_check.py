"""Whether a file is a PNG with something drawn in it."""


def png_ok(path) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
