"""Offline building blocks for tests: tiny tokenizers (plain, ChatML, Llama 3), tiny models.

The BPE tokenizer trains in well under a second; the chat tokenizers in the ChatML and Llama-3
families are built on it; the Llama and GPT-2 models are built from a config (random init, fixed
seed).

Nothing here touches a hub. Requires the `tokenizers` and `transformers` packages.
"""

from __future__ import annotations

from functools import lru_cache

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "what is the capital of france? the capital of france is paris.",
    "question: how many legs does a spider have? answer: a spider has eight legs.",
    "write a haiku about the sea. waves fold into foam, the tide keeps its slow promise",
    "translate to german: good morning. guten morgen.",
    "user: hello there assistant: hi! how can i help you today?",
    "numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 and symbols , . ! ? : ; ' \" ( ) -",
] * 4
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


@lru_cache(maxsize=None)
def _trained():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer(*, pad_is_eos: bool = False, add_bos: bool = True,
                   padding_side: str = "right"):
    """A Llama-style PreTrainedTokenizerFast: BOS `<s>` added by the post-processor, EOS `</s>`.

    pad_is_eos: use EOS as the pad token, as many fine-tuning recipes do.
    """
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer.from_str(_trained())
    if add_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="</s>" if pad_is_eos else "<pad>", padding_side=padding_side,
    )


# Chat templates in the two header families, with `{% generation %}` around what an assistant
# writes, so that `apply_chat_template(..., return_assistant_tokens_mask=True)` works.
_CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + END }}{%- endgeneration %}{{- AFTER + '\\n' }}"
    "{%- else %}{{- message['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_LLAMA3 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + END }}{%- endgeneration %}{{- AFTER }}"
    "{%- else %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)


def _template(template: str, end: str, end_in_generation: bool) -> str:
    inside, after = (end, "") if end_in_generation else ("", end)
    return template.replace("END", repr(inside)).replace("AFTER", repr(after))


def _with_tokens(specials: list[str]):
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(_trained())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def chatml_tokenizer(*, special_markers: bool = True, end_in_generation: bool = True):
    """A Qwen/SmolLM-style ChatML tokenizer: `<|im_start|>role\\n...<|im_end|>\\n`, no BOS,
    EOS `<|im_end|>`, pad `<|endoftext|>`.

    special_markers: False leaves `<|im_start|>` and `<|im_end|>` out of the vocabulary, so the
        template's markers are tokenized as several ordinary tokens (EOS is then `</s>`).
    end_in_generation: False puts `<|im_end|>` after `{% endgeneration %}`, so assistant masks
        leave the end of turn out (the model never learns to stop).
    """
    from transformers import PreTrainedTokenizerFast

    template = _template(_CHATML, "<|im_end|>", end_in_generation)
    if special_markers:
        tok = _with_tokens(["<|im_start|>", "<|im_end|>", "<|endoftext|>"])
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                       pad_token="<|endoftext|>", unk_token="<unk>",
                                       chat_template=template)
    return PreTrainedTokenizerFast(tokenizer_object=_with_tokens([]), eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", chat_template=template)


def llama3_tokenizer(*, end_in_generation: bool = True):
    """A Llama-3-style tokenizer: BOS `<|begin_of_text|>` (added by the post-processor and
    written by the template), headers `<|start_header_id|>role<|end_header_id|>\\n\\n`, turns
    ending in `<|eot_id|>` (also EOS), pad `<|finetune_right_pad_id|>`."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = _with_tokens(["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                        "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
        pad_token="<|finetune_right_pad_id|>", unk_token="<unk>",
        chat_template=_template(_LLAMA3, "<|eot_id|>", end_in_generation))


def tiny_llama(*, vocab_size: int = 64, hidden_size: int = 16, layers: int = 1,
               initializer_range: float = 0.5, seed: int = 0, **config):
    """A randomly initialised LlamaForCausalLM from a config (offline), float32, eval mode.

    The default init is wider than Hugging Face's 0.02 so that the model's predictions are far
    from uniform and the loss under each forensic hypothesis differs clearly from the reference.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**{
        "vocab_size": vocab_size, "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size, "num_hidden_layers": layers,
        "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 256,
        "initializer_range": initializer_range, "pad_token_id": 0, "bos_token_id": 1,
        "eos_token_id": 2} | config)
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2(*, vocab_size: int = 64, hidden_size: int = 16, layers: int = 1,
              initializer_range: float = 0.5, seed: int = 0, **config):
    """A randomly initialised GPT2LMHeadModel from a config (offline), without dropout."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(**{
        "vocab_size": vocab_size, "n_embd": hidden_size, "n_layer": layers, "n_head": 2,
        "n_positions": 256, "initializer_range": initializer_range, "resid_pdrop": 0.0,
        "embd_pdrop": 0.0, "attn_pdrop": 0.0} | config)
    return GPT2LMHeadModel(cfg).eval()
