"""BERT, GPT-2 and Llama at their published shapes, built from a Hugging Face transformers configuration with
random weights (transformers' own initialisation, seeded by gradbench's torch.manual_seed): never a download,
nothing that reaches the network. Needs the ``gradbench[zoo]`` extra (transformers 4.46 to 5.x).

Attention is pinned to transformers' "sdpa" implementation (torch.nn.functional.scaled_dot_product_attention,
whose kernel torch picks by device, dtype and mask) in every family and checked after building: transformers'
default attention differs between versions and models, and records must be comparable across them.

The language models are built with ``use_cache=False``: a step here is a whole-sequence forward (training or
scoring), and a key/value cache would make the output hold every layer's keys and values, as generation does.

Importing transformers and building these models changes none of the global state gradbench checks (the import
adds only libraries' filters for their own warning classes, which the check allows: sympy's 'once' for
SymPyDeprecationWarning under 5.x, urllib3's and requests' under 4.46), so nothing is undone here;
tests/test_zoo_text.py checks it for every family.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..family import Built

ATTENTION = "sdpa"

# size -> (hidden, layers, heads, intermediate); the rest are transformers' BertConfig defaults (vocab 30522,
# 512 positions, 2 token types, GELU, dropout 0.1 on hidden states and attention probabilities).
_BERT_SIZES = {"base": (768, 12, 12, 3072), "large": (1024, 24, 16, 4096)}
BERT_MAX_POSITIONS = 512

# size -> (n_embd, n_layer, n_head); vocab 50257, 1024 positions, dropout 0.1 (residual, embedding, attention).
_GPT2_SIZES = {"small": (768, 12, 12), "medium": (1024, 24, 16), "large": (1280, 36, 20), "xl": (1600, 48, 25)}
GPT2_MAX_POSITIONS = 1024

# size -> (hidden, intermediate, layers, heads, kv heads, head_dim, tied, RoPE scaling factor): Llama 3.2 1B and
# 3B, Llama 3.1 8B as published (vocab 128256, RoPE theta 500000 with llama3 scaling, RMSNorm eps 1e-5).
_LLAMA_SIZES = {
    "1b": (2048, 8192, 16, 32, 8, 64, True, 32.0),
    "3b": (3072, 8192, 28, 24, 8, 128, True, 32.0),
    "8b": (4096, 14336, 32, 32, 8, 128, False, 8.0),
}
LLAMA_VOCAB = 128256
LLAMA_MAX_POSITIONS = 131072


def _size_row(table: dict, family: str, size: str):
    if size not in table:
        raise ValueError(f"unknown {family} size {size!r}; valid sizes: {', '.join(table)}")
    return table[size]


def _check_seq_len(family: str, seq_len, lowest: int, limit: int, why: str = "") -> None:
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or not lowest <= seq_len <= limit:
        raise ValueError(f"bad seq_len {seq_len!r} for {family}: an integer from {lowest} to {limit} "
                         f"(its maximum positions){why}")


def _token_input(vocab: int, seq_len: int):
    def make_input(batch_size: int) -> dict:
        return {"input_ids": torch.randint(vocab, (batch_size, seq_len)),
                "attention_mask": torch.ones(batch_size, seq_len, dtype=torch.long)}
    return make_input


def _checked_attention(model):
    found = model.config._attn_implementation
    if found != ATTENTION:  # transformers chose another: records would not be comparable
        raise RuntimeError(f"{type(model).__name__} was built with attention {found!r}, not {ATTENTION!r}")
    return model


def language_model_loss(output, batch) -> torch.Tensor:
    """Next-token cross-entropy with labels = input_ids, as transformers computes it for ``labels=input_ids``:
    logits[:, :-1] against input_ids[:, 1:], in float32 whatever the model's dtype."""
    logits = output.logits[:, :-1].float()
    labels = batch["input_ids"][:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1))


def bert(size: str, seq_len: int = 128) -> Built:
    """transformers' BertModel with its pooler (base 109,482,240 parameters, large 335,141,888), dropout 0.1,
    SDPA attention. The published model has no classifier: the loss is cross-entropy of the pooled output
    (hidden_size wide) against labels arange(batch) % hidden_size, so that every parameter gets a gradient
    without adding a head that is not BERT's."""
    from transformers import BertConfig, BertModel

    hidden, layers, heads, intermediate = _size_row(_BERT_SIZES, "bert", size)
    _check_seq_len("bert", seq_len, 1, BERT_MAX_POSITIONS)
    config = BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=BERT_MAX_POSITIONS,
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, attn_implementation=ATTENTION)
    model = _checked_attention(BertModel(config, add_pooling_layer=True))

    def loss(output, batch) -> torch.Tensor:
        pooled = output.pooler_output
        labels = torch.arange(pooled.size(0), device=pooled.device) % hidden
        return F.cross_entropy(pooled, labels)

    return Built(model, _token_input(config.vocab_size, seq_len), loss)


def gpt2(size: str, seq_len: int = 128) -> Built:
    """transformers' GPT2LMHeadModel (small 124,439,808 parameters, medium 354,823,168, large 774,030,080,
    xl 1,557,611,200; the LM head is tied to the token embedding and counted once), dropout 0.1, SDPA
    attention; language-model loss with labels = inputs. seq_len is at least 2: the loss needs a next token."""
    from transformers import GPT2Config, GPT2LMHeadModel

    n_embd, n_layer, n_head = _size_row(_GPT2_SIZES, "gpt2", size)
    _check_seq_len("gpt2", seq_len, 2, GPT2_MAX_POSITIONS, "; 2 at least, for a next token to predict")
    config = GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=n_head, n_positions=GPT2_MAX_POSITIONS,
                        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1, use_cache=False,
                        attn_implementation=ATTENTION)
    model = _checked_attention(GPT2LMHeadModel(config))
    return Built(model, _token_input(config.vocab_size, seq_len), language_model_loss)


def llama(size: str, seq_len: int = 128) -> Built:
    """transformers' LlamaForCausalLM with the published Llama 3.x shapes: 1b = Llama 3.2 1B (1,235,814,400
    parameters, tied embeddings), 3b = Llama 3.2 3B (3,212,749,824, tied), 8b = Llama 3.1 8B (8,030,261,248,
    untied); grouped-query attention (8 key/value heads) through SDPA, RoPE theta 500000 with llama3 scaling.
    Llama has no dropout (attention_dropout 0.0), so train and eval forwards are equal. Language-model loss
    with labels = inputs; seq_len is at least 2."""
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, intermediate, layers, heads, kv_heads, head_dim, tied, factor = _size_row(_LLAMA_SIZES, "llama", size)
    _check_seq_len("llama", seq_len, 2, LLAMA_MAX_POSITIONS, "; 2 at least, for a next token to predict")
    # rope_theta and rope_scaling as 4.x takes them; 5.x folds both into rope_parameters.
    rope_scaling = {"rope_type": "llama3", "factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 8192}
    config = LlamaConfig(vocab_size=LLAMA_VOCAB, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         head_dim=head_dim, tie_word_embeddings=tied, rope_theta=500000.0, rope_scaling=rope_scaling,
                         max_position_embeddings=LLAMA_MAX_POSITIONS, rms_norm_eps=1e-5, attention_dropout=0.0,
                         use_cache=False, attn_implementation=ATTENTION)
    model = _checked_attention(LlamaForCausalLM(config))
    return Built(model, _token_input(LLAMA_VOCAB, seq_len), language_model_loss)
