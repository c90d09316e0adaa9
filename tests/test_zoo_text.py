"""The text families of the zoo (BERT, GPT-2, Llama through transformers): published parameter counts (on the
meta device), outputs, losses and gradients of bert base and gpt2 small built for real at batch 2, seq 8,
dropout as published, seeded initialisation, and a clean global state after building."""
import math

import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from torch import nn  # noqa: E402

from gradbench import state  # noqa: E402
from gradbench.models import FAMILIES  # noqa: E402
from gradbench.zoo import text  # noqa: E402

BATCH, SEQ = 2, 8


def _built_cleanly(family, size, device="cpu", **inputs):
    """Build as a Workload does (inside the clean-state guard, seeded 0) and return what the guard saw. The
    guard sets the default device to the CPU: a meta build enters the meta device inside it."""
    guard = state.CleanState(state.expected_state(0))
    with guard:
        torch.manual_seed(0)
        with torch.device(device):
            built = FAMILIES[family].build(size, **inputs)
    return built, guard.changes


# Module-scoped: each real build takes one or two seconds. The first of these also imports the modeling
# modules of transformers inside the guard (when this file's tests run first in their process).
@pytest.fixture(scope="module")
def bert_base():
    return _built_cleanly("bert", "base", seq_len=SEQ)


@pytest.fixture(scope="module")
def gpt2_small():
    return _built_cleanly("gpt2", "small", seq_len=SEQ)


def test_building_changes_no_global_state(bert_base, gpt2_small):
    assert bert_base[1] == []
    assert gpt2_small[1] == []
    built, changes = _built_cleanly("llama", "1b", device="meta", seq_len=SEQ)
    assert changes == []
    assert built.model.lm_head.weight.device.type == "meta"


PUBLISHED = [("bert", "base", 109_482_240), ("bert", "large", 335_141_888),
             ("gpt2", "small", 124_439_808), ("gpt2", "medium", 354_823_168),
             ("gpt2", "large", 774_030_080), ("gpt2", "xl", 1_557_611_200),
             ("llama", "1b", 1_235_814_400), ("llama", "3b", 3_212_749_824), ("llama", "8b", 8_030_261_248)]


@pytest.mark.parametrize("family,size,params", PUBLISHED)
def test_parameter_counts_are_the_published_ones_and_attention_is_sdpa(family, size, params):
    with torch.device("meta"):
        model = getattr(text, family)(size).model
    assert sum(p.numel() for p in model.parameters()) == params  # a tied LM head once
    assert model.config._attn_implementation == "sdpa"


def test_every_size_of_the_registry_is_built_here():
    assert {f: FAMILIES[f].sizes for f in ("bert", "gpt2", "llama")} == \
        {"bert": ("base", "large"), "gpt2": ("small", "medium", "large", "xl"), "llama": ("1b", "3b", "8b")}


def test_gpt2_and_llama_1b_3b_tie_the_lm_head_and_8b_does_not():
    with torch.device("meta"):
        models = {s: text.llama(s).model for s in ("1b", "3b", "8b")}
        models["gpt2"] = text.gpt2("small").model
    tied = {name: m.lm_head.weight is m.get_input_embeddings().weight for name, m in models.items()}
    assert tied == {"1b": True, "3b": True, "8b": False, "gpt2": True}


@pytest.mark.parametrize("family,vocab", [("bert", 30522), ("gpt2", 50257), ("llama", 128256)])
def test_make_input_is_token_ids_and_a_full_attention_mask(family, vocab):
    with torch.device("meta"):
        built = FAMILIES[family].build(FAMILIES[family].sizes[0], seq_len=5)
    torch.manual_seed(0)
    batch = built.make_input(3)
    assert set(batch) == {"input_ids", "attention_mask"}
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.device.type == mask.device.type == "cpu"
    assert ids.shape == mask.shape == (3, 5)
    assert ids.dtype == mask.dtype == torch.int64
    assert 0 <= int(ids.min()) and int(ids.max()) < vocab
    assert torch.equal(mask, torch.ones(3, 5, dtype=torch.long))


@pytest.mark.parametrize("family,seq_len,message", [
    ("bert", 513, "bad seq_len 513 for bert: an integer from 1 to 512 (its maximum positions)"),
    ("bert", 0, "bad seq_len 0 for bert: an integer from 1 to 512 (its maximum positions)"),
    ("gpt2", 1025, "bad seq_len 1025 for gpt2: an integer from 2 to 1024 (its maximum positions); "
                   "2 at least, for a next token to predict"),
    ("gpt2", 1, "bad seq_len 1 for gpt2: an integer from 2 to 1024 (its maximum positions); "
                "2 at least, for a next token to predict"),
    ("llama", 131073, "bad seq_len 131073 for llama: an integer from 2 to 131072 (its maximum positions); "
                      "2 at least, for a next token to predict"),
    ("bert", 8.0, "bad seq_len 8.0 for bert: an integer from 1 to 512 (its maximum positions)"),
])
def test_a_bad_seq_len_names_the_value_and_the_limit(family, seq_len, message):
    with pytest.raises(ValueError) as raised:
        getattr(text, family)(FAMILIES[family].sizes[0], seq_len=seq_len)
    assert str(raised.value) == message


def test_an_unknown_size_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"^unknown llama size '7b'; valid sizes: 1b, 3b, 8b$"):
        text.llama("7b")


def _forward(built, seed=0, train=True):
    built.model.train(train)
    torch.manual_seed(123)
    batch = built.make_input(BATCH)
    torch.manual_seed(seed)
    return built.model(**batch), batch


def test_bert_output_loss_and_gradients(bert_base):
    built = bert_base[0]
    out, batch = _forward(built)
    assert type(out).__name__ == "BaseModelOutputWithPoolingAndCrossAttentions"
    assert out.last_hidden_state.shape == (BATCH, SEQ, 768)
    assert out.pooler_output.shape == (BATCH, 768)
    assert list(out.keys()) == ["last_hidden_state", "pooler_output"]
    loss = built.loss(out, batch)
    assert loss.shape == () and math.isfinite(loss.item())
    built.model.zero_grad(set_to_none=True)
    loss.backward()
    missing = [n for n, p in built.model.named_parameters() if p.grad is None]
    assert missing == []  # every parameter, the pooler's included
    # the position embeddings beyond the sequence and token type 1 (never used) get zero gradient rows
    embeddings = built.model.embeddings
    assert not embeddings.position_embeddings.weight.grad[SEQ:].any()
    assert embeddings.position_embeddings.weight.grad[:SEQ].abs().sum(dim=1).gt(0).all()
    assert not embeddings.token_type_embeddings.weight.grad[1].any()
    built.model.zero_grad(set_to_none=True)


def test_gpt2_output_loss_equals_transformers_own_and_reaches_every_parameter(gpt2_small):
    built = gpt2_small[0]
    out, batch = _forward(built, train=False)
    assert type(out).__name__ == "CausalLMOutputWithCrossAttentions"
    assert out.logits.shape == (BATCH, SEQ, 50257)
    assert list(out.keys()) == ["logits"]  # use_cache=False: the output holds no key/value cache
    with torch.no_grad():
        theirs = built.model(**batch, labels=batch["input_ids"]).loss
    loss = built.loss(out, batch)
    assert loss.shape == () and loss.dtype == torch.float32 and math.isfinite(loss.item())
    torch.testing.assert_close(loss, theirs)
    built.model.zero_grad(set_to_none=True)
    loss.backward()
    assert [n for n, p in built.model.named_parameters() if p.grad is None] == []  # wte: embedding and head
    assert not built.model.transformer.wpe.weight.grad[SEQ:].any()
    built.model.zero_grad(set_to_none=True)


def test_language_model_loss_upcasts_bfloat16_logits():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    batch = {"input_ids": torch.randint(7, (2, 4))}
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), batch["input_ids"][:, 1:].reshape(-1))
    out = type("Out", (), {"logits": logits.bfloat16()})()
    loss = text.language_model_loss(out, batch)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, atol=0.02, rtol=0)


@pytest.mark.parametrize("fixture", ["bert_base", "gpt2_small"])
def test_dropout_is_active_in_train_mode_only(fixture, request):
    built = request.getfixturevalue(fixture)[0]
    field = "pooler_output" if fixture == "bert_base" else "logits"
    with torch.no_grad():
        train = [getattr(_forward(built, seed)[0], field) for seed in (1, 2)]
        evals = [getattr(_forward(built, seed, train=False)[0], field) for seed in (1, 2)]
    assert not torch.equal(*train)
    assert torch.equal(*evals)


def test_llama_has_no_dropout():
    with torch.device("meta"):
        model = text.llama("1b").model
    assert model.config.attention_dropout == 0.0
    assert [m for m in model.modules() if isinstance(m, nn.Dropout)] == []


def test_llama_shapes_are_the_published_ones():
    with torch.device("meta"):
        configs = {s: text.llama(s).model.config for s in ("1b", "3b", "8b")}
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "head_dim", "vocab_size", "tie_word_embeddings", "rms_norm_eps")
    assert {s: tuple(getattr(c, f) for f in fields) for s, c in configs.items()} == {
        "1b": (2048, 8192, 16, 32, 8, 64, 128256, True, 1e-5),
        "3b": (3072, 8192, 28, 24, 8, 128, 128256, True, 1e-5),
        "8b": (4096, 14336, 32, 32, 8, 128, 128256, False, 1e-5),
    }


def test_the_seed_makes_the_weights(bert_base):
    """gradbench seeds torch before building: the same seed gives the same weights, drawn at random (normal,
    std initializer_range 0.02, as transformers initialises them; not a constant that any seed would give)."""
    first = bert_base[0].model.state_dict()
    torch.manual_seed(0)
    again = text.bert("base", seq_len=SEQ).model.state_dict()
    assert list(again) == list(first)
    assert [k for k in first if not torch.equal(again[k], first[k])] == []
    words = first["embeddings.word_embeddings.weight"]
    assert abs(words.std().item() - 0.02) < 0.001 and words[1].ne(words[2]).all()  # row 0 is padding: zeros
