"""One error type for bad data: what went wrong, where (URI, file, row, field), what was expected."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing data. The message names the URI, file, row and field involved when known.

    The parts are also kept as attributes (``uri``, ``file``, ``row``, ``field``, ``expected``) so
    callers and tests can check them without parsing the message.
    """

    def __init__(
        self,
        problem: str,
        *,
        uri: str | None = None,
        file: str | None = None,
        row: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.problem = problem
        self.uri = uri
        self.file = file
        self.row = row
        self.field = field
        self.expected = expected
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.uri:
            where.append(f"uri {self.uri}")
        if self.file:
            where.append(f"file {self.file}")
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.field:
            where.append(f"field {self.field!r}")
        msg = self.problem
        if where:
            msg = f"{', '.join(where)}: {msg}"
        if self.expected:
            msg += f" (expected {self.expected})"
        return msg


class StorageError(DataError):
    """The storage cannot be reached or used: missing bucket, bad endpoint, denied credentials."""


class SplitExistsError(DataError):
    """A write would replace existing data and ``overwrite`` was not given."""


class SplitMissingError(DataError):
    """The split (or its manifest) does not exist at the URI."""


class ShardFormatError(DataError):
    """A shard is unreadable, truncated, of another schema version, or has inconsistent rows."""


class SourceError(DataError):
    """A source file for conversion (image, mask, video, array) is missing or unreadable."""
