"""The project's located errors, at the bottom of the package: what went wrong, where (URI, file,
row, field) and what was expected. Storage raises them; ``data/errors.py`` adds the data-specific
kinds. Imports nothing from the package, so every level may raise them."""

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
    """The storage cannot be reached or used: missing bucket, bad endpoint, denied credentials,
    a node-local path on a multi-node cluster, a kept checkpoint that was never published."""


class OverwriteError(DataError):
    """A write would replace existing data and ``overwrite`` was not given."""
