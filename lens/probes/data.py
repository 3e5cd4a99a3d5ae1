"""Labelled prompt sets for probes: the shipped ones (sets/*.jsonl, written by hand) or a user's CSV/JSONL with a
``prompt`` and a ``label`` column holding two values (or a suite of clean/corrupt pairs: clean vs corrupted). Read by the suites' readers (lens/suites/suite.py), so a
file's bad rows are named the same way. Imports nothing heavy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LensError

SETS_DIR = Path(__file__).resolve().parent / "sets"
SHIPPED = {  # name -> (file, the class probed for (label 1), what it is)
    "true-false": ("true-false.jsonl", "true", "36 true and 36 false plain statements (capitals, numbers, nature)"),
    "reviews": ("reviews.jsonl", "positive", "30 positive and 30 negative short reviews (food, films, hotels)"),
}
MIN_PER_CLASS = 2  # the fewest prompts of a label: two folds need one of each on either side
MAX_PROMPTS = 400  # one engine run per prompt (batched by length): a page still waits for them


@dataclass(frozen=True)
class ProbeSet:
    name: str
    prompts: tuple[str, ...]
    labels: tuple[int, ...]  # 1: ``classes[1]``, 0: ``classes[0]``
    classes: tuple[str, str]  # (label 0, label 1) as the file names them

    def key(self) -> dict:
        return {"prompts": list(self.prompts), "labels": list(self.labels), "classes": list(self.classes)}


def _from_suite(suite, name: str, positive: str | None) -> ProbeSet:
    if "label" not in suite.columns and suite.items and all(i.is_pair for i in suite.items):
        # A pair suite (the patching work's clean/corrupt pairs) probes whether the stream tells them apart.
        prompts = tuple(p for i in suite.items for p in (i.clean, i.corrupt))
        return ProbeSet(name, prompts, tuple(1 - k % 2 for k in range(len(prompts))), ("corrupt", "clean"))
    if "label" not in suite.columns:
        raise LensError(f"{name} has no 'label' column: give each prompt a label (two values, e.g. true/false)")
    labels = [item.label("label").strip() for item in suite.items]
    values = sorted(set(labels))
    if len(values) != 2 or "" in values:
        raise LensError(f"{name}'s 'label' column must hold exactly two values, not {values[:6]}")
    one = positive if positive in values else values[1]
    zero = next(v for v in values if v != one)
    y = tuple(int(v == one) for v in labels)
    few = min(sum(y), len(y) - sum(y))
    if few < MIN_PER_CLASS:
        raise LensError(f"{name} has only {few} prompts labelled "
                        f"{zero if sum(y) > len(y) / 2 else one!r}: give each label at least {MIN_PER_CLASS}")
    if len(y) > MAX_PROMPTS:
        raise LensError(f"{name} has {len(y)} prompts; a probe set may hold at most {MAX_PROMPTS}")
    return ProbeSet(name, tuple(item.prompt for item in suite.items), y, (zero, one))


def parse_set(text: str, name: str, positive: str | None = None) -> ProbeSet:
    """A set from a file's text: ``.jsonl`` (objects with prompt and label) or ``.csv`` (a header row naming
    prompt and label)."""
    from ..suites.suite import parse_csv, parse_jsonl

    if name.lower().endswith(".jsonl"):
        return _from_suite(parse_jsonl(text, name), name, positive)
    if name.lower().endswith(".csv"):
        return _from_suite(parse_csv(text, name), name, positive)
    raise LensError(f"{name}: a probe set is a .csv file (a header row with prompt and label) or a .jsonl file")


def shipped(name: str) -> ProbeSet:
    if name not in SHIPPED:
        raise LensError(f"unknown probe set {name!r}; choose {', '.join(SHIPPED)} or give a .csv file")
    file, positive, _ = SHIPPED[name]
    s = parse_set((SETS_DIR / file).read_text(encoding="utf-8"), file, positive)
    return ProbeSet(name, s.prompts, s.labels, s.classes)


def load_set(name_or_path: str) -> ProbeSet:
    """A shipped set by name, or a file."""
    from ..suites.suite import read_text

    if name_or_path in SHIPPED:
        return shipped(name_or_path)
    if not name_or_path.lower().endswith((".csv", ".jsonl")):
        raise LensError(f"unknown probe set {name_or_path!r}; choose {', '.join(SHIPPED)} or give a .csv file")
    return parse_set(read_text(name_or_path), Path(name_or_path).name)


def to_jsonl(s: ProbeSet) -> str:
    """The set as JSONL (one ``{"prompt", "label"}`` a line), as ``parse_set(text, "x.jsonl")`` reads it back: a
    saved run and an exported script carry the set itself."""
    import json

    return "".join(json.dumps({"prompt": p, "label": s.classes[y]}, ensure_ascii=False) + "\n"
                   for p, y in zip(s.prompts, s.labels))


def set_from_bytes(data: bytes, file_name: str) -> ProbeSet:
    """An uploaded set, read as ``load_set`` reads one from disk (its name says its format)."""
    from ..suites.suite import MAX_FILE_BYTES

    if len(data) > MAX_FILE_BYTES:
        raise LensError(f"{file_name} is {len(data) / 1e6:.1f} MB; a probe set may hold at most "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LensError(f"cannot read {file_name}: it is not UTF-8 text") from None
    return parse_set(text, file_name)
