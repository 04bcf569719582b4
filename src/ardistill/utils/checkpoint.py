"""Strict checkpoint loading shared by every network (STYLE.md §5).

Official files come in several wrappers ({"model": sd}, {"ema": sd}, {"module": sd},
{"state_dict": sd}, raw) and sometimes with a DDP "module." prefix. `read_state_dict` unwraps
them; `load_strict` matches every parameter and buffer by name and shape, and fails with a
message naming the key, both shapes, and the model the file probably belongs to.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ardistill.errors import CheckpointError

# Wrapper keys seen in the official releases, in the order they are tried.
WRAPPER_KEYS = ("ema", "model", "module", "state_dict")



def read_file(path: str | Path) -> dict:
    """Load a `.pt`/`.pth`/`.bin` (torch.save) or `.safetensors` file onto the CPU.

    torch files are read with `weights_only=True`; a file that needs pickle raises a
    CheckpointError saying so rather than silently executing code from it.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(path), device="cpu"))
        except SafetensorError as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        with _safe_globals(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's pickle-protocol notes
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_mmap_ok(path))
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from e
    except Exception as e:  # pickle.UnpicklingError from weights_only
        # torch's message advises weights_only=False: ardistill never shows nor does that
        if "unsupported global" in str(e).lower():
            raise CheckpointError(
                f"{path}: this file holds Python objects beside the weights, and loading it "
                "would run code from it, which ardistill refuses. If it is a checkpoint you "
                "trust, re-save its state dict with `torch.save(obj['model'], 'clean.pt')`. "
                f"What the safe loader found: {_safe_loader_finding(e)}"
            ) from e
        if "weights only load failed" in str(e).lower():
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint, corrupt or not made by torch.save "
                f"(the safe loader stopped at: {_safe_loader_finding(e)})"
            ) from e
        # A corrupt pickle stream surfaces as KeyError/ValueError/... from the unpickler.
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


_TORCH_ADVICE = ("weights only load failed", "weights_only", "please file an issue",
                 "check the documentation", "do those steps only")


def _safe_loader_finding(e: Exception) -> str:
    """The safe unpickler's own finding, without torch's advice around it."""
    for line in str(e).splitlines():
        text = line.strip().removeprefix("WeightsUnpickler error:").strip()
        if text and not any(a in text.lower() for a in _TORCH_ADVICE):
            return text.split(". Please use")[0].rstrip(".") + "."
    return "a pickle instruction it does not allow"


def _safe_globals():
    """Allow `argparse.Namespace` (the training `args` that official LlamaGen / VAR files keep
    beside the weights) under weights_only loading: it only holds plain values."""
    import argparse
    import contextlib

    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals([argparse.Namespace])
    return contextlib.nullcontext()


def _mmap_ok(path: Path) -> bool:
    # mmap needs the zip format (torch >= 1.6 default); legacy files fall back to a plain read.
    return zipfile.is_zipfile(path)


def unwrap_state_dict(obj: Mapping) -> dict[str, Tensor]:
    """Return the flat {name: tensor} mapping inside an official checkpoint object."""
    cur: Mapping = obj
    for _ in range(3):
        if cur and all(isinstance(v, Tensor) for v in cur.values()):
            break
        for key in WRAPPER_KEYS:
            inner = cur.get(key)
            if isinstance(inner, Mapping) and inner:
                cur = inner
                break
        else:
            break
    tensors = {k: v for k, v in cur.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(
            f"no state dict found: top-level keys are {sorted(map(str, obj.keys()))[:10]}"
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    if all(k.startswith("_orig_mod.") for k in tensors):  # torch.compile wrapper
        tensors = {k[len("_orig_mod.") :]: v for k, v in tensors.items()}
    return tensors


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    return unwrap_state_dict(read_file(path))


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    what: str,
    transient: Iterable[str] = (),
    key_map: Mapping[str, str] | None = None,
    assign: bool = False,
) -> None:
    """Load `state_dict` into `module`, every parameter and buffer matched by name and shape.

    transient: regexes of keys that may be present in a file but are not weights (KV caches,
        rotary tables); they are dropped. Any other unknown key is an error.
    key_map: explicit renames {file key: module key}, applied first.
    assign: use `load_state_dict(assign=True)` (for modules built on the meta device).
    what: the model's name, used in error messages ("LlamaGen GPT-B c2i").
    """
    pats = [re.compile(p) for p in transient]
    sd = {}
    for k, v in state_dict.items():
        k = key_map.get(k, k) if key_map else k
        if any(p.fullmatch(k) for p in pats):
            continue
        sd[k] = v
    own = module.state_dict(keep_vars=True)
    own = {k: v for k, v in own.items() if not any(p.fullmatch(k) for p in pats)}
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise CheckpointError(_mismatch_message(what, missing, unexpected, len(own), len(sd)))
    for k, v in own.items():
        if tuple(v.shape) != tuple(sd[k].shape):
            raise CheckpointError(
                f"{what}: shape mismatch for '{k}': checkpoint {tuple(sd[k].shape)} vs model "
                f"{tuple(v.shape)} (a checkpoint of another size or model?)"
            )
    sd = {k: v.to(own[k].dtype) if v.is_floating_point() and own[k].is_floating_point() else v
          for k, v in sd.items()}
    module.load_state_dict(sd, strict=True, assign=assign)


def _mismatch_message(what: str, missing: list, unexpected: list, n_own: int, n_file: int) -> str:
    lines = [f"{what}: the checkpoint does not match this model "
             f"({n_file} weights in the file, {n_own} in the model)."]
    if missing:
        lines.append(f"  missing from the checkpoint ({len(missing)}): {_short(missing)}")
    if unexpected:
        lines.append(f"  not in the model ({len(unexpected)}): {_short(unexpected)}")
    if len(missing) > n_own // 2:
        lines.append("  Most weights are missing: is this a checkpoint of another model family?")
    return "\n".join(lines)


def _short(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fingerprint(*modules: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of every tensor in the state dicts.

    Identical weights give identical digests on any machine (tensors are hashed as contiguous
    little-endian CPU bytes, in sorted key order).
    """
    import hashlib

    h = hashlib.sha256()
    for i, m in enumerate(modules):
        for k, v in sorted(m.state_dict().items()):
            t = v.detach().to("cpu").contiguous()
            h.update(f"{i}:{k}:{tuple(t.shape)}:{t.dtype}".encode())
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            h.update(t.numpy().tobytes())
    return h.hexdigest()
