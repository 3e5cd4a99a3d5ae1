"""GGUF conversion under faults: a conversion killed half-way is redone, never loaded
half-written; a damaged converted folder is converted again; converted folders of
arbitrary GGUF files stay bounded. Transformers' GGUF reader is replaced by a tiny
random model (the real one takes half a minute); everything LayerLens does around it
(temporary folder, manifest, rename, sweep, reload) runs for real."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lens.model import convert, loading
from lens.model.convert import convert_gguf, converted_dir, is_complete, prune_converted

REPO = Path(__file__).resolve().parent.parent

# Makes transformers' GGUF loading return tiny-llama: used in-process and in the killed writer.
FAKE_READER = textwrap.dedent("""
    import transformers
    from lens.model.tiny import tiny_model

    def _fake_model(*a, **k):
        return tiny_model("llama")[0]

    def _fake_tokenizer(*a, **k):
        return tiny_model("llama")[1]

    transformers.AutoModelForCausalLM.from_pretrained = staticmethod(_fake_model)
    transformers.AutoTokenizer.from_pretrained = staticmethod(_fake_tokenizer)
""")


@pytest.fixture
def fake_reader(monkeypatch):
    import transformers

    from lens.model.tiny import tiny_model

    real_model, real_tok = transformers.AutoModelForCausalLM.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def model(where, *a, gguf_file=None, **k):
        return tiny_model("llama")[0] if gguf_file else real_model(where, *a, **k)

    def tok(where, *a, gguf_file=None, **k):
        return tiny_model("llama")[1] if gguf_file else real_tok(where, *a, **k)

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", model)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tok)


def fake_gguf(folder: Path, name: str = "toy.gguf", content: bytes = b"GGUF toy") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    {fake}
    import transformers.modeling_utils as mu
    from pathlib import Path
    from lens.model.convert import convert_gguf

    real_save = mu.PreTrainedModel.save_pretrained

    def save_then_hang(self, where, *a, **k):
        real_save(self, where, *a, **k)
        Path(where, "model.safetensors").write_bytes(b"half")  # as if cut off while writing
        print("writing", flush=True)
        time.sleep(600)

    mu.PreTrainedModel.save_pretrained = save_then_hang
    convert_gguf(Path({gguf!r}), Path({out!r}))
""")


def test_a_conversion_killed_half_way_is_redone_never_loaded(tmp_path, fake_reader):
    gguf = fake_gguf(tmp_path / "src")
    out = converted_dir(tmp_path / "cache", "toy", gguf)
    script = KILLED_WRITER.format(repo=str(REPO), fake=FAKE_READER, gguf=str(gguf), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not out.exists() and not is_complete(out)  # nothing looks finished
    (left,) = out.parent.glob("*.tmp-*")  # only the dead writer's temporary folder

    loaded = loading._load_gguf("toy", "gguf", gguf, tmp_path / "cache", None, "cpu")
    assert is_complete(out) and not left.exists()  # redone, and the dead writer's folder swept
    reference = __import__("lens.model.tiny", fromlist=["tiny_model"]).tiny_model("llama")[0]
    for (name, p), q in zip(loaded.model.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)


def test_a_damaged_converted_folder_is_converted_again(tmp_path, fake_reader, monkeypatch):
    gguf = fake_gguf(tmp_path / "src")
    out = convert_gguf(gguf, converted_dir(tmp_path / "cache", "toy", gguf))
    weights = out / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # the manifest still lists it: looks complete
    assert is_complete(out)
    calls = []
    real = convert.convert_gguf
    monkeypatch.setattr(loading, "convert_gguf", lambda *a, **k: calls.append(1) or real(*a, **k))
    loaded = loading._load_gguf("toy", "gguf", gguf, tmp_path / "cache", None, "cpu")
    assert calls == [1]
    assert loaded.adapter.n_layers == 3


def test_a_conversion_that_fails_leaves_no_folder_and_a_clear_error(tmp_path, monkeypatch):
    import transformers

    from lens.errors import LensError

    def broken(*a, **k):
        raise ValueError("GGUF model with architecture toyformer is not supported yet")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", broken)
    gguf = fake_gguf(tmp_path / "src")
    out = converted_dir(tmp_path / "cache", "toy", gguf)
    with pytest.raises(LensError, match="could not convert toy.gguf: GGUF model with architecture toyformer"):
        convert_gguf(gguf, out, progress=lambda f, m: None)
    assert not out.exists() and not list(out.parent.glob("*.tmp-*"))


def test_converted_folders_of_user_files_stay_bounded(tmp_path):
    models = tmp_path / "models"
    bundled = models / "smollm2-135m-0123456789abcdef"
    bundled.mkdir(parents=True)
    made = []
    for i in range(5):
        d = models / f"user{i}-{i:016x}"
        d.mkdir()
        os.utime(d, (time.time() - 100 + i, time.time() - 100 + i))
        made.append(d)
    removed = prune_converted(models, keep=made[0], protected={"smollm2-135m"}, limit=3)
    assert set(removed) == {made[1], made[2]}  # the oldest go; the one in use and the bundled model stay
    assert sorted(p.name for p in models.iterdir()) == sorted([bundled.name, made[0].name, made[3].name, made[4].name])
