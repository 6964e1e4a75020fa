"""Per-item scores and the fitness of an agent: DROP's F1, and the median of a seeded percentile bootstrap.

ADAS reports "median of bootstrap means with a 95% CI"; here the percentiles are 2.5 and 97.5 of the
bootstrap distribution of the mean, drawn from a seeded generator so that a score is reproducible.
"""

from __future__ import annotations

import random
import re
import string

from pydantic import BaseModel

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


class Bootstrap(BaseModel):
    """The median bootstrap mean with its 95% percentile interval, in the scores' own unit."""

    value: float
    ci_low: float
    ci_high: float
    mean: float
    n: int


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0–100) with linear interpolation between order statistics (numpy's default)."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def bootstrap(scores: list[float], n_boot: int = 2000, seed: int = 0) -> Bootstrap:
    """Resample `scores` with replacement `n_boot` times; the median and the 2.5 / 97.5 percentiles of
    the resampled means. A single item gives a degenerate interval at its own score."""
    if not scores:
        raise ValueError("no scores to bootstrap")
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(sum(scores[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    return Bootstrap(
        value=percentile(means, 50.0),
        ci_low=percentile(means, 2.5),
        ci_high=percentile(means, 97.5),
        mean=sum(scores) / n,
        n=n,
    )


# ---------------------------------------------------------------------------------------------- DROP's F1
# The official DROP evaluation (Dua et al. 2019, drop_eval.py) for one predicted and one gold span, as ADAS
# uses it: lower-case, strip punctuation (not from numbers), normalise numbers, drop articles, then the F1
# of the two token bags, which is 0 when the gold names numbers and the prediction shares none of them.


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _normalize_token(token: str) -> str:
    token = token.lower()
    if not _is_number(token):
        token = "".join(ch for ch in token if ch not in _PUNCT)
    if _is_number(token):
        token = str(float(token))
    return " ".join(_ARTICLES.sub(" ", token).split())


def normalize_answer(text: str) -> str:
    parts = [_normalize_token(t) for t in re.split(" |-", text)]
    return " ".join(p for p in parts if p.strip()).strip()


def _bag(text: str) -> set[str]:
    return set(normalize_answer(text).split())


def _f1_bags(predicted: set[str], gold: set[str]) -> float:
    common = len(predicted & gold)
    precision = common / len(predicted) if predicted else 1.0
    recall = common / len(gold) if gold else 1.0
    if precision == 0.0 and recall == 0.0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _numbers_match(gold: set[str], predicted: set[str]) -> bool:
    gold_numbers = {w for w in gold if _is_number(w)}
    return not gold_numbers or bool(gold_numbers & {w for w in predicted if _is_number(w)})


def drop_f1(prediction: str, gold: str) -> float:
    """DROP's F1 of one prediction against one gold answer, rounded to 2 places as the official script."""
    predicted, golden = _bag(prediction), _bag(gold)
    f1 = _f1_bags(predicted, golden) if _numbers_match(golden, predicted) else 0.0
    return round(f1, 2)


def drop_score(prediction: str, golds: list[str]) -> float:
    """The best F1 over the gold answers (DROP's `ref_text` lists alternatives separated by '|')."""
    scores = [drop_f1(prediction, g) for g in golds if g.strip()]
    return max(scores, default=0.0)
