"""Reading a ``.pt`` file safely: ``torch.load(weights_only=True)``, memory-mapped where the
format allows; a file that would run pickled code is refused (and named), never executed;
truncated or random bytes are a one-line error."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ddpm_lens.util.errors import UserError


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a ``.pt`` checkpoint safely: weights only, memory-mapped where the format allows."""
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"checkpoint {path} not found: pass the path of a .pt or .safetensors file or a diffusers folder"
        )
    if path.suffix == ".safetensors":
        raise UserError(f"checkpoint {path} is a safetensors file: read it with load_weights")
    try:
        return _torch_load(path, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc) and "zip" not in str(exc).lower():  # else: pre-1.6 format, cannot map
            raise _unreadable(path, exc) from None
    return _torch_load(path, mmap=False)


def _torch_load(path: Path, *, mmap: bool) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about unusual pickle protocols of random bytes
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as exc:
            # a callable to import is code, not data: named in torch's message, or found in the
            # pickle's opcodes when the weights-only unpickler stopped earlier (protocol 4's FRAME)
            culprit = _blocked_global(str(exc)) or _pickled_callable(path)
            if culprit:
                raise UserError(
                    f"checkpoint {path} was refused: it holds pickled Python objects (e.g. {culprit}) "
                    "that could run code when loaded; re-save its state dict from a trusted source"
                ) from None
            raise _unreadable(path, exc) from None
        except RuntimeError:
            if mmap:
                raise
            raise _unreadable(path, None) from None
        except Exception as exc:  # random bytes make the unpickler fail in many ways
            raise _unreadable(path, exc) from None


def _blocked_global(message: str) -> str | None:
    if "GLOBAL" not in message and "global" not in message:
        return None
    m = re.search(r"GLOBAL ([\w.]+)", message)
    return m.group(1) if m else "an arbitrary global"


_GLOBAL_NAME = re.compile(r"[A-Za-z_][\w.]*")


def _pickled_callable(path: Path) -> str | None:
    """The first global (``module.name``) a file's pickle imports, read with pickletools (which
    only parses opcodes, never runs them); None if there is none or the bytes are no pickle."""
    import pickletools
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
                data = z.read(name) if name else b""
        else:
            data = path.read_bytes()
    except (OSError, zipfile.BadZipFile):
        return None
    strings: list[str] = []
    found: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                found.append(arg.replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(".".join(strings[-2:]))
            elif isinstance(arg, str):
                strings.append(arg)
    except Exception:  # noqa: BLE001 - random bytes break the opcode parser in many ways
        pass
    found = [g for g in found if _GLOBAL_NAME.fullmatch(g)]
    # what torch itself pickles (tensor rebuilds, OrderedDict, protocol 0 bytes) is data; anything
    # else is what the file would run
    return next((g for g in found if not g.startswith(("torch.", "collections.", "_codecs."))), None)


def _unreadable(path: Path, exc: BaseException | None) -> UserError:
    why = f" ({type(exc).__name__})" if exc is not None else ""
    return UserError(
        f"checkpoint {path} is truncated or not a PyTorch checkpoint{why}: re-copy or re-save it"
    )
