"""Atomic, checksummed checkpoints and resumable training state.

A checkpoint is a directory: `model.safetensors` (or shards), `config.json`, tokenizer files, any extra
files, and `meta.json` (the caller's metadata plus the sha256 of every file). It is written into a hidden
temporary sibling on the same filesystem, fsynced, then renamed into place, so a crash or a full disk
never leaves a directory that looks complete, and the previous checkpoint at the same path stays loadable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import io
import json
import os
import random
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

META_FILE = "meta.json"
TRAINING_STATE_FILE = "training_state.pt"
_TMP_MARK = ".tmp-"
_OLD_MARK = ".old-"
_RENAME_EXCHANGE = 2  # linux/fs.h; swaps two paths in one atomic step


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, read or verified (message names the path and the reason)."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # filesystem without exchange support: caller falls back to rename-aside
    raise OSError(err, os.strerror(err), str(b))


def _siblings(out_dir: Path, mark: str) -> list[Path]:
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    prefix = f".{out_dir.name}{mark}"
    return [p for p in parent.iterdir() if p.name.startswith(prefix)]


def recover_checkpoint(out_dir: str | Path) -> None:
    """Finish or undo an interrupted replace, and delete abandoned temporary directories.

    Only the rename-aside fallback has a window where `out_dir` is missing; if a crash hit it, the
    set-aside previous checkpoint is moved back. Temporary directories never have a final name, so
    they are simply removed.
    """
    out = Path(out_dir)
    olds = _siblings(out, _OLD_MARK)
    if not out.exists():
        complete = [p for p in olds if (p / META_FILE).is_file()]
        if complete:
            newest = max(complete, key=lambda p: p.stat().st_mtime)
            os.rename(newest, out)
            olds.remove(newest)
    for stale in olds + _siblings(out, _TMP_MARK):
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    out_dir: str | Path,
    model: Any,
    tokenizer: Any | None,
    meta: dict[str, Any],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write `model` (+ tokenizer, extra files, meta.json with checksums) atomically to `out_dir`.

    `model` is anything with `save_pretrained` (a transformers model); a DDP wrapper is unwrapped.
    An existing `out_dir` is replaced in one step. Raises CheckpointError (path + OS reason) on
    failure, in which case whatever was at `out_dir` before is untouched.
    """
    out = Path(out_dir).absolute()
    model = getattr(model, "module", model)
    tmp = out.parent / f".{out.name}{_TMP_MARK}{uuid.uuid4().hex[:8]}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        recover_checkpoint(out)
        tmp.mkdir()
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for name, data in (extra_files or {}).items():
            if Path(name).name != name or name == META_FILE:
                raise CheckpointError(f"invalid extra file name {name!r} for checkpoint {out}")
            (tmp / name).write_bytes(data)
        checksums = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        full_meta = {**meta, "sha256": checksums}
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
        for p in tmp.iterdir():
            if p.is_file():
                _fsync_path(p)
        _fsync_path(tmp)
        if out.exists():
            if not _exchange(tmp, out):
                aside = out.parent / f".{out.name}{_OLD_MARK}{uuid.uuid4().hex[:8]}"
                os.rename(out, aside)
                os.rename(tmp, out)
            # After the swap `tmp` holds the previous checkpoint (or it sits in `aside`).
            _fsync_path(out.parent)
            for old in [tmp, *_siblings(out, _OLD_MARK)]:
                shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
            _fsync_path(out.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        where = exc.filename or out
        raise CheckpointError(f"cannot write checkpoint {out} ({where}): {_os_reason(exc)}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_meta(checkpoint_dir: str | Path) -> dict[str, Any]:
    """Read a checkpoint's meta.json (no checksum verification)."""
    path = Path(checkpoint_dir) / META_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path} is missing: {checkpoint_dir} is not a complete checkpoint") from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {_os_reason(exc)}") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def verify_checkpoint(checkpoint_dir: str | Path) -> dict[str, Any]:
    """Recompute every checksum listed in meta.json; return the meta or raise CheckpointError naming the file."""
    root = Path(checkpoint_dir)
    meta = load_meta(root)
    checksums = meta.get("sha256")
    if not isinstance(checksums, dict) or not checksums:
        raise CheckpointError(f"{root / META_FILE} has no sha256 table")
    if not any(name.endswith(".safetensors") for name in checksums):
        raise CheckpointError(f"{root} lists no .safetensors weight file in {META_FILE}")
    for name, expected in checksums.items():
        path = root / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint file {path} is missing")
        actual = _sha256(path)
        if actual != expected:
            raise CheckpointError(f"checksum mismatch for {path}: expected {expected}, got {actual}")
    return meta


def load_weights(model: torch.nn.Module, checkpoint_dir: str | Path) -> None:
    """Load the safetensors weights of `checkpoint_dir` into an already-built `model` (strict up to tied weights)."""
    root = Path(checkpoint_dir)
    files = sorted(root.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"no .safetensors file in {root}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{root} has weights the model does not know: {result.unexpected_keys[:5]}")
    # save_pretrained drops tied duplicates (e.g. lm_head tied to embeddings); those are loaded via their twin.
    twins: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        twins.setdefault(id(param), []).append(name)
    group_of = {name: names for names in twins.values() for name in names}
    missing = [k for k in result.missing_keys if not any(n in state for n in group_of.get(k, []))]
    if missing:
        raise CheckpointError(f"{root} lacks weights for {missing[:5]}")


# --- resumable training state -------------------------------------------------------------------------


@dataclass
class TrainingState:
    """What `load_training_state` restores: the step reached plus the caller's extra state."""

    step: int
    meta: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng_state() -> dict[str, Any]:
    """Snapshot python, numpy and torch (CPU and CUDA) random generators as torch-serialisable values."""
    np_state = np.random.get_state(legacy=True)
    # The global generator is MT19937, whose legacy state is the 5-tuple (a dict only for other generators).
    assert isinstance(np_state, tuple)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_s = state["numpy"]
    np.random.set_state(
        (np_s["name"], np_s["keys"].numpy().astype(np.uint32), np_s["pos"], np_s["has_gauss"], np_s["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(
    state_dir: str | Path,
    model: Any,
    tokenizer: Any | None,
    meta: dict[str, Any],
    *,
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Atomically save everything needed to resume: weights, optimizer, scheduler, RNG states, step, extra.

    `extra` must hold torch-serialisable plain values (ints, floats, strings, lists, dicts, tensors).
    """
    payload = {
        "step": int(step),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": capture_rng_state(),
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return save_checkpoint(
        state_dir, model, tokenizer, {**meta, "step": int(step)}, extra_files={TRAINING_STATE_FILE: buf.getvalue()}
    )


def has_training_state(state_dir: str | Path) -> bool:
    """True when `state_dir` holds a complete training state (after recovering an interrupted replace)."""
    root = Path(state_dir)
    if root.parent.is_dir():
        recover_checkpoint(root)
    return (root / META_FILE).is_file() and (root / TRAINING_STATE_FILE).is_file()


def load_training_state(
    state_dir: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> TrainingState:
    """Verify and load a state saved by `save_training_state` into the given objects; returns step and extra."""
    root = Path(state_dir)
    meta = verify_checkpoint(root)
    try:
        payload = torch.load(root / TRAINING_STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"cannot read {root / TRAINING_STATE_FILE}: {exc}") from exc
    if model is not None:
        load_weights(getattr(model, "module", model), root)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None and payload["scheduler"] is not None:
        scheduler.load_state_dict(payload["scheduler"])
    if restore_rng:
        restore_rng_state(payload["rng"])
    return TrainingState(step=int(payload["step"]), meta=meta, extra=dict(payload["extra"]))
