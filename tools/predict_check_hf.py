"""Held-out transformers models in small configurations, for tools/predict_check.py (docs/predict.md, the third
table; a helper's attack of 2026-12-06 wrote them): python tools/predict_check.py tools/predict_check_hf.py:bart 4."""
import torch
from torch import nn
import transformers as T

class W(nn.Module):
    def __init__(self, m, fn):
        super().__init__(); self.m = m; self.fn = fn
    def forward(self, x):
        return self.fn(self.m, x)

def _ids(b, s=32, v=1000):
    return torch.randint(0, v, (b, s))

def vit(size="small"):
    torch.manual_seed(0)
    c = T.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, num_labels=10)
    return W(T.ViTForImageClassification(c), lambda m, x: m(pixel_values=x).logits), lambda b: torch.randn(b, 3, 32, 32)

def whisper(size="small"):
    torch.manual_seed(0)
    c = T.WhisperConfig(vocab_size=1000, num_mel_bins=16, encoder_layers=2, decoder_layers=2, d_model=64,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                        max_source_positions=32, max_target_positions=32, pad_token_id=0, bos_token_id=0,
                        eos_token_id=0, decoder_start_token_id=0)
    m = T.WhisperForConditionalGeneration(c)
    return W(m, lambda m, x: m(input_features=x, decoder_input_ids=torch.zeros(x.shape[0], 8, dtype=torch.long)).logits), \
        lambda b: torch.randn(b, 16, 64)

def t5(size="small"):
    torch.manual_seed(0)
    c = T.T5Config(vocab_size=1000, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=4,
                   decoder_start_token_id=0, pad_token_id=0)
    m = T.T5ForConditionalGeneration(c)
    return W(m, lambda m, x: m(input_ids=x, decoder_input_ids=x[:, :16]).logits), lambda b: _ids(b)

def distilbert(size="small"):
    torch.manual_seed(0)
    c = T.DistilBertConfig(vocab_size=1000, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=64)
    return W(T.DistilBertForSequenceClassification(c), lambda m, x: m(input_ids=x).logits), lambda b: _ids(b)

def wav2vec2(size="small"):
    torch.manual_seed(0)
    c = T.Wav2Vec2Config(vocab_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                         conv_dim=(32, 32, 32), conv_stride=(5, 2, 2), conv_kernel=(10, 3, 3),
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, mask_time_prob=0.0, layerdrop=0.0)
    return W(T.Wav2Vec2ForCTC(c), lambda m, x: m(input_values=x).logits), lambda b: torch.randn(b, 1600)

def clip_text(size="small"):
    torch.manual_seed(0)
    c = T.CLIPTextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64)
    return W(T.CLIPTextModel(c), lambda m, x: m(input_ids=x).pooler_output), lambda b: _ids(b)

def bart(size="small"):
    torch.manual_seed(0)
    c = T.BartConfig(vocab_size=1000, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=64)
    return W(T.BartForConditionalGeneration(c), lambda m, x: m(input_ids=x).logits), lambda b: _ids(b)

def llama(size="small"):
    torch.manual_seed(0)
    c = T.LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64)
    return W(T.LlamaForCausalLM(c), lambda m, x: m(input_ids=x).logits), lambda b: _ids(b)
