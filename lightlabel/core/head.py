"""The text-initialised, low-rank classifier head of the projector.

    logits = exp(logit_scale) * normalize(features) @ W^T + bias

with the class weights ``W`` [C, d] derived from the fixed text embeddings ``W_txt`` (unit rows, never stored)
and a stored low-rank update ``B_h A_h``:

- ``head_mode="renorm"``:   ``W = normalize(W_txt + s * B_h A_h)``  (rows stay unit length, as the text init's)
- ``head_mode="additive"``: ``W = W_txt + s * B_h A_h``             (plain LoRA on the linear layer, HeLlO Eq. 4)

with ``s = head_alpha / head_rank``. Both equal CLIP zero-shot classification at initialisation, because
``B_h = 0`` (HeLlO Proposition 1, Eq. 2-3).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import HEAD_MODES

__all__ = ["HEAD_MODES", "TextHead"]


class TextHead(nn.Module):
    """Low-rank head over fixed, text-derived class weights.

    Args:
        text_weight: ``[C, d]`` float class text embeddings (any norm; rows are normalised here).
        rank: head LoRA rank ``r_h``.
        alpha: head LoRA alpha (``scaling = alpha / rank``).
        logit_scale: initial ``log`` of the logit scale (CLIP's ``logit_scale``; 100 = exp(4.605) for OpenAI).
        mode: ``"renorm"`` or ``"additive"`` (see module docstring).

    Shape:
        - Input: ``(B, d)`` image features (any float dtype; computed in float32).
        - Output: ``(B, C)`` float32 logits.

    Source: HeLlO Sec. 3.2-3.3, Proposition 1, Eq. 3-4.
    """

    def __init__(self, text_weight: torch.Tensor, *, rank: int, alpha: float, logit_scale: float, mode: str) -> None:
        super().__init__()
        if mode not in HEAD_MODES:
            raise ValueError(f"`head_mode` must be one of {list(HEAD_MODES)}, got {mode!r}")
        num_classes, dim = text_weight.shape
        self.mode = mode
        self.rank = int(rank)
        self.scaling = float(alpha) / float(rank)
        self.register_buffer("text_weight", F.normalize(text_weight.detach().float(), dim=-1), persistent=False)
        self.lora_A = nn.Parameter(torch.empty(self.rank, dim))
        self.lora_B = nn.Parameter(torch.zeros(num_classes, self.rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale)))
        self.bias = nn.Parameter(torch.zeros(num_classes))
        # exp(logit_scale) * W once merged (see merge), else empty. A buffer, so .to(), DataParallel replicas and
        # DDP move it with the module; never saved (persistent=False): it is derived from the adapter tensors.
        self.register_buffer("merged_weight", torch.empty(0, dim), persistent=False)

    @property
    def num_classes(self) -> int:
        return self.text_weight.shape[0]

    @property
    def merged(self) -> bool:
        return self.merged_weight.numel() > 0

    def class_weight(self) -> torch.Tensor:
        """The class weights ``W`` [C, d], float32 (see module docstring)."""
        w = self.text_weight + (self.lora_B @ self.lora_A) * self.scaling
        return F.normalize(w, dim=-1) if self.mode == "renorm" else w

    def merge(self) -> None:
        """Precompute ``exp(logit_scale) * W`` once, so inference is one matmul plus the bias."""
        with torch.no_grad():
            self.merged_weight = (self.class_weight() * self.logit_scale.exp()).float()

    def unmerge(self) -> None:
        self.merged_weight = self.merged_weight.new_empty(0, self.text_weight.shape[1])

    @torch.no_grad()
    def remap(self, index: torch.Tensor) -> None:
        """Keep and reorder the classes ``index`` (``(C',)`` int64 positions): row ``i`` becomes class ``index[i]``.
        The fixed text rows, the low-rank factor ``B_h``, the bias and a merged weight follow; ``A_h`` is shared."""
        self.text_weight = self.text_weight[index]
        self.lora_B = nn.Parameter(self.lora_B[index].clone(), requires_grad=self.lora_B.requires_grad)
        self.bias = nn.Parameter(self.bias[index].clone(), requires_grad=self.bias.requires_grad)
        if self.merged:
            self.merged_weight = self.merged_weight[index]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # float32 whatever the caller's autocast: under bf16 the logits (scale ~100) would move in steps of 0.125-0.25
        with torch.autocast(device_type=features.device.type, enabled=False):
            f = F.normalize(features.float(), dim=-1)
            if self.merged:
                return torch.addmm(self.bias.float(), f, self.merged_weight.t())
            return self.logit_scale.exp() * (f @ self.class_weight().t()) + self.bias

    def extra_repr(self) -> str:
        return f"classes={self.num_classes}, dim={self.text_weight.shape[1]}, rank={self.rank}, mode={self.mode!r}"
