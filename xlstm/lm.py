"""Language model around any backbone: token embedding -> backbone -> LM head (untied unless configured)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbone import Backbone
from .components import small_init_


class LanguageModel(nn.Module):
    """``forward(tokens (B, S) int64) -> logits (B, S, V)``; ``step`` and ``generate`` decode recurrently."""

    def __init__(self, backbone: Backbone):
        super().__init__()
        cfg = backbone.config
        self.backbone = backbone
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim)
        self.head = nn.Linear(cfg.embedding_dim, cfg.vocab_size, bias=False)
        small_init_(self.embedding.weight, cfg.embedding_dim)
        if cfg.tie_embeddings:
            self.head.weight = self.embedding.weight
        else:
            small_init_(self.head.weight, cfg.embedding_dim)

    @property
    def config(self):
        return self.backbone.config

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.embedding(tokens)))

    def step(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """tokens (B, S') continuing from ``state`` -> (logits (B, S', V), state)."""
        y, state = self.backbone.step(self.embedding(tokens), state)
        return self.head(y), state

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, greedy: bool = False,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Prefill the prompt (B, S) in one call, then sample token by token; returns (B, S + max_new_tokens)."""
        logits, state = self.step(prompt, None)
        out = [prompt]
        for _ in range(max_new_tokens):
            next_logits = logits[:, -1].float()
            if greedy:
                token = next_logits.argmax(-1, keepdim=True)
            else:
                next_logits = next_logits / max(temperature, 1e-8)
                if top_k is not None:
                    kth = next_logits.topk(top_k, dim=-1).values[:, -1:]
                    next_logits = next_logits.masked_fill(next_logits < kth, float("-inf"))
                token = torch.multinomial(next_logits.softmax(-1), 1, generator=generator)
            out.append(token)
            logits, state = self.step(token, state)
        return torch.cat(out, dim=1)
