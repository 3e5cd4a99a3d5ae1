"""A prompt suite: many prompts, each with what to look for, read from a file, a pasted list or a template.

An item has a ``prompt``, optionally a ``target`` (the answer whose probability the lens follows; none: the
model's own answer), a ``foil`` (a wrong answer to compare with), a ``position`` (0-based, negative from the
end; none: the last) and, for activation patching, a ``clean``/``corrupt`` pair. Every other column is kept
as a text label (a "country" or "language" column to facet by).

Sources:

- JSONL: one JSON object per line (blank lines skipped);
- CSV: a header row naming the columns, then one item per row;
- a pasted list: one prompt per line (``prompt<TAB>target<TAB>foil`` where a line holds tabs);
- a template with slots (``"The {landmark} is located in the city of"``) and a table of fillers: one row per
  item, a value for every slot plus ``target``/``foil`` and labels.

``counterfactual_pairs`` builds clean/corrupt pairs from a template, each filler row against another; a pair
whose prompts differ in token count is listed with the reason and left out, never padded.
Bad input is a LensError naming the file and the line or row. Imports nothing heavy.
"""
from __future__ import annotations

import csv
import io
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ..errors import LensError

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
FIELDS = ("prompt", "target", "foil", "clean", "corrupt", "position")
MAX_ITEMS = 1000  # a suite is read many prompts per pass, but a page still waits for it
MAX_FILE_BYTES = 5_000_000
PARTNERS = ("next", "all")  # counterfactual pairs: each row against the next one, or against every other


@dataclass(frozen=True)
class SuiteItem:
    prompt: str
    target: str | None = None
    foil: str | None = None
    clean: str | None = None
    corrupt: str | None = None
    position: int | None = None  # 0-based; negative counts from the end; None: the last
    labels: tuple[tuple[str, str], ...] = ()  # (column, value) for every other column, in the source's order
    where: str = ""  # "line 3", "row 2", "filler row 4": where the item came from, for messages

    @property
    def is_pair(self) -> bool:
        return self.clean is not None and self.corrupt is not None

    def label(self, column: str) -> str:
        return dict(self.labels).get(column, "")

    def key(self) -> dict:
        """What a result depends on (not where the item came from)."""
        out = {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}
        if self.labels:
            out["labels"] = [list(kv) for kv in self.labels]
        return out

    def as_row(self) -> dict:
        """The item as one JSONL object (labels as columns), as ``parse_jsonl`` reads it back."""
        row = {f: getattr(self, f) for f in FIELDS if getattr(self, f) is not None}
        if self.is_pair and row.get("prompt") == self.clean:
            del row["prompt"]
        return {**row, **dict(self.labels)}


@dataclass(frozen=True)
class Suite:
    name: str  # the file's name, "pasted list", "template", or an example's name
    items: tuple[SuiteItem, ...]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def columns(self) -> list[str]:
        """The label columns, in the order they first appear."""
        seen: dict[str, None] = {}
        for item in self.items:
            for k, _ in item.labels:
                seen.setdefault(k, None)
        return list(seen)

    @property
    def pairs(self) -> list[SuiteItem]:
        return [i for i in self.items if i.is_pair]

    def key(self) -> list[dict]:
        return [i.key() for i in self.items]

    def to_jsonl(self) -> str:
        return "".join(json.dumps(i.as_row(), ensure_ascii=False) + "\n" for i in self.items)


# ---------------------------------------------------------------- one item from one row

def _text_or_none(value, field: str, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise LensError(f"{where}: '{field}' must be text, not {json.dumps(value, ensure_ascii=False)}")
    return value


def _prompt(value, field: str, where: str) -> str:
    text = _text_or_none(value, field, where)
    if text is None:
        raise LensError(f"{where}: the {field} is empty")
    if not text.strip():
        raise LensError(f"{where}: the {field} is only white space")
    return text


def _position(value, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (
            isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
        raise LensError(f"{where}: 'position' must be a whole number (0 the first token, -1 the last), "
                        f"not {json.dumps(value, ensure_ascii=False)}")
    return int(value)


def _label(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def item_from_row(row: Mapping, where: str) -> SuiteItem:
    """One item from a row of named values; ``where`` names it in messages ("capitals.jsonl line 3")."""
    clean, corrupt = row.get("clean"), row.get("corrupt")
    has_clean, has_corrupt = clean not in (None, ""), corrupt not in (None, "")
    if has_clean != has_corrupt:
        raise LensError(f"{where} has '{'clean' if has_clean else 'corrupt'}' but no "
                        f"'{'corrupt' if has_clean else 'clean'}': a pair needs both")
    pair = has_clean and has_corrupt
    if pair:
        clean, corrupt = _prompt(clean, "clean prompt", where), _prompt(corrupt, "corrupted prompt", where)
    elif "prompt" not in row:
        raise LensError(f"{where} has no 'prompt' (nor a 'clean' and 'corrupt' pair)")
    prompt = clean if pair and row.get("prompt") in (None, "") else _prompt(row.get("prompt"), "prompt", where)
    labels = tuple((str(k), _label(v)) for k, v in row.items() if k not in FIELDS and k is not None)
    return SuiteItem(prompt=prompt, target=_text_or_none(row.get("target"), "target", where),
                     foil=_text_or_none(row.get("foil"), "foil", where), clean=clean if pair else None,
                     corrupt=corrupt if pair else None, position=_position(row.get("position"), where),
                     labels=labels, where=where)


def _suite(name: str, items: list[SuiteItem]) -> Suite:
    if not items:
        raise LensError(f"{name} holds no prompts")
    if len(items) > MAX_ITEMS:
        raise LensError(f"{name} holds {len(items):,} prompts; a suite may hold at most {MAX_ITEMS:,}")
    return Suite(name=name, items=tuple(items))


# ---------------------------------------------------------------- the sources

def jsonl_rows(text: str, name: str) -> list[tuple[str, dict]]:
    """(where, object) per non-blank line of JSONL ``text``."""
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LensError(f"{name} line {n} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise LensError(f"{name} line {n} is not a JSON object with named fields (e.g. {{\"prompt\": \"…\"}})")
        rows.append((f"{name} line {n}", obj))
    return rows


def csv_rows(text: str, name: str, need_prompt: bool = True) -> list[tuple[str, dict]]:
    """(where, row) per data row of CSV ``text`` (a header row first); ``need_prompt``: a header without a
    ``prompt`` column (nor ``clean`` and ``corrupt``) is an error."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        while header is not None and not any(c.strip() for c in header):
            header = next(reader, None)  # blank lines before the header
        if header is None:
            return []
        header = [h.strip() for h in header]
        if len(set(header)) != len(header) or "" in header:
            raise LensError(f"{name}: the header row must name every column once (it is {header})")
        rows = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            where = f"{name} line {reader.line_num}"
            if len(cells) != len(header):
                raise LensError(f"{where} has {len(cells)} cells; the header names {len(header)} columns")
            rows.append((where, dict(zip(header, cells))))
    except csv.Error as exc:
        raise LensError(f"{name} line {reader.line_num} is not valid CSV ({exc})") from None
    if need_prompt and rows and "prompt" not in header and not {"clean", "corrupt"} <= set(header):
        raise LensError(f"{name} has no 'prompt' column (nor 'clean' and 'corrupt'): its columns are "
                        f"{', '.join(header)}")
    return rows


def parse_jsonl(text: str, name: str = "JSONL") -> Suite:
    return _suite(name, [item_from_row(row, where) for where, row in jsonl_rows(text, name)])


def parse_csv(text: str, name: str = "CSV") -> Suite:
    return _suite(name, [item_from_row(row, where) for where, row in csv_rows(text, name)])


def parse_lines(text: str, name: str = "pasted list") -> Suite:
    """One prompt per line; a line with tabs is prompt, target and foil. A prompt keeps its spaces (they are
    tokens), only the line break is dropped."""
    items = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) > 3:
            raise LensError(f"{name} line {n} has {len(parts)} tab-separated parts; give prompt, target and foil "
                            "at most")
        row = dict(zip(("prompt", "target", "foil"), parts))
        items.append(item_from_row(row, f"{name} line {n}"))
    return _suite(name, items)


def read_text(path: str | Path) -> str:
    p = Path(path).expanduser()
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise LensError(f"{path} is {p.stat().st_size / 1e6:.1f} MB; a suite file may hold at most "
                            f"{MAX_FILE_BYTES / 1e6:.0f} MB")
        return p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LensError(f"cannot read {path}: it is not UTF-8 text") from None
    except IsADirectoryError:
        raise LensError(f"{path} is a folder, not a suite file") from None
    except OSError as exc:
        raise LensError(f"cannot read {path}: {exc.strerror or exc}") from None


SUFFIXES = (".jsonl", ".csv", ".txt")


def _parser(file_name: str):
    parse = {".jsonl": parse_jsonl, ".csv": parse_csv, ".txt": parse_lines}.get(Path(file_name).suffix.lower())
    if parse is None:
        raise LensError(f"{file_name}: a suite file ends in .jsonl (one JSON object a line), .csv (a header row, "
                        "then one prompt a row) or .txt (one prompt a line)")
    return parse


def read_suite(path: str | Path, name: str | None = None) -> Suite:
    """A suite file: ``.jsonl``, ``.csv``, or ``.txt`` (one prompt per line)."""
    p = Path(path)
    parse = _parser(p.name)
    text = read_text(p)
    if not text.strip():
        raise LensError(f"{p.name} is empty: no prompts")
    return parse(text, name or p.name)


def suite_from_bytes(data: bytes, file_name: str) -> Suite:
    """An uploaded suite file, read as ``read_suite`` reads one from disk (its name says its format)."""
    parse = _parser(file_name)
    if len(data) > MAX_FILE_BYTES:
        raise LensError(f"{file_name} is {len(data) / 1e6:.1f} MB; a suite file may hold at most "
                        f"{MAX_FILE_BYTES / 1e6:.0f} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LensError(f"cannot read {file_name}: it is not UTF-8 text") from None
    if not text.strip():
        raise LensError(f"{file_name} is empty: no prompts")
    return parse(text, file_name)


def fillers_from_csv(text: str, name: str = "fillers") -> list[dict]:
    """A template's table of fillers written as CSV: a header row naming the slots (and ``target``, ``foil``,
    label columns), then one row per prompt."""
    if not text.strip():
        raise LensError(f"{name}: the table of fillers is empty: give a header row, then one row per prompt")
    return [row for _, row in csv_rows(text, name, need_prompt=False)]


# ---------------------------------------------------------------- templates and counterfactual pairs

def slots(template: str) -> list[str]:
    """The named slots of ``template``, in order, each once."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise LensError(f"the template {template!r} is not valid ({exc}); write a slot as {{name}} and a brace "
                        "as {{ or }}") from None
    out: list[str] = []
    for f in fields:
        if not f.isidentifier():
            raise LensError(f"the template's slot {{{f}}} is not a name: write slots as {{landmark}}, {{city}}, …")
        if f not in out:
            out.append(f)
    if not out:
        raise LensError(f"the template {template!r} has no slot: write one as {{name}}")
    return out


def fill(template: str, row: Mapping, where: str) -> str:
    values = {}
    for s in slots(template):
        if s not in row or row[s] is None:
            raise LensError(f"{where} has no value for the slot {{{s}}} (its columns: {', '.join(map(str, row))})")
        values[s] = _label(row[s])
    return template.format_map(values)


def _template_rows(template: str, fillers: Sequence[Mapping], name: str) -> list[tuple[str, dict]]:
    if not isinstance(template, str) or not template.strip():
        raise LensError("the template is empty: write a prompt with slots, e.g. 'The capital of {country} is'")
    names = slots(template)
    reserved = [s for s in names if s in FIELDS]
    if reserved:
        raise LensError(f"the slot {{{reserved[0]}}} has a reserved name; call it something else")
    if not fillers:
        raise LensError(f"{name}: the table of fillers is empty: give one row per prompt")
    rows = []
    for n, row in enumerate(fillers, 1):
        where = f"{name} filler row {n}"
        if not isinstance(row, Mapping):
            raise LensError(f"{where} is not a row of named values")
        if "prompt" in row:
            raise LensError(f"{where} has a 'prompt' column: with a template the prompt is the template filled in")
        # The slot values stay as labels (a column to facet by); target, foil and position keep their meaning.
        rows.append((where, {"prompt": fill(template, row, where), **row}))
    return rows


def from_template(template: str, fillers: Sequence[Mapping], name: str = "template") -> Suite:
    """One item per filler row: the template with the row's slot values filled in."""
    return _suite(name, [item_from_row(row, where) for where, row in _template_rows(template, fillers, name)])


@dataclass(frozen=True)
class PairBuild:
    """What ``counterfactual_pairs`` made: the kept pairs and the ones left out, each with its reason."""

    suite: Suite | None  # None when every pair was left out
    left_out: tuple[dict, ...]  # {"where", "clean", "corrupt", "reason"}


def counterfactual_pairs(template: str, fillers: Sequence[Mapping], count_tokens: Callable[[str], int],
                         partners: str = "next", name: str = "counterfactual pairs") -> PairBuild:
    """Clean/corrupt pairs from ``template``: filler row i is the clean prompt (its target the answer) against
    row j as the corrupted one (row j's target the foil, unless row i names a foil). ``partners``: "next"
    pairs each row with the following one (the last with the first); "all" with every other row.
    ``count_tokens(text)`` is the model's token count: pairs that differ in it are left out with the reason."""
    if partners not in PARTNERS:
        raise LensError(f"unknown partners {partners!r}; choose {' or '.join(PARTNERS)}")
    rows = [(where, item_from_row(row, where)) for where, row in _template_rows(template, fillers, name)]
    if len(rows) < 2:
        raise LensError(f"{name}: counterfactual pairs need at least two filler rows")
    for where, item in rows:
        if item.target is None:
            raise LensError(f"{where} has no target: a pair needs each row's answer")
    counts = [count_tokens(item.prompt) for _, item in rows]
    n = len(rows)
    kept, left_out = [], []
    for i in range(n):
        others: Iterable[int] = [(i + 1) % n] if partners == "next" else [j for j in range(n) if j != i]
        for j in others:
            a, b = rows[i][1], rows[j][1]
            where = f"{name} filler rows {i + 1} and {j + 1}"
            foil = a.foil if a.foil is not None else b.target
            reason = None
            if counts[i] != counts[j]:
                reason = f"the clean prompt has {counts[i]} tokens and the corrupted one {counts[j]}"
            elif a.prompt == b.prompt:
                reason = "both rows make the same prompt"
            elif foil == a.target:
                reason = f"both rows answer {a.target!r}: there is nothing to restore"
            if reason is not None:
                left_out.append({"where": where, "clean": a.prompt, "corrupt": b.prompt, "reason": reason})
                continue
            kept.append(SuiteItem(prompt=a.prompt, target=a.target, foil=foil, clean=a.prompt, corrupt=b.prompt,
                                  labels=a.labels, where=where))
    suite = Suite(name=name, items=tuple(kept)) if kept else None
    if suite is not None and len(kept) > MAX_ITEMS:
        raise LensError(f"{name}: {len(kept):,} pairs; a suite may hold at most {MAX_ITEMS:,} (use partners='next')")
    return PairBuild(suite=suite, left_out=tuple(left_out))


# ---------------------------------------------------------------- the shipped examples

def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES_DIR.glob("*.jsonl"))


def example(name: str) -> Suite:
    """A shipped suite by name (``capitals``, ``landmarks``, ``indirect-object``, ``multilingual``)."""
    if name not in example_names():
        raise LensError(f"no shipped suite {name!r}; choose {', '.join(example_names())}")
    return read_suite(EXAMPLES_DIR / f"{name}.jsonl", name=name)
