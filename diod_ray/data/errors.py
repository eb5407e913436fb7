"""Errors of bad data: the located :class:`~diod_ray.errors.DataError` (defined at the bottom of
the package with the storage errors, re-exported here) and the data-specific kinds."""

from __future__ import annotations

from diod_ray.errors import DataError, OverwriteError, StorageError

__all__ = [
    "DataError",
    "ShardFormatError",
    "SourceError",
    "SplitExistsError",
    "SplitMissingError",
    "StorageError",
]


class SplitExistsError(OverwriteError):
    """A split write would replace an existing split and ``overwrite`` was not given."""


class SplitMissingError(DataError):
    """The split (or its manifest) does not exist at the URI."""


class ShardFormatError(DataError):
    """A shard is unreadable, truncated, of another schema version, or has inconsistent rows."""


class SourceError(DataError):
    """A source file for conversion (image, mask, video, array) is missing or unreadable."""
