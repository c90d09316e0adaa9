"""Held-out models for tools/predict_check.py (docs/predict.md, the second table): standard torch layers and
transformers models in shapes this project does not ship."""
import torch
from torch import nn
import torch.utils.checkpoint as cp


def convbn(size="small"):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 32, 3, stride=2),
                      nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return m, lambda b: torch.randn(b, 3, 32, 32)


class Recurrent(nn.Module):
    def __init__(self, cell=nn.LSTM):
        super().__init__()
        self.rnn = cell(32, 64, num_layers=2, batch_first=True, dropout=0.1 if cell is nn.LSTM else 0.0)
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(y[:, -1])


def lstm(size="small"):
    torch.manual_seed(0)
    return Recurrent(nn.LSTM), lambda b: torch.randn(b, 20, 32)


def gru(size="small"):
    torch.manual_seed(0)
    return Recurrent(nn.GRU), lambda b: torch.randn(b, 20, 32)


class Ckpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(128, 128), nn.GELU(), nn.Dropout(0.1)) for _ in range(4))
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        for b in self.blocks:
            x = cp.checkpoint(b, x, use_reentrant=False) if self.training else b(x)
        return self.head(x)


def ckpt(size="small"):
    torch.manual_seed(0)
    return Ckpt(), lambda b: torch.randn(b, 128)


def bnmlp(size="small"):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10)), lambda b: torch.randn(b, 64)


class FDrop(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(64, 256), nn.Linear(256, 10)

    def forward(self, x):
        return self.b(torch.nn.functional.dropout(torch.relu(self.a(x)), 0.2, training=self.training))


def fdrop(size="small"):
    torch.manual_seed(0)
    return FDrop(), lambda b: torch.randn(b, 64)



class Wrap(torch.nn.Module):
    """A transformers model called with input_ids, and with an all-ones attention_mask where ``mask``."""

    def __init__(self, m, mask=False):
        super().__init__()
        self.m, self.mask = m, mask

    def forward(self, ids):
        return self.m(input_ids=ids, attention_mask=torch.ones_like(ids) if self.mask else None)[0]


def _bert(attention: str, mask: bool = False):
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=128, attn_implementation=attention)
    return Wrap(transformers.BertModel(config), mask), lambda b: torch.randint(0, 1000, (b, 64))


def _gpt2(attention: str, mask: bool = False):
    import transformers

    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=128,
                                     bos_token_id=0, eos_token_id=0, attn_implementation=attention)
    return Wrap(transformers.GPT2LMHeadModel(config), mask), lambda b: torch.randint(0, 1000, (b, 64))


def bert_eager(size="small"):
    return _bert("eager")


def bert_sdpa(size="small"):
    return _bert("sdpa")


def bert_sdpa_mask(size="small"):
    return _bert("sdpa", mask=True)


def gpt2_eager(size="small"):
    return _gpt2("eager")


def gpt2_sdpa(size="small"):
    return _gpt2("sdpa")


def gpt2_sdpa_mask(size="small"):
    return _gpt2("sdpa", mask=True)
