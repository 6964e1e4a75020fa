"""The toy language: grammar, exact reward and the word-level tokenizer (no model needed)."""

from __future__ import annotations

import os
import random

import pytest

from targets.dpo.toy import language as lang
from targets.dpo.toy.tokenizer import build_tokenizer

# the toy modules import HF libraries lazily, so this still precedes their first import
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_var, "1")

GRAMMATICAL = [
    " it was good .",
    " the plot was very great and not dull .",
    " i loved the acting . it was slow .",
    " the film was quite bad . i hated it . the music was odd . the cast was fun .",
    " it was good .<eos>",
    " it was good . <eos>",
]
UNGRAMMATICAL = [
    "",
    " <eos>",
    " it was good",  # unterminated sentence
    " good good good .",
    " it was very .",
    " i was good .",
    " the was good .",
    " it was good and .",
    " it good was .",
    " . it was good .",
    " it was good . it was bad . it was fun . it was odd . it was new .",  # five sentences
    " it was good . <eos> it was bad .",
]


@pytest.mark.parametrize("text", GRAMMATICAL)
def test_grammatical_sentences_parse(text: str) -> None:
    assert lang.is_grammatical(text)
    assert lang.reward(text) > lang.FLOOR


@pytest.mark.parametrize("text", UNGRAMMATICAL)
def test_ungrammatical_text_gets_the_floor(text: str) -> None:
    assert not lang.is_grammatical(text)
    assert lang.reward(text) == lang.FLOOR


def test_reward_orders_positive_neutral_negative() -> None:
    pos, neu, neg = (
        lang.reward(" it was great ."),
        lang.reward(" it was long ."),
        lang.reward(" it was awful ."),
    )
    assert pos > neu > neg > lang.FLOOR
    assert neu == 0.0
    assert (
        lang.reward(" it was very good .")
        > lang.reward(" it was good .")
        > lang.reward(" it was not bad .")
        > 0
    )
    assert lang.reward(" it was not good .") < 0
    assert lang.reward(" i loved it .") > lang.reward(" i watched it .") > lang.reward(" i hated it .")


def test_repetition_has_diminishing_returns_and_spam_is_penalised() -> None:
    r1 = lang.reward(" it was good .")
    r2 = lang.reward(" it was good and good .")
    r3 = lang.reward(" the plot was good and good . the cast was good .")
    assert r1 < r2 < r3
    assert r2 - r1 < r1  # the second "good" is worth less than the first
    assert r3 - r2 < r2 - r1
    varied = lang.reward(" it was very great . i loved the cast . the plot was brilliant .")
    spam = lang.reward(" it was very great . it was very great . it was very great .")
    assert varied > spam
    assert spam < lang.reward(" it was very great .")  # duplicating a sentence lowers the reward


def test_reward_is_bounded_over_the_grammar() -> None:
    rng = random.Random(0)
    prompts = lang.all_prompts()
    rewards = [lang.reward(lang.sample_completion(rng, rng.choice(prompts))) for _ in range(2000)]
    assert all(lang.FLOOR <= r < 1.0 for r in rewards)
    assert min(rewards) < -0.5 and max(rewards) > 0.5  # the corpus has mixed sentiment


def test_sampled_reviews_are_grammatical_and_mood_follows_the_reviewer() -> None:
    rng = random.Random(1)
    texts = {
        name: [lang.sample_completion(rng, f"{name} watched the film :") for _ in range(300)]
        for name in lang.NAMES
    }
    assert all(lang.is_grammatical(t) for ts in texts.values() for t in ts)
    mean = {n: sum(map(lang.reward, ts)) / len(ts) for n, ts in texts.items()}
    grumpy = min(lang.NAME_MOOD, key=lang.NAME_MOOD.__getitem__)
    sunny = max(lang.NAME_MOOD, key=lang.NAME_MOOD.__getitem__)
    assert mean[sunny] - mean[grumpy] > 0.3


def test_prompt_split_holds_out_name_film_combinations() -> None:
    train, held = lang.split_prompts(0)
    assert len(train) == len(held) == len(lang.all_prompts()) // 2
    train_combos = {lang.prompt_parts(p) for p in train}
    held_combos = {lang.prompt_parts(p) for p in held}
    assert not train_combos & held_combos
    assert {n for n, _ in held_combos} == set(lang.NAMES)  # every reviewer is seen, in new combinations
    assert lang.split_prompts(0) == (train, held) and lang.split_prompts(1) != (train, held)


def test_tokenizer_round_trip_prefix_and_eos() -> None:
    tok = build_tokenizer()
    vocab = set(tok.get_vocab())
    assert set(lang.vocabulary()) <= vocab
    rng = random.Random(2)
    for prompt in rng.sample(lang.all_prompts(), 50):
        completion = lang.sample_completion(rng, prompt)
        p_ids = tok(prompt).input_ids
        full = tok(prompt + completion + tok.eos_token).input_ids
        assert full[: len(p_ids)] == p_ids
        assert tok.unk_token_id not in full
        assert full[-1] == tok.eos_token_id and full.count(tok.eos_token_id) == 1
        assert tok.decode(full, skip_special_tokens=True) == (prompt + completion)
    glued = tok(" it was good .<eos>").input_ids
    assert tok.convert_ids_to_tokens(glued) == ["it", "was", "good", ".", "<eos>"]
    assert tok.pad_token_id != tok.eos_token_id
