"""Continue a prompt token by token (greedy, or sampled with a seed), with the model's KV cache."""
from __future__ import annotations

from typing import Sequence

import torch


@torch.no_grad()
def generate_ids(model, token_ids: Sequence[int], max_new_tokens: int, temperature: float = 0.0, seed: int = 0,
                 stop_ids: Sequence[int] = (), at=None) -> tuple[list[int], list[float], str]:
    """The new token ids, the probability each had when chosen, and why generation stopped.

    Sampling draws from softmax(logits / temperature) with a generator of its own, so
    the same seed gives the same tokens whatever else the process has drawn. ``at(start)``, when given, is
    told before each pass the position of the first token it runs (0, then each new token's)."""
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    ids = torch.tensor([list(token_ids)], device=device)
    if at is not None:
        at(0)
    out = model(input_ids=ids, use_cache=True)
    new, probs = [], []
    for _ in range(max_new_tokens):
        logits = out.logits[0, -1].float().cpu()
        p = torch.softmax(logits, -1)
        if temperature > 0:
            nxt = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator))
        else:
            nxt = int(logits.argmax())
        new.append(nxt)
        probs.append(float(p[nxt]))
        if nxt in stop_ids:
            return new, probs, "end of text"
        if at is not None:
            at(len(token_ids) + len(new) - 1)
        out = model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=out.past_key_values,
                    use_cache=True)
    return new, probs, "length"
