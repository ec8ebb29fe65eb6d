"""Exceptions that name the problem and the way out.

Every error camlens raises on purpose derives from :class:`CamlensError`, so the
CLI can print it as one line and exit without a traceback.
"""

from __future__ import annotations


class CamlensError(Exception):
    """Base class of the errors camlens raises on purpose."""


class LayerNotFoundError(CamlensError, KeyError):
    """A dotted layer name that the model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LayerNotExecutedError(CamlensError, RuntimeError):
    """A hooked module that never ran during the forward pass."""


class MultipleCallsError(CamlensError, RuntimeError):
    """A module that ran several times in one forward, with no call picked."""


class InPlaceModifiedError(CamlensError, RuntimeError):
    """A stored output that an in-place op changed after the hook saw it."""


class NoGradientError(CamlensError, RuntimeError):
    """A gradient was asked for but none flowed to the hooked tensor."""


class HeadError(CamlensError, ValueError):
    """A method that the model's classification head does not support."""


class InputError(CamlensError, ValueError):
    """Bad user input: shapes, classes, images, model names."""
