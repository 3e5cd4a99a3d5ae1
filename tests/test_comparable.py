"""Which models the "Two models" tab may set beside the sidebar's: what their files say before loading, checked
against the loaded models, and the reasons given for the others."""
import pytest

from lens.analysis.compare import ModelShape, peek_shape, shape_from_config, shape_of, why_not_comparable
from lens.engine_backend import local_backend
from lens.model.loading import load_model

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": 30, "vocab_size": 49152}
BERT = {"architectures": ["BertModel"], "model_type": "bert", "num_hidden_layers": 6, "vocab_size": 30522}


def test_a_config_says_whether_a_model_is_a_causal_language_model():
    assert shape_from_config("a", LLAMA) == ModelShape("a", True, 30, 49152, "")
    assert shape_from_config("b", BERT) == ModelShape("b", False, 6, 30522, "an encoder without a language-model head")
    bare = shape_from_config("c", {**LLAMA, "architectures": ["LlamaModel"]})  # saved without its head
    assert not bare.causal_lm and bare.kind == "a decoder without a language-model head"
    gpt2 = shape_from_config("d", {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": 12,
                                   "vocab_size": 50257})
    assert gpt2 == ModelShape("d", True, 12, 50257, "")


@pytest.mark.parametrize("ref", ["minilm-l6", "tiny-llama", "tiny-gpt2", "smollm2-135m"])
def test_what_the_files_say_is_what_the_loaded_model_is(ref):
    """The shape read from a model's files (config.json; the converted GGUF's for the bundled decoder) equals the
    one its loaded backend reports."""
    peeked = peek_shape(ref)
    if peeked is None:  # the bundled GGUF before its first conversion: only loading tells
        pytest.skip(f"{ref} not converted yet")
    assert peeked == shape_of(local_backend(load_model(ref), None).info())


def test_a_model_the_files_do_not_describe_is_unknown(tmp_path):
    assert peek_shape("someone/some-model") is None  # a hub id: only loading would tell
    assert peek_shape(str(tmp_path)) is None  # a folder without a config.json
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 3, "vocab_size": 258}')
    assert peek_shape(str(tmp_path)) == ModelShape(str(tmp_path), True, 3, 258, "")


def test_the_reason_a_model_cannot_be_compared():
    base = ModelShape("smollm2-135m", True, 30, 49152)
    assert why_not_comparable(base, ModelShape("tuned", True, 30, 49152)) is None
    assert why_not_comparable(base, shape_from_config("minilm-l6", BERT)) == \
        "minilm-l6 is an encoder without a language-model head"
    assert why_not_comparable(base, ModelShape("gpt2", True, 12, 50257)) == \
        "gpt2 has another tokenizer (50,257 tokens in its vocabulary, smollm2-135m 49,152)"
    assert why_not_comparable(base, ModelShape("deeper", True, 32, 49152)) == "deeper has 32 layers and smollm2-135m 30"
    assert why_not_comparable(base, base) == "smollm2-135m is the sidebar's model itself"
    tiny = [shape_of(local_backend(load_model(f"tiny-{a}"), None).info()) for a in ("llama", "mistral")]
    assert why_not_comparable(*tiny) is None  # the tiny models share one tokenizer and their depth


def test_a_link_value_out_of_range_is_named_with_what_is_shown():
    from lens.views.attention import link_note

    positions = [str(i) for i in range(6)]
    assert link_note("position", "999", positions, "the prompt's 6 tokens", "the last position, 5") == \
        "position 999 is past the prompt's 6 tokens: showing the last position, 5."
    assert link_note("position", "3", positions, "the prompt's 6 tokens", "the last position, 5") is None
    assert link_note("position", None, positions, "the prompt's 6 tokens", "the last position, 5") is None
    rows = ["emb", *(f"L{i}" for i in range(1, 31))]
    assert link_note("row", "L99", rows, "the rows emb, L1–L30", "row L10", "patching") == \
        "row L99 is past the rows emb, L1–L30: patching row L10."
    assert link_note("row", "L7", rows, "the rows", "row L10") is None
    layers = [str(i) for i in range(1, 31)]
    assert link_note("layer", "0", layers, "the model's 30 layers", "layer 1") == \
        "layer 0 is not one of the model's 30 layers: showing layer 1."
    assert link_note("layer", "top", layers, "the model's 30 layers", "layer 1") == \
        "layer top is not one of the model's 30 layers: showing layer 1."
    assert link_note("head", "head 99", ["0", "1", "head 0", "head 1"], "layer 1's 2 heads", "head 0") == \
        "head 99 is past layer 1's 2 heads: showing head 0."
