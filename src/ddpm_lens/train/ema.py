"""ddpm-torch's exponential moving average of a model's parameters."""

from __future__ import annotations

from typing import Any

import torch

from ddpm_lens.core.checkpoint import strip_prefixes
from ddpm_lens.util.errors import UserError


class EMA:
    """ddpm-torch's exponential moving average of the parameters, keyed by parameter name.

    ``num_updates`` starts at -1 and is incremented before each update, whose decay is
    ``min(decay, (1 + n) / (10 + n))``.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.num_updates = -1
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in named]
        self.shadow = {k: p.detach().clone() for k, p in named}
        self._shadow = list(self.shadow.values())

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        n = self.num_updates
        decay = min(self.decay, (1 + n) / (10 + n))
        torch._foreach_lerp_(self._shadow, [p.detach() for p in self._params], 1.0 - decay)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "shadow": self.shadow, "num_updates": self.num_updates}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        shadow = strip_prefixes(state["shadow"])
        if set(shadow) != set(self.shadow):
            raise UserError(
                "the checkpoint's EMA weights do not match the model; resume with the run's config"
            )
        for k, v in self.shadow.items():
            v.copy_(shadow[k])
        self.num_updates = int(state["num_updates"])
