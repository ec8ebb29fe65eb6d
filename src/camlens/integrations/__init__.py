"""Training-framework callbacks that wrap :class:`camlens.ActivationStats` (optional extras).

* :mod:`camlens.integrations.lightning`: ``ActivationStatsCallback`` for PyTorch Lightning
  (``pip install camlens[lightning]``).
* :mod:`camlens.integrations.fastai`: ``ActivationStatsCallback`` for fastai
  (``pip install camlens[fastai]``).

Without its library a module still imports (so doctest collection and ``help()`` work),
but creating its callback raises :class:`MissingExtraError`, which says what to install. Nothing here is imported by ``import camlens``.
"""

from __future__ import annotations

from ..core.errors import CamlensError

__all__ = ["MissingExtraError"]


class MissingExtraError(CamlensError, ImportError):
    """An integration whose training library is not installed."""


def missing(library: str, extra: str) -> MissingExtraError:
    return MissingExtraError(
        f"camlens.integrations.{extra} needs {library}, which is not installed. "
        f"Install it with `pip install camlens[{extra}]` (or `pip install {library}`)."
    )


def missing_base(library: str, extra: str) -> type:
    """A stand-in base class whose constructor raises :func:`missing`."""

    class MissingLibrary:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise missing(library, extra)

    return MissingLibrary
