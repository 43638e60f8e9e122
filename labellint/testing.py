"""Offline building blocks for tests: a tiny BPE tokenizer trained in well under a second.

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
