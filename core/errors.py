"""The one error tree: everything Pix Me! raises on purpose derives from `PixmeError`.

Use cases catch these by type, never by message: storage says `StorageFull` or `StorageBusy` (whatever
the backend's own words), engines raise `EngineError` subclasses (core/engines/base.py), intake raises
`IntakeError`, a platform that refuses a chat for good raises `DeliveryRefused`. `Requeue` in core/jobs.py
is a signal to the job runner, not an error, and stays outside this tree.
"""

from __future__ import annotations


class PixmeError(Exception):
    """The root of every error Pix Me! raises on purpose."""


class StorageError(PixmeError):
    """The database or the image store could not do what was asked."""


class StorageFull(StorageError):
    """No space left for the database or the image files."""


class StorageBusy(StorageError):
    """The database is locked by someone else for longer than we wait."""
