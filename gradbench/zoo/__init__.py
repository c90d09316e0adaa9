"""Reference families at their published sizes, built from configuration with random weights (never a
download): ResNet and ViT (torchvision's architectures, written here so that no compiled torchvision op
is needed), BERT, GPT-2 and Llama (Hugging Face transformers, the ``gradbench[zoo]`` extra).

Nothing heavy is imported here: a family's module is imported when one of its models is built.
"""
from __future__ import annotations

from ..family import Family

RESNET_SIZES = ("18", "34", "50", "101", "152")
VIT_SIZES = ("ti_16", "s_16", "b_16", "l_16")
BERT_SIZES = ("base", "large")
GPT2_SIZES = ("small", "medium", "large", "xl")
LLAMA_SIZES = ("1b", "3b", "8b")


def _resnet(size, image_size=224):
    from .vision import resnet
    return resnet(size, image_size=image_size)


def _vit(size, image_size=224):
    from .vision import vit
    return vit(size, image_size=image_size)


def _bert(size, seq_len=128):
    from .text import bert
    return bert(size, seq_len=seq_len)


def _gpt2(size, seq_len=128):
    from .text import gpt2
    return gpt2(size, seq_len=seq_len)


def _llama(size, seq_len=128):
    from .text import llama
    return llama(size, seq_len=seq_len)


ZOO_FAMILIES = (
    Family("resnet", RESNET_SIZES, _resnet, inputs="image_size", default_input=224, source="torchvision",
           description="torchvision's ResNet-18 to 152 (BatchNorm), 1000 classes, cross-entropy"),
    Family("vit", VIT_SIZES, _vit, inputs="image_size", default_input=224, source="torchvision",
           description="torchvision's VisionTransformer (ti/s as timm's vit_tiny/small_patch16), cross-entropy"),
    Family("bert", BERT_SIZES, _bert, inputs="seq_len", default_input=128, extra="zoo", source="transformers",
           description="BertModel with pooler (dropout 0.1); cross-entropy on the pooled output"),
    Family("gpt2", GPT2_SIZES, _gpt2, inputs="seq_len", default_input=128, extra="zoo", source="transformers",
           description="GPT2LMHeadModel (tied embeddings, dropout 0.1); language-model loss, labels = inputs"),
    Family("llama", LLAMA_SIZES, _llama, inputs="seq_len", default_input=128, extra="zoo", source="transformers",
           description="LlamaForCausalLM with Llama 3.2 1B/3B and 3.1 8B shapes; language-model loss"),
)
REFERENCE_MODELS = tuple(family.name for family in ZOO_FAMILIES)  # tools/gpu-check runs one size of each
