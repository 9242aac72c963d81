"""Cutting a child's output bytes into lines (SPEC §3)."""

from __future__ import annotations

MAX_LINE_BYTES = 64 * 1024


class LineSplitter:
    """Accumulates bytes and returns complete lines as text.

    Invalid UTF-8 is replaced, never fatal. A line longer than ``limit`` bytes is
    cut into pieces of at most ``limit`` bytes (at a character boundary when the
    text is UTF-8). One ``\\r`` right before the ``\\n`` is dropped, so CRLF output reads
    as lines; a ``\\r`` anywhere else is text. A long line is cut after that, so the lines
    never depend on how the bytes arrived in chunks.
    """

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self._limit = limit
        self._pending = b""

    def feed(self, data: bytes) -> list[str]:
        """Add ``data``; return the lines it completed, oldest first."""
        buffer = self._pending + data if self._pending else data
        cut = buffer.rfind(b"\n")
        if cut < 0:
            self._pending = buffer
            return self._cut_long_pending()
        self._pending = buffer[cut + 1 :]
        head = buffer[:cut]
        if len(head) > self._limit and max(map(len, head.split(b"\n"))) > self._limit:
            parts = [piece for part in head.split(b"\n") for piece in self._pieces(_crlf(part))]
            return [part.decode("utf-8", "replace") for part in parts] + self._cut_long_pending()
        # one decode for the whole chunk: "\n" never occurs inside a UTF-8 sequence,
        # so this equals decoding line by line, at a fraction of the calls
        lines = head.decode("utf-8", "replace").split("\n")
        if b"\r" in head:
            lines = [line[:-1] if line.endswith("\r") else line for line in lines]
        return lines + self._cut_long_pending()

    def flush(self) -> list[str]:
        """The unterminated rest, as a last line (at end of stream)."""
        rest, self._pending = self._pending, b""
        if not rest:
            return []
        return [piece.decode("utf-8", "replace") for piece in self._pieces(rest)]

    def _cut_long_pending(self) -> list[str]:
        # a last "\r" may be half of a CRLF: it is not cut off until the next byte says
        line = _crlf(self._pending)
        if len(line) <= self._limit:
            return []
        pieces = self._pieces(line)
        self._pending = pieces.pop() + self._pending[len(line) :]
        return [piece.decode("utf-8", "replace") for piece in pieces]

    def _pieces(self, data: bytes) -> list[bytes]:
        if len(data) <= self._limit:
            return [data]
        pieces = []
        start = 0
        while len(data) - start > self._limit:
            end = start + self._limit
            # do not cut a UTF-8 character in two: step back to the byte that starts it
            for back in range(4):
                if data[end - back] & 0xC0 != 0x80:
                    break
            else:
                back = 0  # not UTF-8 anyway: cut at the limit
            end -= back
            pieces.append(data[start:end])
            start = end
        pieces.append(data[start:])
        return pieces


def _crlf(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line
