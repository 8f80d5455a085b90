"""Seconds per phase of a visualizer run, summed over the threads that did the work."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields


@dataclass
class Timings:
    load: float = 0.0
    forward: float = 0.0
    stats: float = 0.0
    loss: float = 0.0  # the denoising loss at --loss_timesteps
    render: float = 0.0
    write: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, phase: str, seconds: float) -> None:
        with self._lock:
            setattr(self, phase, getattr(self, phase) + seconds)

    def as_dict(self) -> dict[str, float]:
        return {f.name: round(getattr(self, f.name), 3) for f in fields(self) if not f.name.startswith("_")}
