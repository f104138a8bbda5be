"""Which torch device and dtype the embedder's models run on."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

DEVICE_ENV = "SEMSQL_DEVICE"


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(preference: str = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda", "cuda:1" or "mps" into a device that exists here.

    "auto" picks CUDA, then Apple's MPS, then the CPU.
    """
    wanted = preference.strip().lower() or "auto"
    if wanted == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as exc:
        raise DeviceError(
            f"unknown device {preference!r}: use auto, cpu, cuda, cuda:N or mps ({exc})"
        ) from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        _check_cuda(preference, device)
        return device
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(f"device {preference!r} asked for, but MPS is not available here")
        return device
    raise DeviceError(f"unsupported device {preference!r}: use auto, cpu, cuda, cuda:N or mps")


def device_from_env(env: Mapping[str, str] = os.environ) -> torch.device:
    """The device named by SEMSQL_DEVICE (default "auto")."""
    return resolve_device(env.get(DEVICE_ENV, "auto"))


def default_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA (about twice the throughput, same answers to a few decimals); fp32 elsewhere."""
    return torch.float16 if device.type == "cuda" else torch.float32


def _check_cuda(preference: str, device: torch.device) -> None:
    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {preference!r} asked for, but CUDA is not available here "
            f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            f"set {DEVICE_ENV}=cpu or auto"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device {preference!r} asked for, but this machine has {count} CUDA "
            f"device(s): cuda:0 .. cuda:{count - 1}"
        )


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return backend is not None and backend.is_available()
