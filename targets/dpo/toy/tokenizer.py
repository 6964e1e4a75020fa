"""A word-level tokenizer of the toy language, built offline from its vocabulary.

One token per word, split on whitespace only (every word of the language is space-separated, "."
included), so `tokenizer(prompt)` is always a prefix of `tokenizer(prompt + completion)` — the
property TRL's DPOTrainer relies on when it takes the common prefix as the prompt. `<eos>` is a
special token: it is cut out before splitting, so TRL's `" good ." + "<eos>"` gives `"." "<eos>"`.
No BOS is added: every prompt is non-empty, and TRL would duplicate a BOS in prompt + completion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from targets.dpo.toy.language import EOS, vocabulary

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, UNK = "<pad>", "<unk>"
SPECIALS = (PAD, EOS, UNK)


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer: ids 0, 1, 2 are `<pad>`, `<eos>`, `<unk>`, then the words in `vocabulary()` order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate([*SPECIALS, *vocabulary()])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    tok.padding_side = "right"
    return tok


def eos_and_pad_ids(tok: PreTrainedTokenizerBase) -> tuple[int, int]:
    """The ids of `<eos>` and `<pad>`: one int each in the toy tokenizer (transformers types a special
    token's id as an int, a list or a string)."""
    eos, pad = tok.eos_token_id, tok.pad_token_id
    if not isinstance(eos, int) or not isinstance(pad, int):
        raise TypeError(f"the tokenizer's <eos> and <pad> ids are {eos!r} and {pad!r}, not one int each")
    return eos, pad
