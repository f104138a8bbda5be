"""What every transformers-backed stage holds: its model and processor on a device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(eq=False)
class PretrainedStage:
    model_name: str
    """The model id or path as configured: recorded as provenance next to every result."""
    model: Any
    processor: Any
    device: torch.device
    dtype: torch.dtype
