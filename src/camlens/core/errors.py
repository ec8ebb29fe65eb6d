"""Exceptions that name the problem and the way out.

Every error camlens raises on purpose derives from :class:`CamlensError`, so the
CLI can print it as one line and exit without a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


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


class ModelCallError(CamlensError, ValueError, RuntimeError):
    """The user's model itself raised while running on the given inputs (wrong shape, dtype, size).

    Also a ``RuntimeError``, so code that caught the model's own RuntimeError keeps working.
    """


@contextmanager
def model_call(model: object, inputs: object) -> Iterator[None]:
    """Turn an exception raised inside the user's model into :class:`ModelCallError`.

    Errors camlens raises on purpose pass through; the original exception is chained
    (``--debug`` in the CLI shows its traceback).
    """
    try:
        yield
    except CamlensError:
        raise
    except Exception as error:  # noqa: BLE001 - anything the model raises is reported, typed
        shape = tuple(getattr(inputs, "shape", ()))
        dtype = getattr(inputs, "dtype", None)
        first = (str(error).strip().splitlines() or [""])[0][:300]
        raise ModelCallError(
            f"{type(model).__name__} failed on inputs of shape {shape} ({dtype}): {type(error).__name__}: {first}. "
            "Check the input's channels, size and dtype against what the model expects"
        ) from error
