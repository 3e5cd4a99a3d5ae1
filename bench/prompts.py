"""Prompts of an exact token count, from plain English text (no model hub needed)."""
from __future__ import annotations

TEXT = (
    "The history of the river towns is a story of trade, floods and bridges. In the spring the water "
    "rose over the low fields, and farmers moved their animals to the hills. Merchants came by boat "
    "with salt, cloth and iron tools, and left with grain, wool and cheese. When the first stone bridge "
    "was built, the market moved to the northern bank, and the old ferry men became carpenters. "
    "Children learned to count by watching the barges pass: one, two, three, four, five. Teachers wrote "
    "the names of the capitals on the board: the capital of France is Paris, the capital of Italy is Rome, "
    "the capital of Spain is Madrid. Every autumn a fair filled the square with music, and travellers "
    "told of cities beyond the mountains where the winters were long and the summers short. "
)


def prompt_ids(tokenizer, n_tokens: int) -> list[int]:
    """Exactly ``n_tokens`` token ids: TEXT repeated with a running chapter number, then cut."""
    ids: list[int] = []
    chapter = 1
    while len(ids) < n_tokens:
        ids += tokenizer(f"Chapter {chapter}. " + TEXT, add_special_tokens=False)["input_ids"]
        chapter += 1
    return ids[:n_tokens]
