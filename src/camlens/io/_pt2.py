"""Load a ``.pt2`` (``torch.export.save``) archive without running code from the file.

``torch.export.load`` unpickles parts of the archive with the full unpickler
(``torch.load(weights_only=False)`` for pickled weights and constants, and as a
fallback for the example inputs; ``pickle.loads`` for opaque constants; compiled
AOTInductor libraries), so a crafted archive runs anything when loaded. Here the
archive is read into memory once and checked member by member before
``torch.export.load`` sees those same bytes:

- JSON/text members (the graph, the payload configs, versions) are data;
- raw tensor payloads named by a payload config with ``use_pickle: false`` are bytes;
- every other member that is a pickle or a ``torch.save`` archive must load with
  PyTorch's weights-only unpickler (tensors, containers, numbers; no code);
- custom/opaque object constants and AOTInductor code are refused.

A refusal names the member and the reason; ``trust=True`` (``--trust``) skips the check.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import zipfile
from typing import Any

import torch

from ..core.errors import InputError

__all__ = ["check_pt2_archive", "load_pt2"]

_CODE_PREFIXES = ("data/aotinductor/",)
_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")  # constants unpickled as arbitrary objects


def _inner(name: str) -> str:
    """``archive/data/weights/weight_0`` -> ``data/weights/weight_0`` (the folder prefix is the archive's name)."""
    return name.split("/", 1)[1] if "/" in name else name


def _raw_payloads(archive: zipfile.ZipFile, names: list[str]) -> set[str]:
    """Members holding raw tensor bytes (``use_pickle: false`` in a weights/constants config)."""
    raw: set[str] = set()
    for name in names:
        inner = _inner(name)
        if not (inner.startswith(("data/weights/", "data/constants/")) and inner.endswith("_config.json")):
            continue
        folder = name.rsplit("/", 1)[0]
        try:
            config = json.loads(archive.read(name).decode("utf-8")).get("config", {})
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise InputError(f"{name} in the .pt2 archive is not valid JSON") from None
        for entry in config.values() if isinstance(config, dict) else ():
            if isinstance(entry, dict) and not entry.get("use_pickle", False) and isinstance(entry.get("path_name"), str):
                raw.add(f"{folder}/{entry['path_name']}")
    return raw


def _weights_only_problem(data: bytes) -> str | None:
    """Why the weights-only unpickler refuses ``data`` (None when it loads)."""
    try:
        if data[:2] == b"PK":
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        else:
            from torch import _weights_only_unpickler

            _weights_only_unpickler.Unpickler(io.BytesIO(data), encoding="utf-8").load()
    except Exception as error:  # noqa: BLE001 - any refusal means "not plain data"
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        telling = [line for line in lines if "GLOBAL" in line or "global" in line.split(" ", 3)[:3]]
        return (telling[0] if telling else f"{type(error).__name__}: {lines[0] if lines else ''}")[:200]
    return None


def check_pt2_archive(data: bytes, filename: str) -> None:
    """Raise :class:`InputError` unless every member of the archive is data (see the module docstring)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise InputError(f"{filename} is not a torch.export archive (.pt2 files are zip archives)") from None
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        raw = _raw_payloads(archive, names)
        for name in names:
            inner = _inner(name)
            if inner.startswith(_CODE_PREFIXES) or _inner(inner).startswith(_CODE_PREFIXES):
                raise InputError(
                    f"{filename} holds compiled AOTInductor code ({name}); loading it runs that code: pass "
                    "--trust (trust=True) only if you trust its source"
                )
            base = inner.rsplit("/", 1)[-1]
            if inner.startswith("data/constants/") and base.startswith(_OBJECT_PREFIXES):
                raise InputError(
                    f"{filename} holds a pickled Python object ({name}); unpickling it runs code from the file: "
                    "pass --trust (trust=True) only if you trust its source"
                )
            if name in raw:
                continue
            member = archive.read(name)
            if member[:2] == b"PK" or member[:1] == b"\x80":
                problem = _weights_only_problem(member)
                if problem is not None:
                    raise InputError(
                        f"{filename} holds pickled data that is not plain tensors ({name}: {problem}); "
                        "unpickling it runs code from the file: pass --trust (trust=True) only if you trust its source"
                    )


_TORCH_EXPORT_LOGGERS = ("torch.export", "torch._export.serde.serialize", "torch.export.pt2_archive._package")


@contextlib.contextmanager
def _quiet_torch_export_logs():
    """Drop torch.export's log records (tracebacks logged as warnings) while loading; errors still raise."""
    drop = logging.Filter("\0never")  # a filter whose name matches no logger: drops every record
    loggers = [logging.getLogger(name) for name in _TORCH_EXPORT_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def load_pt2(path: str, trust: bool) -> Any:
    """``torch.export.load`` of ``path``, after :func:`check_pt2_archive` unless ``trust``."""
    filename = str(path).rsplit("/", 1)[-1]
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise InputError(f"cannot read model file {filename}: {error.strerror or error}") from None
    if not trust:
        check_pt2_archive(data, filename)
    try:
        with _quiet_torch_export_logs():  # torch logs the deserializer's traceback as a warning
            return torch.export.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - a corrupt archive raises anything from the deserializer
        first = (str(error).splitlines() or [""])[0][:160]
        raise InputError(
            f"cannot load exported program {filename}: {type(error).__name__}: {first} (was it written by "
            f"torch.export.save with a compatible PyTorch? this is {torch.__version__})"
        ) from None
