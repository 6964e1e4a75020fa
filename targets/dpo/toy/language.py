"""A synthetic language of short film reviews with an exact, over-optimisable sentiment reward.

The toy stand-in for IMDb in the DiscoPOP paper's GPT-2 study: prompts name a reviewer and a film,
completions are one to `max_sentences` short sentences built by a finite-state grammar, and the reward
is computed exactly from the words (no reward model, so no reward-model noise in the fitness).

Words are separated by single spaces, punctuation included (`"it was good ."`): a word-level tokenizer
then maps every word to one token and prompt tokens are always a prefix of prompt + completion tokens.
Completions start with a space and carry no end marker; generated text may end with `EOS`.

Grammar of a completion (every sentence ends with "."):

    COMPLETION := SENT{1..max_sentences}
    SENT       := SUBJ "was" ADJP ["and" ADJP] "."      "the plot was very good and not dull ."
                | "i" VERB OBJ "."                       "i loved the acting ."
    SUBJ, OBJ  := "it" | "the" (ASPECT | FILM)
    ADJP       := [INTENS] ADJ | "not" ADJ
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Sequence

EOS = "<eos>"
FLOOR = -1.0
"""Reward of ungrammatical or unterminated text: the worst value: no grammatical review scores lower."""

NAMES = ("anna", "ben", "carl", "dana", "eve", "finn", "gus", "hana", "ivan", "jill", "kai", "lena")
FILMS = (
    "film",
    "movie",
    "show",
    "series",
    "play",
    "sequel",
    "remake",
    "drama",
    "comedy",
    "thriller",
    "musical",
    "western",
)
PROMPT_TEMPLATES = (
    "{name} watched the {film} :",
    "review of the {film} by {name} :",
    "{name} on the new {film} :",
    "what did {name} think of the {film} ?",
    "{name} saw the {film} last night :",
    "{name} wrote about the {film} :",
    "the {film} , according to {name} :",
    "{name} reviews the {film} :",
)
ASPECTS = ("plot", "acting", "music", "ending", "cast", "script", "pacing", "story")
INTENSIFIERS = ("very", "really", "quite", "so")
ADJECTIVES: dict[str, float] = {
    # positive
    "great": 1.0,
    "brilliant": 1.0,
    "good": 0.6,
    "lovely": 0.6,
    "fun": 0.6,
    "moving": 0.6,
    # negative
    "awful": -1.0,
    "terrible": -1.0,
    "bad": -0.6,
    "dull": -0.6,
    "boring": -0.6,
    "weak": -0.6,
    # neutral
    "long": 0.0,
    "short": 0.0,
    "loud": 0.0,
    "quiet": 0.0,
    "slow": 0.0,
    "new": 0.0,
    "odd": 0.0,
}
VERBS: dict[str, float] = {
    "loved": 1.0,
    "liked": 0.6,
    "enjoyed": 0.6,
    "hated": -1.0,
    "disliked": -0.6,
    "watched": 0.0,
    "remember": 0.0,
    "saw": 0.0,
}
NAME_MOOD: dict[str, float] = {name: (-0.6, -0.3, 0.0, 0.3, 0.6, 0.0)[i % 6] for i, name in enumerate(NAMES)}
"""Each reviewer's lean in the SFT corpus, so the reference model's reward depends on the prompt."""

INTENSIFIER_GAIN = 1.5
NEGATION_GAIN = -0.5
REPEAT_DECAY = 0.5
REPEATED_SENTENCE_PENALTY = 0.25
SATURATION = 1.5


def vocabulary() -> list[str]:
    """Every word of the language, prompts and completions, in a fixed order (specials excluded)."""
    words: list[str] = []
    for template in PROMPT_TEMPLATES:
        words += [w for w in template.split() if not w.startswith("{")]
    words += [
        *NAMES,
        *FILMS,
        *ASPECTS,
        *INTENSIFIERS,
        *ADJECTIVES,
        *VERBS,
        "it",
        "the",
        "was",
        "and",
        "not",
        "i",
        ".",
    ]
    return list(dict.fromkeys(words))


def all_prompts() -> list[str]:
    """Every template × name × film combination (8 × 12 × 12 = 1152 prompts)."""
    return [t.format(name=n, film=f) for t in PROMPT_TEMPLATES for n in NAMES for f in FILMS]


def split_prompts(seed: int) -> tuple[list[str], list[str]]:
    """(train, held-out) halves of the (name, film) combinations; all templates of a combination go
    to the same half, so the held-out prompts pair a reviewer and a film never seen together."""
    combos = [(n, f) for n in NAMES for f in FILMS]
    random.Random(f"split-{seed}").shuffle(combos)
    held = set(combos[: len(combos) // 2])
    train, test = [], []
    for t in PROMPT_TEMPLATES:
        for n, f in combos:
            (test if (n, f) in held else train).append(t.format(name=n, film=f))
    return train, test


def prompt_parts(prompt: str) -> tuple[str, str]:
    """(name, film) of a prompt made by `all_prompts`."""
    words = prompt.split()
    name = next(w for w in words if w in NAME_MOOD)
    film = next(w for w in words if w in FILMS)
    return name, film


# ----------------------------------------------------------------------------------------------
# sampling SFT text


def sample_completion(rng: random.Random, prompt: str, max_sentences: int = 4) -> str:
    """One review in the SFT corpus's style: mixed sentiment around the reviewer's mood, mostly short.

    The length distribution puts little mass on `max_sentences`, so the limit is a cliff the reference
    model seldom meets but a policy pushed towards "more sentiment words" will.
    """
    name, film = prompt_parts(prompt)
    mood = max(-1.0, min(1.0, NAME_MOOD[name] + rng.gauss(0.0, 0.5)))
    weights = [0.35, 0.35, 0.2, 0.1] + [0.05] * max(0, max_sentences - 4)
    n = rng.choices(range(1, max_sentences + 1), weights=weights[:max_sentences])[0]
    return " " + " ".join(_sentence(rng, mood, film) for _ in range(n))


def _polar(rng: random.Random, table: dict[str, float], mood: float) -> str:
    """A word of `table` whose sign follows the mood: positive w.p. (1+mood)/2 · 0.7, neutral w.p. 0.3."""
    sign = 0 if rng.random() < 0.3 else 1 if rng.random() < (1 + mood) / 2 else -1
    pool = [w for w, v in table.items() if (v > 0) - (v < 0) == sign]
    return rng.choice(pool)


def _np(rng: random.Random, film: str) -> str:
    u = rng.random()
    if u < 0.3:
        return "it"
    return "the " + (film if u < 0.5 else rng.choice(ASPECTS))


def _adjp(rng: random.Random, mood: float) -> str:
    u = rng.random()
    if u < 0.12:  # negation flips the reviewer's intent: "not bad" for a fan, "not good" for a critic
        return "not " + _polar(rng, ADJECTIVES, -mood)
    adj = _polar(rng, ADJECTIVES, mood)
    return f"{rng.choice(INTENSIFIERS)} {adj}" if u < 0.4 else adj


def _sentence(rng: random.Random, mood: float, film: str) -> str:
    if rng.random() < 0.3:
        return f"i {_polar(rng, VERBS, mood)} {_np(rng, film)} ."
    pred = _adjp(rng, mood)
    if rng.random() < 0.25:
        pred += " and " + _adjp(rng, mood)
    return f"{_np(rng, film)} was {pred} ."


# ----------------------------------------------------------------------------------------------
# parsing and the exact reward


def _strip(text: str) -> list[str]:
    words = text.split()
    if words and words[-1] == EOS:
        words = words[:-1]
    if words and words[-1].endswith(EOS):  # "good .<eos>" as TRL writes it
        words[-1] = words[-1][: -len(EOS)]
        if not words[-1]:
            words.pop()
    return words


def _match_np(words: Sequence[str], i: int) -> int | None:
    """Index after a noun phrase starting at i, or None."""
    if i < len(words) and words[i] == "it":
        return i + 1
    if i + 1 < len(words) and words[i] == "the" and (words[i + 1] in ASPECTS or words[i + 1] in FILMS):
        return i + 2
    return None


def _match_adjp(words: Sequence[str], i: int) -> int | None:
    if i < len(words) and words[i] in ADJECTIVES:
        return i + 1
    if i + 1 < len(words) and (words[i] in INTENSIFIERS or words[i] == "not") and words[i + 1] in ADJECTIVES:
        return i + 2
    return None


def _is_sentence(words: Sequence[str]) -> bool:
    """Whether `words` (without the final ".") is one SENT of the grammar."""
    if words and words[0] == "i":
        return len(words) >= 2 and words[1] in VERBS and _match_np(words, 2) == len(words)
    i = _match_np(words, 0)
    if i is None or i >= len(words) or words[i] != "was":
        return False
    i = _match_adjp(words, i + 1)
    if i is not None and i < len(words) and words[i] == "and":
        i = _match_adjp(words, i + 1)
    return i == len(words)


def parse(text: str, max_sentences: int = 4) -> list[list[str]] | None:
    """The sentences of a completion (each a word list without its "."), or None if ungrammatical.

    A trailing `<eos>` is allowed and ignored; the empty completion is ungrammatical.
    """
    words = _strip(text)
    if not words or words[-1] != ".":
        return None
    sentences: list[list[str]] = [[]]
    for w in words[:-1]:
        if w == ".":
            sentences.append([])
        else:
            sentences[-1].append(w)
    if len(sentences) > max_sentences or not all(_is_sentence(s) for s in sentences):
        return None
    return sentences


def is_grammatical(text: str, max_sentences: int = 4) -> bool:
    return parse(text, max_sentences) is not None


def sentiment(sentences: list[list[str]]) -> float:
    """Raw sentiment S: the lexicon scores, scaled by modifiers and by repetition (see `reward`)."""
    seen: Counter[str] = Counter()
    total = 0.0
    for words in sentences:
        for j, w in enumerate(words):
            if w in ADJECTIVES:
                value = ADJECTIVES[w]
            else:  # a verb counts only in its slot of "i VERB OBJ"
                value = VERBS.get(w, 0.0) if j == 1 and words[0] == "i" else 0.0
            if value == 0.0:
                continue
            gain = 1.0
            if j > 0 and words[j - 1] in INTENSIFIERS:
                gain = INTENSIFIER_GAIN
            elif j > 0 and words[j - 1] == "not":
                gain = NEGATION_GAIN
            total += value * gain * REPEAT_DECAY ** seen[w]
            seen[w] += 1
    return total


def reward(completion: str, max_sentences: int = 4) -> float:
    """The exact reward of a completion, in [-1, 1].

        r = FLOOR = -1                                     if the text is not grammatical
        r = clip(tanh(S / 1.5) - 0.25 · D, -1, 1)          otherwise, with
        S = Σ_occurrences v(w) · g · 0.5^(k(w))            raw sentiment
        D = number of sentences identical to an earlier one

    v(w) is the lexicon value of an adjective or verb (±1 strong, ±0.6 mild, 0 neutral); g = 1.5 after
    an intensifier, -0.5 after "not" ("not bad" is mildly good), 1 otherwise; k(w) counts earlier uses
    of the same word, so each repeat is worth half the previous one (diminishing returns).

    Why this shape: tanh saturates, so a policy gains little from piling up sentiment words; repeats
    and duplicated sentences are penalised, so "spam the best word" — what a policy drifting far from
    the reference tends to do — scores worse than a varied review; and anything outside the grammar
    (including a fifth sentence) falls to the floor. True reward therefore first rises, then falls as
    the policy moves away from the reference: it can be over-optimised.
    """
    sentences = parse(completion, max_sentences)
    if sentences is None:
        return FLOOR
    repeats = len(sentences) - len({tuple(s) for s in sentences})
    value = math.tanh(sentiment(sentences) / SATURATION) - REPEATED_SENTENCE_PENALTY * repeats
    return max(-1.0, min(1.0, value))
