"""Corpus text metrics against sacrebleu, jiwer and rouge-score run once on all rows: any sharding and merge
order, edge rows (empty strings, whitespace only, unicode, punctuation, digits), integer weights as repeated
rows, and a YAML text job without a backbone on the local and Ray runners."""

from __future__ import annotations

import jiwer
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st
from rouge_score import rouge_scorer

import evaluators.functional as F
from evaluators.catalog import build
from evaluators.task import Task
from pipelines import spec as spec_module
from pipelines.execute import run_job
from tests._data import make_shards, sharded_values
from tests.conftest import write_job

TEXT = Task("text")
WORDS = ["the", "cat", "sat", "on", "a", "mat", "Hello", "world", "3.5", "-", "4", "naïve", "café", "日本", "don't"]
PUNCT = [",", ".", "!", "?", "(", ")", "&amp;", "-", "'"]


def sentence(rng: np.random.Generator) -> str:
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.08:
        return " \t "
    words = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 12)))]
    out = ""
    for w in words:
        out += w + (str(rng.choice(PUNCT)) if rng.random() < 0.2 else "") + (" " if rng.random() < 0.9 else "  ")
    return out


def pairs(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    refs = [sentence(rng) for _ in range(n)]
    hyps = [r if rng.random() < 0.25 else sentence(rng) for r in refs]
    return hyps, refs


def distinct(hyps: list[str], n: int) -> float:
    """Distinct-n over the corpus, hand-derived as calibrax's per-text definition: whitespace tokens, n-grams
    within each text, distinct over all."""
    grams = [tuple(t.split()[i : i + n]) for t in hyps for i in range(len(t.split()) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def references(hyps: list[str], refs: list[str]) -> dict[str, float]:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    scores = [scorer.score(t, p) for p, t in zip(hyps, refs, strict=True)]
    out = {
        "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score,
        "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
        "rouge_n": float(np.mean([s["rouge1"].fmeasure for s in scores])),
        "rouge_n2": float(np.mean([s["rouge2"].fmeasure for s in scores])),
        "rouge_l": float(np.mean([s["rougeL"].fmeasure for s in scores])),
        "distinct_n": distinct(hyps, 1),
        "distinct_n2": distinct(hyps, 2),
    }
    nonempty = [i for i, r in enumerate(refs) if r.strip()]
    if nonempty:  # jiwer needs at least one reference word over the corpus
        out["wer"] = jiwer.wer(refs, hyps)
        out["cer"] = jiwer.cer(refs, hyps)
    return out


METRICS = {
    "bleu": ("bleu", {}),
    "chrf": ("chrf", {}),
    "wer": ("wer", {}),
    "cer": ("cer", {}),
    "rouge_n": ("rouge_n", {}),
    "rouge_n2": ("rouge_n", {"n": 2}),
    "rouge_l": ("rouge_l", {}),
    "distinct_n": ("distinct_n", {}),
    "distinct_n2": ("distinct_n", {"n": 2}),
}


def sharded(hyps, refs, rng, weights=None) -> dict[str, float]:
    metrics = {k: build(name, TEXT, params) for k, (name, params) in METRICS.items()}
    columns = {"predictions": np.asarray(hyps, object), "targets": np.asarray(refs, object), "weights": weights}
    shards = make_shards(rng, len(refs), pieces=5, max_rows=200)
    values = sharded_values(list(metrics.values()), columns, shards, rng)
    return {k: v[""] for k, v in zip(metrics, values, strict=True)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharded_counts_equal_the_references_on_all_rows(seed):
    rng = np.random.default_rng(seed)
    hyps, refs = pairs(rng, 400)
    values = sharded(hyps, refs, rng)
    for key, expected in references(hyps, refs).items():
        assert values[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), key


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(max_size=30), st.text(max_size=30)),
        min_size=1,
        max_size=12,
    ),
    st.integers(0, 2**31),
)
def test_random_unicode_rows_equal_the_references(rows, seed):
    hyps, refs = [h for h, _ in rows], [r for _, r in rows]
    values = sharded(hyps, refs, np.random.default_rng(seed))
    for key, expected in references(hyps, refs).items():
        assert values[key] == pytest.approx(expected, rel=1e-9, abs=1e-12), (key, rows)


def test_an_integer_weight_counts_a_pair_that_many_times():
    rng = np.random.default_rng(4)
    hyps, refs = pairs(rng, 60)
    weights = rng.integers(1, 4, 60).astype(np.float64)
    repeated = np.repeat(np.arange(60), weights.astype(int))
    weighted = sharded(hyps, refs, rng, weights)
    expanded = references([hyps[i] for i in repeated], [refs[i] for i in repeated])
    for key, expected in expanded.items():
        assert weighted[key] == pytest.approx(expected, rel=1e-9), key


def test_functions_and_edge_values():
    assert F.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert F.bleu([""], ["a reference"]) == 0.0
    assert F.wer(["a b c"], ["a x c d"]) == 0.5
    # no reference word at all: jiwer's "rate" is the number of inserted words
    assert F.wer(["two words"], [""]) == jiwer.wer([""], ["two words"]) == 2
    assert F.rouge_l([""], [""]) == 0.0
    assert F.distinct_n(["the the cat", "the cat"], n=1) == 2 / 5
    assert F.distinct_n(["the the cat", "the cat"], n=2) == 2 / 3  # n-grams never cross two texts
    assert F.distinct_n(["", "one"], n=2) == 0.0
    with pytest.raises(ValueError, match="metric 'bleu' serves text tasks, not binary"):
        build("bleu", Task("binary"))
    with pytest.raises(ValueError, match="parameter 'max_order' of metric 'bleu' must be an integer >= 1 and <= 9"):
        build("bleu", TEXT, {"max_order": 0})


def test_functions_refuse_the_rows_a_job_refuses():
    """A negative or NaN weight, a missing text and a corpus without a row of positive weight raise as a job stops
    with exit 2, never a number (a weight of -1 would cancel its row's edits: wer 0 over these two rows)."""
    hyps, refs = ["a b", "c"], ["a x", "d"]
    assert F.wer(hyps, refs, weights=np.array([1.0, 0.0])) == 0.5 == jiwer.wer(refs[:1], hyps[:1])
    assert F.wer(hyps, refs, weights=np.array([1.0, 0.5])) == pytest.approx((1 + 0.5) / (2 + 0.5))
    for weights in ([1.0, -1.0], [np.nan, 1.0], [1.0, np.inf]):
        with pytest.raises(ValueError, match="weights: 1 row with a NaN, infinite or negative weight"):
            F.wer(hyps, refs, weights=np.array(weights))
    with pytest.raises(ValueError, match="predictions: 1 row whose value is not a string"):
        F.bleu(["the cat", None], refs)
    with pytest.raises(ValueError, match="targets: 1 row whose value is not a string"):
        F.rouge_l(hyps, ["a x", 7])
    with pytest.raises(IndexError):  # sacrebleu has no score for an empty corpus
        sacrebleu.corpus_bleu([], [[]])
    for fn in (F.bleu, F.chrf, F.wer, F.cer, F.rouge_n, F.rouge_l, F.distinct_n):
        with pytest.raises(ValueError, match="no row with a positive weight"):
            fn([], [])
        with pytest.raises(ValueError, match="no row with a positive weight"):
            fn(hyps, refs, weights=np.zeros(2))


@pytest.mark.parametrize("runner", ["local", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])])
def test_text_job_without_a_backbone_equals_the_references(tmp_path, runner, request):
    if runner == "ray":
        request.getfixturevalue("ray_cluster")
    rng = np.random.default_rng(9)
    hyps, refs = pairs(rng, 900)
    (tmp_path / "data").mkdir()
    for i in range(3):
        part = slice(300 * i, 300 * (i + 1))
        table = pa.table({"candidate": hyps[part], "reference": refs[part]})
        pq.write_table(table, tmp_path / "data" / f"part-{i}.parquet", row_group_size=120)
    job = {
        "name": "corpus-text",
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "metrics": [{"name": name, **params, "as": key} for key, (name, params) in METRICS.items()],
        "execution": {"runner": runner, "actors": 2, "unit_rows": 250},
        "output": {"uri": str(tmp_path / "out")},
    }
    run = run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", job))), show_progress=False).run
    values = {k: m.value for k, m in run.point("overall").metrics.items()}
    for key, expected in references(hyps, refs).items():
        assert values[key] == pytest.approx(expected, rel=1e-9), key


def test_distinct_n_counts_whole_weights_as_copies_and_refuses_fractions():
    """A row of weight 2 is two copies of its text (the total doubles, the distinct n-grams stay); a fraction of a
    copy has no such reading (0.5 gave distinct-1 of 2.0), so it is refused, naming the weights."""
    from evaluators.kernels import WeightRangeError

    assert (
        F.distinct_n(["a b", "a b c"], weights=[2, 1]) == pytest.approx(3 / 7) == F.distinct_n(["a b", "a b", "a b c"])
    )
    with pytest.raises(WeightRangeError, match="weights must be whole numbers; 1 rows weigh a fraction"):
        F.distinct_n(["a b c d"], weights=[0.5])


def test_long_texts_take_the_row_by_row_alignment_and_equal_the_references():
    """Pairs whose alignment table reaches ``VECTOR_CELLS`` are aligned with NumPy row by row (the insertions' chain
    as a running minimum, the LCS's as a running maximum): the same integers as the plain loop, so WER and CER equal
    jiwer's and ROUGE-L rouge-score's on long texts, short ones beside them."""
    from evaluators.corpus_text import VECTOR_CELLS

    rng = np.random.default_rng(11)
    words = ["a", "b", "c", "d", "the", "cat", "日本", "-"]
    hyps = [" ".join(rng.choice(words, int(n))) for n in (700, 90, 3, 0, 400)]
    refs = [" ".join(rng.choice(words, int(n))) for n in (650, 120, 4, 5, 1)]
    assert len(hyps[0]) * len(refs[0]) > len(hyps[0].split()) * len(refs[0].split()) >= VECTOR_CELLS
    assert F.wer(hyps, refs) == pytest.approx(jiwer.wer(refs, hyps), rel=1e-12)
    assert F.cer(hyps, refs) == pytest.approx(jiwer.cer(refs, hyps), rel=1e-12)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs, strict=True)])
    assert F.rouge_l(hyps, refs) == pytest.approx(expected, rel=1e-12)
