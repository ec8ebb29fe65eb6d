"""One lock per model: calls that hook a model or flip its train/eval flags take turns.

Forward hooks and ``module.training`` belong to the model object, not to a thread: two
threads explaining the same model at once would see each other's hooks (wrong maps) and
restore each other's flags (the model left in eval mode). :func:`model_lock` serialises
those windows per model; different models still run in parallel.

The locks live in :data:`MODEL_STATES`, a :class:`ModelStates` keyed weakly by the model,
so an entry lives exactly as long as its model. Each entry also holds the per-model
memo that :func:`camlens.explain` keeps (the target layer found for an input size),
read and written only while the model's lock is held.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from torch import nn

__all__ = ["ModelState", "ModelStates", "MODEL_STATES", "model_lock", "model_state"]


@dataclass
class ModelState:
    """What camlens keeps per model: a re-entrant lock and a memo read under it."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    memo: dict = field(default_factory=dict)


class ModelStates:
    """Model -> :class:`ModelState`, weakly keyed (the entry dies with the model), thread-safe."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._states: "weakref.WeakKeyDictionary[nn.Module, ModelState]" = weakref.WeakKeyDictionary()

    def of(self, model: nn.Module) -> ModelState:
        with self._guard:
            state = self._states.get(model)
            if state is None:
                state = self._states[model] = ModelState()
            return state

    def __len__(self) -> int:
        with self._guard:
            return len(self._states)


MODEL_STATES = ModelStates()


def model_state(model: nn.Module) -> ModelState:
    """The :class:`ModelState` of ``model`` (created on first use)."""
    return MODEL_STATES.of(model)


@contextmanager
def model_lock(model: nn.Module) -> Iterator[ModelState]:
    """Hold ``model``'s lock (re-entrant: nested camlens calls in one thread are fine)."""
    state = MODEL_STATES.of(model)
    with state.lock:
        yield state
