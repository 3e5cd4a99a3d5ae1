"""The text a fitted lens learns from: the shipped corpus, a user's text file, or a model's own samples.

The shipped corpus (``corpus_samples.jsonl``) is text that SmolLM2-135M-Instruct wrote
itself, continuing the openings of ``corpus_seeds.txt`` with fixed seeds
(``python -m lens make-corpus`` writes it again). Model samples because this machine
has no network and no redistributable web text, the model's licence (Apache-2.0)
lets us ship what it writes, and a lens fitted on a model's own distribution is fitted
where that model's residual streams actually live. A user's file is any UTF-8 text.

Texts become token chunks of one length (joined by the end-of-text token where there
is one), so the fitting forward passes run in batches with no padding.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import LensError
from ..options import Progress

HERE = Path(__file__).resolve().parent
SEEDS_FILE = HERE / "corpus_seeds.txt"
SHIPPED_FILE = HERE / "corpus_samples.jsonl"
SHIPPED = "shipped"
CHUNK_TOKENS = 128  # tokens per fitting sequence: long enough for context, short for fast batches
MAX_CORPUS_TOKENS = 200_000  # a user's file is cut here: fitting stays within minutes
MAX_FILE_BYTES = 50_000_000


@dataclass(frozen=True)
class Corpus:
    """Token chunks ready for fitting, with a name for people and a digest for the cache."""

    name: str  # "shipped" or the file's name
    chunks: list[list[int]]  # each CHUNK_TOKENS long (the last may be shorter)
    digest: str  # of the token ids: the same text and tokenizer give the same lens

    @property
    def n_tokens(self) -> int:
        return sum(map(len, self.chunks))


def read_seeds(path: Path = SEEDS_FILE) -> list[str]:
    """The openings, separated by lines holding only ``---`` (comment lines before the first)."""
    parts = path.read_text(encoding="utf-8").split("\n---\n")
    return [p.rstrip("\n") for p in parts[1:] if p.strip()]


def read_jsonl(path: Path) -> list[str]:
    texts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            texts.append(json.loads(line))
    return texts


def write_jsonl(path: Path, texts: Sequence[str]) -> None:
    path.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")


def read_text_file(path: str | Path) -> list[str]:
    """A user's corpus: UTF-8 text, paragraphs (blank-line separated) as texts."""
    p = Path(path).expanduser()
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise LensError(f"{path} is {p.stat().st_size / 1e6:.0f} MB; a corpus file may hold at most "
                            f"{MAX_FILE_BYTES / 1e6:.0f} MB")
        raw = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise LensError(f"cannot read {path}: it is not UTF-8 text") from None
    except IsADirectoryError:
        raise LensError(f"{path} is a folder, not a text file") from None
    except OSError as exc:
        raise LensError(f"cannot read {path}: {exc.strerror or exc}") from None
    if p.suffix == ".jsonl":
        try:
            texts = read_jsonl(p)
        except (json.JSONDecodeError, ValueError):
            raise LensError(f"{path} is not JSON lines (one JSON string per line)") from None
        if not all(isinstance(t, str) for t in texts):
            raise LensError(f"{path}: every line of a .jsonl corpus must be one JSON string")
    else:
        texts = [t.strip() for t in raw.replace("\r\n", "\n").split("\n\n")]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise LensError(f"{path} holds no text")
    return texts


def chunk_corpus(tokenizer, texts: Sequence[str], name: str, chunk: int = CHUNK_TOKENS,
                 max_tokens: int = MAX_CORPUS_TOKENS) -> Corpus:
    """Texts tokenised, joined (by the end-of-text token, where the tokenizer has one), cut into chunks."""
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        if stream and eos is not None:
            stream.append(int(eos))
        stream.extend(int(i) for i in ids)
        if len(stream) >= max_tokens:
            break
    stream = stream[:max_tokens]
    if len(stream) < chunk // 2:
        raise LensError(f"the corpus {name!r} has only {len(stream)} tokens: a lens needs at least {chunk // 2}")
    chunks = [stream[i:i + chunk] for i in range(0, len(stream), chunk)]
    if len(chunks) > 1 and len(chunks[-1]) < chunk // 4:  # a stub too short to carry context
        chunks.pop()
    h = hashlib.sha256()
    for c in chunks:
        h.update(json.dumps(c).encode())
    return Corpus(name=name, chunks=chunks, digest=h.hexdigest()[:16])


def load_corpus(tokenizer, corpus_file: str | Path | None = None) -> Corpus:
    """The shipped corpus (``corpus_file`` None) or a user's text file, as token chunks."""
    if corpus_file is None:
        return chunk_corpus(tokenizer, read_jsonl(SHIPPED_FILE), SHIPPED)
    return chunk_corpus(tokenizer, read_text_file(corpus_file), Path(corpus_file).name)


def generate_corpus(model, tokenizer, seeds: Sequence[str], new_tokens: int, seed: int = 0,
                    temperature: float = 1.0, batch: int = 24, progress: Progress | None = None) -> list[str]:
    """Each opening continued by ``new_tokens`` sampled tokens (plain sampling from the model's own
    distribution: no top-k or top-p), a fixed seed per batch: the same machine writes the same text."""
    import torch

    eos = getattr(tokenizer, "eos_token_id", None)
    out: list[str] = []
    for b0 in range(0, len(seeds), batch):
        group = list(seeds[b0:b0 + batch])
        enc = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in group]
        width = max(map(len, enc))
        pad = eos if eos is not None else 0
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc])  # left-padded
        mask = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc])
        gen = torch.Generator().manual_seed(seed + b0)
        done = torch.zeros(len(group), dtype=torch.bool)
        with torch.no_grad():
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
            res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            new = []
            for step in range(new_tokens):
                logits = res.logits[:, -1].float() / temperature
                nxt = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)[:, 0]
                if eos is not None:
                    nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
                    done |= nxt == eos
                new.append(nxt)
                if bool(done.all()):
                    break
                mask = torch.cat([mask, torch.ones(len(group), 1, dtype=mask.dtype)], -1)
                pos = pos[:, -1:] + 1
                res = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                            past_key_values=res.past_key_values, use_cache=True)
                if progress is not None and step % 8 == 0:
                    frac = (b0 + len(group) * (step + 1) / new_tokens) / len(seeds)
                    progress(min(frac, 0.999), f"sampling: openings {b0 + 1}–{b0 + len(group)}, token {step + 1}")
        cont = torch.stack(new, -1)
        for s, row in zip(group, cont.tolist()):
            if eos is not None and eos in row:
                row = row[:row.index(eos)]
            out.append(s + tokenizer.decode(row, skip_special_tokens=True))
    if progress is not None:
        progress(1.0, f"sampled {len(out)} texts")
    return out
