"""Corpus text metrics of candidate / reference string pairs, from counts that merge by addition.

No backbone: each row's strings are tokenised the way the reference implementation does, and the row adds
its counts to the state; the corpus score is computed from the summed counts, so it equals the reference run
on all rows at once for any sharding. A row's ``weight`` multiplies its counts (weight 2 counts the pair twice).

=================  =====================================================  ==================================
metric             counts per row (state, float64)                        reference
=================  =====================================================  ==================================
``bleu``           hypothesis and reference lengths, matched and total    ``sacrebleu.corpus_bleu`` (13a
                   n-grams for n = 1..4 (clipped by the reference)        tokenizer, ``exp`` smoothing)
``chrf``           per character n-gram order 1..6: hypothesis,           ``sacrebleu.corpus_chrf``
                   reference and matched n-grams                          (beta 2, whitespace removed)
``wer`` / ``cer``  Levenshtein edits, reference length                    ``jiwer.wer`` / ``jiwer.cer``
``rouge_n``,       weight, sums of per-pair F, precision and recall       ``rouge_score.RougeScorer``
``rouge_l``        (fixed point)                                          (no stemmer), averaged over pairs
``distinct_n``     the set of distinct candidate n-grams (64-bit           distinct / total n-grams over all
                   digests, sorted) and the weighted n-gram total          candidates (calibrax, whitespace)
=================  =====================================================  ==================================

``distinct_n`` is the one state here that is not a fixed vector: a set of n-grams merges only as a set. It holds
one 8-byte BLAKE2b digest per distinct n-gram (a few MB for a million distinct bigrams), never the texts; two
different n-grams share a digest with probability below ``m**2 / 2**65`` for ``m`` distinct n-grams (3e-8 at a
million), which would count them as one.

Bootstrap intervals: every state but ``distinct_n``'s is a vector of sums, kept per bootstrap bucket of rows and
added with the replicate's Poisson counts (ROUGE's fixed-point sums in integers), so a replicate's value is the
reference's on the rows repeated that many times. ``distinct_n`` has none (a set does not split into buckets that
add).

Scores are on the references' scales: BLEU and chrF in [0, 100] (sacrebleu), WER / CER as ratios (jiwer),
ROUGE F in [0, 1].
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial

import numpy as np

from evaluators.kernels import WeightBoundedSums, WeightRangeError, from_fixed, to_fixed
from evaluators.statistic import (
    NON_NEGATIVE,
    POINTS,
    RATIO,
    Batch,
    DerivedMetric,
    Direction,
    State,
    Statistic,
    resample_sums,
)
from evaluators.task import Task, TaskKind

# --- tokenisers, written from the references' definitions ------------------------------------------------------

_13A_RULES = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period and comma unless preceded by a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... unless followed by a digit
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # dash after a digit
)


@lru_cache(maxsize=1 << 16)
def tokenize_13a(line: str) -> tuple[str, ...]:
    """mteval-v13a tokenisation, as sacrebleu's default BLEU tokenizer (after its ``rstrip``)."""
    line = line.rstrip().replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return tuple(line.split())


_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")


def rouge_tokens(text: str) -> list[str]:
    """rouge-score's default tokenisation without stemming: lower case, runs of anything but ``[a-z0-9]`` split."""
    return [t for t in re.split(r"\s+", _NON_ALPHANUMERIC.sub(" ", text.lower())) if _VALID_TOKEN.match(t)]


def wer_words(text: str) -> list[str]:
    """jiwer's default WER transform: runs of two or more whitespace characters become one space, strip, split on
    spaces."""
    return [w for w in re.sub(r"\s\s+", " ", text).strip().split(" ") if w]


def cer_chars(text: str) -> list[str]:
    """jiwer's default CER transform: strip, then characters (spaces included)."""
    return list(text.strip())


def ngram_counts(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


VECTOR_CELLS = 4096
"""Sequences whose table (``len(a) * len(b)`` cells) is at least this large are aligned row by row with NumPy: a
3,000-character pair in 0.05 s instead of 2 s; smaller ones in plain Python, which starts faster."""


def _as_ids(a: Sequence[object], b: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    """Both sequences as int64 ids (equal elements, equal ids)."""
    ids: dict[object, int] = {}
    return tuple(np.array([ids.setdefault(x, len(ids)) for x in seq], np.int64) for seq in (a, b))  # type: ignore[return-value]


def levenshtein(a: Sequence[object], b: Sequence[object]) -> int:
    """Edit distance (substitutions, deletions, insertions of one element each) between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    if len(a) * len(b) >= VECTOR_CELLS:
        x, y = _as_ids(a, b)
        steps = np.arange(len(y) + 1)
        previous = steps.copy()
        for i, element in enumerate(x, 1):
            # without insertions along the row, then each cell's best chain of insertions from its left:
            # current[j] = min over k <= j of (kept[k] + j - k)
            kept = np.empty_like(previous)
            kept[0] = i
            np.minimum(previous[1:] + 1, previous[:-1] + (y != element), out=kept[1:])
            previous = np.minimum.accumulate(kept - steps) + steps
        return int(previous[-1])
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) * len(b) >= VECTOR_CELLS:
        x, y = _as_ids(a, b)
        previous = np.zeros(len(y) + 1, np.int64)
        for element in x:
            # current[j] = previous[j - 1] + 1 on a match, else max(previous[j], current[j - 1]); a match's value is
            # at least both of those, so each row is the running maximum of the row without that chain
            kept = np.empty_like(previous)
            kept[0] = 0
            np.copyto(kept[1:], np.where(y == element, previous[:-1] + 1, previous[1:]))
            previous = np.maximum.accumulate(kept)
        return int(previous[-1])
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


# --- statistics ----------------------------------------------------------------------------------------------------


def _rows(batch: Batch) -> list[tuple[str, str, float, int]]:
    """``(candidate, reference, weight, row)`` of the rows that count (weight > 0)."""
    weights = np.asarray(batch["weights"], np.float64)
    out = []
    for i, (candidate, reference, w) in enumerate(zip(batch["predictions"], batch["targets"], weights, strict=True)):
        if w > 0:
            out.append((str(candidate), str(reference), float(w), i))
    return out


def _ungrouped(statistic: Statistic, state: State, batch: Batch) -> State:
    """``update`` as the grouped update with one bucket (the same additions in the same order)."""
    stacked = {k: np.asarray(v)[None] for k, v in state.items()} if isinstance(state, dict) else np.asarray(state)[None]
    out = statistic.update_grouped(batch, stacked, np.zeros(len(batch["weights"]), np.int64))
    return {k: v[0] for k, v in out.items()} if isinstance(out, dict) else out[0]


class _CountStatistic(Statistic):
    """Host-side statistic whose state is one float64 vector of weighted counts (merged by addition)."""

    jittable = False

    @property
    def size(self) -> int:
        raise NotImplementedError

    def zero(self) -> State:
        return np.zeros(self.size, np.float64)

    def counts(self, candidate: str, reference: str) -> np.ndarray:
        raise NotImplementedError

    def update(self, state: State, batch: Batch) -> State:
        return _ungrouped(self, state, batch)

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        """``stacked`` ``[G, size]`` with each row's counts added to its bucket's."""
        out = np.array(stacked, np.float64, copy=True)
        for candidate, reference, w, i in _rows(batch):
            out[group[i]] += w * self.counts(candidate, reference)
        return out


def refuse_fractional_copies(metric: str, weights: np.ndarray) -> None:
    """Refuse (:class:`WeightRangeError`) weights that are not whole numbers, for a metric that counts a row of
    weight ``w`` as ``w`` copies of its text."""
    fractional = weights != np.floor(weights)
    if fractional.any():
        raise WeightRangeError(
            f"{metric} counts a row of weight w as w copies of its text, so its weights must be whole numbers; "
            f"{int(fractional.sum())} rows weigh a fraction (the first: {float(weights[fractional][0])!r})"
        )


@dataclass(frozen=True)
class BleuCounts(_CountStatistic):
    """``[hypothesis length, reference length, matches n=1..N, totals n=1..N]`` (13a tokens)."""

    max_order: int = 4
    lowercase: bool = False

    def refuse_weights(self, weights: np.ndarray) -> None:
        """sacrebleu's exp smoothing (``100 / (2**k * total)`` for a precision of no match) reads the n-gram
        totals as counts: weights of 0.01 gave BLEU 254 where weights of 1 give sacrebleu's 25.4. A row of weight
        ``w`` counts as ``w`` copies of its pair, so weights must be whole numbers."""
        refuse_fractional_copies("bleu", weights)

    @property
    def size(self) -> int:
        return 2 + 2 * self.max_order

    def counts(self, candidate: str, reference: str) -> np.ndarray:
        if self.lowercase:
            candidate, reference = candidate.lower(), reference.lower()
        hyp, ref = tokenize_13a(candidate), tokenize_13a(reference)
        out = np.zeros(self.size)
        out[0], out[1] = len(hyp), len(ref)
        for n in range(1, self.max_order + 1):
            h, r = ngram_counts(hyp, n), ngram_counts(ref, n)
            out[1 + n] = sum(min(c, r[g]) for g, c in h.items() if g in r)
            out[1 + self.max_order + n] = sum(h.values())
        return out


@dataclass(frozen=True)
class ChrfCounts(_CountStatistic):
    """Per character n-gram order: ``[hypothesis n-grams, reference n-grams, matches]`` (whitespace removed)."""

    char_order: int = 6

    @property
    def size(self) -> int:
        return 3 * self.char_order

    def counts(self, candidate: str, reference: str) -> np.ndarray:
        hyp, ref = "".join(candidate.split()), "".join(reference.split())
        out = np.zeros(self.size)
        for n in range(1, self.char_order + 1):
            h = Counter(hyp[i : i + n] for i in range(len(hyp) - n + 1))
            r = Counter(ref[i : i + n] for i in range(len(ref) - n + 1))
            # as sacrebleu: hypothesis n-grams count only when the reference has n-grams of that order
            out[3 * (n - 1) : 3 * n] = (
                sum(h.values()) if r else 0,
                sum(r.values()),
                sum(min(c, r[g]) for g, c in h.items()),
            )
        return out


@dataclass(frozen=True)
class EditCounts(_CountStatistic):
    """``[Levenshtein edits, reference length, hypothesis length]`` over words (``wer``) or characters (``cer``)."""

    unit: str = "word"

    @property
    def size(self) -> int:
        return 3

    def counts(self, candidate: str, reference: str) -> np.ndarray:
        split = wer_words if self.unit == "word" else cer_chars
        hyp, ref = split(candidate), split(reference)
        return np.array([levenshtein(ref, hyp), len(ref), len(hyp)], np.float64)


@dataclass(frozen=True)
class RougeSums(WeightBoundedSums, Statistic):
    """``{"weight": float64, "sums": int64 [3, 2]}``: fixed-point sums of per-pair F, precision and recall of
    ROUGE-``kind`` (``"1"``, ``"2"``, ... for n-grams, ``"L"`` for the longest common subsequence)."""

    kind: str = "1"

    jittable = False
    summed = "the ROUGE scores"

    def zero(self) -> State:
        return {"weight": np.zeros((), np.float64), "sums": np.zeros((3, 2), np.int64)}

    def scores(self, candidate: str, reference: str) -> tuple[float, float, float]:
        """``(f, precision, recall)`` of one pair, as rouge-score's ``score(target=reference, prediction=candidate)``."""
        hyp, ref = rouge_tokens(candidate), rouge_tokens(reference)
        if self.kind == "L":
            if not hyp or not ref:
                return 0.0, 0.0, 0.0
            lcs = _lcs_length(ref, hyp)
            precision, recall = lcs / len(hyp), lcs / len(ref)
        else:
            n = int(self.kind)
            h, r = ngram_counts(hyp, n), ngram_counts(ref, n)
            overlap = sum(min(c, h[g]) for g, c in r.items())
            precision, recall = overlap / max(sum(h.values()), 1), overlap / max(sum(r.values()), 1)
        return _f1(precision, recall), precision, recall

    def update(self, state: State, batch: Batch) -> State:
        return _ungrouped(self, state, batch)

    def update_grouped(self, batch: Batch, stacked: State, group: np.ndarray) -> State:
        """``{"weight": [G], "sums": [G, 3, 2]}`` with each row's weight and fixed-point values added to its bucket's."""
        rows = _rows(batch)
        if not rows:
            return stacked
        scores = np.array([self.scores(c, r) for c, r, _, _ in rows], np.float64)
        w = np.array([w for _, _, w, _ in rows], np.float64)
        bucket = np.asarray(group)[[i for _, _, _, i in rows]]
        weight, sums = np.array(stacked["weight"], np.float64, copy=True), np.array(stacked["sums"], copy=True)
        np.add.at(weight, bucket, w)
        np.add.at(sums, bucket, to_fixed(w[:, None] * scores))
        return {"weight": weight, "sums": sums}

    def merge(self, a: State, b: State) -> State:
        merged = super().merge(a, b)
        self.refuse_state(merged)
        return merged

    def resample(self, stacked: State, weights: np.ndarray) -> list[State]:
        return resample_sums(stacked, weights)


@dataclass(frozen=True)
class DistinctNgrams(Statistic):
    """``{"digests": uint64 [m] sorted, "total": float64}``: the distinct whitespace n-grams of the candidates
    (n-grams never cross two texts) and the weighted count of all of them."""

    n: int = 1

    jittable = False
    bootstrap = False

    def zero(self) -> State:
        return {"digests": np.zeros(0, np.uint64), "total": np.zeros((), np.float64)}

    def refuse_weights(self, weights: np.ndarray) -> None:
        """A row of weight ``w`` counts as ``w`` copies of its text: the distinct n-grams stay, their total grows
        ``w``-fold. A fraction of a copy has no such reading (weights of 0.5 gave distinct-n of 2), so weights must
        be whole numbers."""
        refuse_fractional_copies("distinct_n", weights)

    def update(self, state: State, batch: Batch) -> State:
        weights = np.asarray(batch["weights"], np.float64)
        digests: set[int] = set()
        total = 0.0
        for text, w in zip(batch["predictions"], weights, strict=True):
            if w <= 0:
                continue
            tokens = str(text).split()
            grams = [" ".join(tokens[i : i + self.n]) for i in range(len(tokens) - self.n + 1)]
            total += w * len(grams)
            digests.update(_digest(g) for g in grams)
        found = np.fromiter(digests, np.uint64, count=len(digests))
        return self.merge(state, {"digests": found, "total": np.asarray(total)})

    def merge(self, a: State, b: State) -> State:
        return {"digests": np.union1d(a["digests"], b["digests"]).astype(np.uint64), "total": a["total"] + b["total"]}


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


# --- metrics -------------------------------------------------------------------------------------------------------


def _require_text(task: Task, name: str) -> None:
    if task.kind is not TaskKind.TEXT:
        raise ValueError(f"{name} is defined for text tasks (candidate and reference strings), not {task.kind}")


def _bleu(max_order: int, state: State) -> dict[str, float]:
    state = np.asarray(state, np.float64)
    sys_len, ref_len = float(state[0]), float(state[1])
    correct, total = state[2 : 2 + max_order], state[2 + max_order :]
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0)
    out = {".brevity_penalty": bp, ".sys_len": sys_len, ".ref_len": ref_len}
    precisions = [0.0] * max_order
    if any(correct):
        smooth = 1.0
        for n in range(max_order):
            if total[n] == 0:
                break
            if correct[n] == 0:  # sacrebleu's default "exp" smoothing
                smooth *= 2
                precisions[n] = 100.0 / (smooth * total[n])
            else:
                precisions[n] = 100.0 * correct[n] / total[n]
    logs = [math.log(p) if p > 0 else -9999999999.0 for p in precisions]
    score = bp * math.exp(sum(logs) / max_order) if any(correct) else 0.0
    out.update({f".precision_{n + 1}": p for n, p in enumerate(precisions)})
    return {"": score, **out}


def _chrf(order: int, beta: float, state: State) -> dict[str, float]:
    state = np.asarray(state, np.float64)
    factor = beta**2
    avg_precision = avg_recall = 0.0
    effective = 0
    for i in range(order):
        n_hyp, n_ref, n_match = state[3 * i : 3 * i + 3]
        if n_hyp > 0 and n_ref > 0:
            avg_precision += n_match / n_hyp
            avg_recall += n_match / n_ref
            effective += 1
    if effective:
        avg_precision, avg_recall = avg_precision / effective, avg_recall / effective
    if avg_precision + avg_recall == 0:
        return {"": 0.0}
    return {"": 100.0 * (1 + factor) * avg_precision * avg_recall / (factor * avg_precision + avg_recall)}


def _error_rate(state: State) -> dict[str, float]:
    edits, ref_len, _ = (float(v) for v in state)
    # jiwer: with no reference words at all the "rate" is the count of insertions
    return {"": edits / ref_len if ref_len > 0 else edits, ".edits": edits, ".reference_length": ref_len}


def _rouge(state: State) -> dict[str, float]:
    weight = float(state["weight"])
    if weight <= 0:
        return {"": float("nan")}
    f, precision, recall = from_fixed(np.asarray(state["sums"])) / weight
    return {"": float(f), ".precision": float(precision), ".recall": float(recall)}


def _check_order(name: str, value: int, highest: int) -> int:
    if isinstance(value, bool) or int(value) != value or not 1 <= value <= highest:
        raise ValueError(f"{name} must be an integer from 1 to {highest}, got {value!r}")
    return int(value)


def bleu(task: Task, *, max_order: int = 4, lowercase: bool = False) -> DerivedMetric:
    """Corpus BLEU in [0, 100], sacrebleu's defaults (13a tokens, exp smoothing); also ``.precision_n``,
    ``.brevity_penalty``, ``.sys_len``, ``.ref_len``."""
    _require_text(task, "bleu")
    order = _check_order("max_order", max_order, 9)
    stat = BleuCounts(order, bool(lowercase))
    precisions = tuple((f".precision_{n + 1}", POINTS) for n in range(order))
    parts = ((".brevity_penalty", RATIO), (".sys_len", NON_NEGATIVE), (".ref_len", NON_NEGATIVE), *precisions)
    value_of = partial(_bleu, order)
    return DerivedMetric(
        "bleu",
        stat,
        value_of,
        Direction.HIGHER,
        unit="points",
        value_range=POINTS,
        part_ranges=parts,
        info_parts=(".sys_len", ".ref_len"),
    )


def chrf(task: Task, *, char_order: int = 6, beta: float = 2.0) -> DerivedMetric:
    """Corpus chrF in [0, 100] (sacrebleu's ``CHRF()``: character n-grams up to ``char_order``, whitespace
    removed, F-beta of the precision and recall averaged over orders)."""
    _require_text(task, "chrf")
    order = _check_order("char_order", char_order, 12)
    if not (isinstance(beta, int | float) and math.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    stat = ChrfCounts(order)
    return DerivedMetric(
        "chrf", stat, partial(_chrf, order, float(beta)), Direction.HIGHER, unit="points", value_range=POINTS
    )


def _error_rate_metric(task: Task, name: str, unit: str) -> DerivedMetric:
    _require_text(task, name)
    parts = (".edits", ".reference_length")
    counts = tuple((part, NON_NEGATIVE) for part in parts)
    return DerivedMetric(
        name,
        EditCounts(unit),
        _error_rate,
        Direction.LOWER,
        value_range=NON_NEGATIVE,
        part_ranges=counts,
        info_parts=parts,
    )


def wer(task: Task) -> DerivedMetric:
    """Word error rate: all word edits over all reference words (jiwer's corpus WER)."""
    return _error_rate_metric(task, "wer", "word")


def cer(task: Task) -> DerivedMetric:
    """Character error rate: all character edits over all reference characters (jiwer's corpus CER)."""
    return _error_rate_metric(task, "cer", "char")


_ROUGE_PARTS = ((".precision", RATIO), (".recall", RATIO))


def rouge_n(task: Task, *, n: int = 1) -> DerivedMetric:
    """Mean over pairs of ROUGE-n F (rouge-score, no stemming); also ``.precision`` and ``.recall``."""
    _require_text(task, "rouge_n")
    stat = RougeSums(str(_check_order("n", n, 9)))
    return DerivedMetric("rouge_n", stat, _rouge, Direction.HIGHER, value_range=RATIO, part_ranges=_ROUGE_PARTS)


def rouge_l(task: Task) -> DerivedMetric:
    """Mean over pairs of ROUGE-L F (longest common subsequence, rouge-score); also ``.precision``, ``.recall``."""
    _require_text(task, "rouge_l")
    return DerivedMetric(
        "rouge_l", RougeSums("L"), _rouge, Direction.HIGHER, value_range=RATIO, part_ranges=_ROUGE_PARTS
    )


def _distinct(state: State) -> dict[str, float]:
    distinct, total = float(len(state["digests"])), float(state["total"])
    return {"": distinct / total if total > 0 else 0.0, ".distinct": distinct, ".total": total}


def distinct_n(task: Task, *, n: int = 1) -> DerivedMetric:
    """Distinct n-grams over all n-grams of the candidate texts (whitespace tokens, calibrax's ``distinct_n`` over
    the corpus; 0 without any n-gram); also ``.distinct`` and ``.total``."""
    _require_text(task, "distinct_n")
    parts = (".distinct", ".total")
    counts = tuple((part, NON_NEGATIVE) for part in parts)
    stat = DistinctNgrams(_check_order("n", n, 9))
    return DerivedMetric(
        "distinct_n", stat, _distinct, Direction.HIGHER, value_range=RATIO, part_ranges=counts, info_parts=parts
    )
