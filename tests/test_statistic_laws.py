"""Algebraic laws of every statistic type, checked with hypothesis through :mod:`evaluators.conformance`.

For each statistic: ``merge(zero, s) == s == merge(s, zero)``; merge is commutative and associative and
leaves its arguments alone; any partition of the rows into shards, updated separately and merged in any order
(or folded shard after shard), gives the state of one update over all rows; the compiled, padded update
equals the eager one; bootstrap replicates from ``resample`` equal the explicit merges of their buckets; and
the values read off the merged state equal scikit-learn (or a formula) on all rows.

Count-based states (confusion counts, top-k hits, subset matches, score histograms, exact score counts,
pixel confusion) and the fixed-point sums of bounded values (losses, squared errors, calibration
confidences) must be *exactly* equal: weights are drawn from {0, 0.5, 1, 2, 3}, so every partial count is
exact in float64 and fixed-point sums are integers. Centred moments (regression) must agree within 1e-12
relative.

States come from :class:`~evaluators.accumulate.Accumulator` (one per statistic, built once: the jit-compiled
update is compiled once per padded shape, and every batch here pads to 1,024 rows).
"""

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn import metrics as skm

from evaluators import catalog
from evaluators.binned_calibration import ClasswiseBins
from evaluators.calibration import BrierSum, CalibrationBins, LogLossSum
from evaluators.classification import ConfusionCounts, SubsetMatch, TopKHits
from evaluators.conformance import StatisticTester, take
from evaluators.ranking import ExactScoreCounts, ScoreHistogram
from evaluators.regression import RegressionMoments
from evaluators.segmentation import PixelConfusion
from evaluators.statistic import DerivedMetric
from evaluators.task import Task

# balanced_accuracy(adjusted=True) divides by zero when one class has support (as scikit-learn does)
pytestmark = pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")

LAWS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEWER = settings(LAWS, max_examples=10)  # eager updates run op by op: slower per example

WEIGHTS = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.0, 3.0])
SCORES = st.one_of(st.sampled_from([0.0, 0.125, 0.3, 0.5, 0.7, 0.875, 1.0]), st.floats(0.0, 1.0))
GRID = st.integers(-64, 64).map(lambda k: k / 8)  # exact values; moments still round


Reference = Callable[[dict], dict]
"""All rows of a batch -> ``{metric name: value}`` for some of the config's metrics (scikit-learn or a formula)."""


@dataclass(frozen=True)
class Config:
    """A statistic, the metrics that read it, the data it takes, and a reference for some of its values."""

    task: Task
    metrics: tuple[tuple[str, tuple], ...]
    data: str
    exact: bool  # every leaf of the state is an exact sum (else states agree within 1e-12 relative)
    max_rows: int = 40  # rows per drawn batch (host-side statistics compile eager ops once per shape)
    reference: Reference | None = None
    jit_atol: float = 0.0  # fixed-point units a compiled update may round apart from the eager one


def _w(b: dict) -> np.ndarray:
    return b["weights"]


def _binary_labels(b: dict) -> np.ndarray:
    return (b["predictions"] > 0.5).astype(int)


def _argmax(b: dict) -> np.ndarray:
    return np.argmax(b["predictions"], axis=1)


def _brier(b: dict, classes: int) -> float:
    """Binary: mean squared error of the positive class's probability; multiclass: of the probability vector."""
    if classes == 2:
        return float(np.average((b["predictions"] - b["targets"]) ** 2, weights=_w(b)))
    return float(np.average(((b["predictions"] - np.eye(classes)[b["targets"]]) ** 2).sum(axis=1), weights=_w(b)))


BIN, MC, ML = Task("binary"), Task("multiclass", 4), Task("multilabel", 3)
MC_IGNORE = Task("multiclass", 4, prediction="labels", ignore_index=-1)
MC_LABELS = Task("multiclass", 4, prediction="labels")

CONFIGS = {
    "ConfusionCounts-binary": Config(
        BIN,
        (
            ("accuracy", ()),
            ("f1_score", (("average", "macro"),)),
            ("specificity", ()),
            ("balanced_accuracy", ()),
            ("matthews_corrcoef", ()),
            ("cohen_kappa", ()),
            ("confusion_matrix", ()),
        ),
        "binary",
        True,
        reference=lambda b: {
            "accuracy": skm.accuracy_score(b["targets"], _binary_labels(b), sample_weight=_w(b)),
            "matthews_corrcoef": skm.matthews_corrcoef(b["targets"], _binary_labels(b), sample_weight=_w(b)),
        },
    ),
    "ConfusionCounts-multiclass": Config(
        MC,
        (
            ("accuracy", (("average", "macro"),)),
            ("precision", (("average", "weighted"),)),
            ("recall", (("average", "none"),)),
            ("fbeta_score", (("beta", 2.0),)),
            ("matthews_corrcoef", ()),
            ("cohen_kappa", (("weights", "quadratic"),)),
            ("confusion_matrix", (("normalize", "true"),)),
        ),
        "multiclass",
        True,
        reference=lambda b: {
            "recall": skm.recall_score(
                b["targets"], _argmax(b), labels=range(4), average=None, sample_weight=_w(b), zero_division=0
            ),
            "cohen_kappa": skm.cohen_kappa_score(b["targets"], _argmax(b), weights="quadratic", sample_weight=_w(b)),
        },
    ),
    "ConfusionCounts-multiclass-labels-ignore": Config(
        MC_IGNORE,
        (("accuracy", ()), ("f1_score", (("average", "none"),)), ("balanced_accuracy", (("adjusted", True),))),
        "multiclass-labels",
        True,
    ),
    "ConfusionCounts-multilabel": Config(
        ML,
        (
            ("precision", (("average", "micro"),)),
            ("f1_score", (("average", "none"),)),
            ("accuracy", (("average", "macro"),)),
            ("confusion_matrix", ()),
        ),
        "multilabel",
        True,
    ),
    "TopKHits": Config(
        MC, (("accuracy", (("top_k", 2),)), ("accuracy", (("average", "macro"), ("top_k", 2)))), "multiclass", True
    ),
    "SubsetMatch": Config(ML, (("accuracy", ()),), "multilabel", True),
    # the default: exact while at most EXACT_CELLS distinct scores, so scikit-learn's values
    "ScoreHistogram-binary": Config(
        BIN,
        (("roc_auc", (("precision_bits", 6),)), ("average_precision", (("precision_bits", 6),))),
        "binary",
        True,
        reference=lambda b: {
            "roc_auc": skm.roc_auc_score(b["targets"], b["predictions"], sample_weight=_w(b)),
            "average_precision": skm.average_precision_score(b["targets"], b["predictions"], sample_weight=_w(b)),
        },
    ),
    # exact cells up to 12 distinct scores, one cell per bin beyond: batches of 0-40 rows cross the limit
    "ScoreHistogram-binary-exact-12": Config(
        BIN,
        (
            ("roc_auc", (("precision_bits", 6), ("exact_cells", 12))),
            ("average_precision", (("precision_bits", 6), ("exact_cells", 12))),
        ),
        "binary",
        True,
    ),
    # binned from the first row: the compiled update of the working histogram
    "ScoreHistogram-binary-binned": Config(
        BIN,
        (
            ("roc_auc", (("precision_bits", 6), ("exact_cells", 0))),
            ("average_precision", (("precision_bits", 6), ("exact_cells", 0))),
        ),
        "binary",
        True,
    ),
    # bins that keep up to 3 distinct scores beyond 12 exact cells: sorted on the host, exact within such bins
    "ScoreHistogram-binary-kept-3": Config(
        BIN,
        (
            ("roc_auc", (("precision_bits", 6), ("exact_cells", 12), ("bin_scores", 3))),
            ("average_precision", (("precision_bits", 6), ("exact_cells", 12), ("bin_scores", 3))),
        ),
        "binary",
        True,
    ),
    "ScoreHistogram-multiclass-kept-2": Config(
        MC,
        (
            ("roc_auc", (("precision_bits", 5), ("exact_cells", 0), ("bin_scores", 2))),
            ("average_precision", (("average", "none"), ("precision_bits", 5), ("exact_cells", 0), ("bin_scores", 2))),
        ),
        "multiclass",
        True,
    ),
    "ScoreHistogram-multiclass": Config(
        MC,
        (("roc_auc", (("precision_bits", 5),)), ("average_precision", (("average", "none"), ("precision_bits", 5)))),
        "multiclass",
        True,
    ),
    "ScoreHistogram-multiclass-exact-20": Config(
        MC,
        (
            ("roc_auc", (("precision_bits", 5), ("exact_cells", 20))),
            ("average_precision", (("average", "none"), ("precision_bits", 5), ("exact_cells", 20))),
        ),
        "multiclass",
        True,
    ),
    "ScoreHistogram-multiclass-binned": Config(
        MC,
        (
            ("roc_auc", (("precision_bits", 5), ("exact_cells", 0))),
            ("average_precision", (("average", "none"), ("precision_bits", 5), ("exact_cells", 0))),
        ),
        "multiclass",
        True,
    ),
    "ExactScoreCounts-binary": Config(
        BIN,
        (("roc_auc", (("mode", "exact"),)), ("average_precision", (("mode", "exact"),))),
        "binary",
        True,
        16,
        reference=lambda b: {
            "roc_auc": skm.roc_auc_score(b["targets"], b["predictions"], sample_weight=_w(b)),
            "average_precision": skm.average_precision_score(b["targets"], b["predictions"], sample_weight=_w(b)),
        },
    ),
    "ExactScoreCounts-multilabel": Config(
        ML,
        (("roc_auc", (("average", "micro"), ("mode", "exact"))), ("average_precision", (("mode", "exact"),))),
        "multilabel",
        True,
        16,
    ),
    "LogLossSum-binary": Config(
        BIN,
        (("log_loss", ()),),
        "binary",
        True,
        reference=lambda b: {"log_loss": skm.log_loss(b["targets"], b["predictions"], sample_weight=_w(b))},
    ),
    "LogLossSum-multiclass": Config(
        MC,
        (("log_loss", ()),),
        "multiclass",
        True,
        reference=lambda b: {
            "log_loss": skm.log_loss(b["targets"], b["predictions"], sample_weight=_w(b), labels=range(4))
        },
    ),
    "BrierSum-binary": Config(
        BIN, (("brier_score", ()),), "binary", True, reference=lambda b: {"brier_score": _brier(b, 2)}
    ),
    # compiled, the class sum of squares (an einsum) may end in other last bits than eager: the fixed point's low
    # word (units of 2^-52) then differs by a few units per row; the pipeline only ever runs the compiled update
    "BrierSum-multiclass": Config(
        MC, (("brier_score", ()),), "multiclass", True, reference=lambda b: {"brier_score": _brier(b, 4)}, jit_atol=1024
    ),
    "CalibrationBins-binary": Config(
        BIN,
        (("expected_calibration_error", (("n_bins", 10),)), ("maximum_calibration_error", (("n_bins", 10),))),
        "binary",
        True,
    ),
    "CalibrationBins-multiclass": Config(MC, (("expected_calibration_error", (("n_bins", 7),)),), "multiclass", True),
    # the reliability diagram's bins close on the right (scikit-learn's calibration_curve)
    "CalibrationBins-right-binary": Config(BIN, (("reliability_diagram", (("n_bins", 10),)),), "binary", True),
    "CalibrationBins-right-multiclass": Config(MC, (("reliability_diagram", (("n_bins", 7),)),), "multiclass", True),
    "ClasswiseBins-binary": Config(
        BIN, (("classwise_ece", (("n_bins", 8),)), ("brier_decomposition", (("n_bins", 8),))), "binary", True
    ),
    "ClasswiseBins-multiclass": Config(MC, (("classwise_ece", (("n_bins", 5),)),), "multiclass", True),
    "PixelConfusion": Config(
        MC_LABELS,
        (("mean_iou", ()), ("pixel_accuracy", ()), ("dice_score", (("average", "none"),))),
        "multiclass-labels",
        True,
        reference=lambda b: {
            "pixel_accuracy": skm.accuracy_score(b["targets"], b["predictions"], sample_weight=_w(b)),
        },
    ),
    "RegressionMoments": Config(
        Task("regression"),
        tuple((m, ()) for m in ("mse", "rmse", "mae", "r2", "explained_variance", "pearson_corrcoef")),
        "regression",
        False,
        reference=lambda b: {
            "mse": skm.mean_squared_error(b["targets"], b["predictions"], sample_weight=_w(b)),
            "mae": skm.mean_absolute_error(b["targets"], b["predictions"], sample_weight=_w(b)),
            "r2": skm.r2_score(b["targets"], b["predictions"], sample_weight=_w(b)),
        },
    ),
}

STATISTIC_TYPES = {
    ConfusionCounts,
    TopKHits,
    SubsetMatch,
    ScoreHistogram,
    ExactScoreCounts,
    LogLossSum,
    BrierSum,
    CalibrationBins,
    ClasswiseBins,
    PixelConfusion,
    RegressionMoments,
}


@functools.cache
def setup(name: str) -> tuple[StatisticTester, list[DerivedMetric]]:
    config = CONFIGS[name]
    metrics = [catalog.build(m, config.task, dict(params)) for m, params in config.metrics]
    assert len({m.statistic for m in metrics}) == 1, name
    return StatisticTester(metrics[0].statistic, 0.0 if config.exact else 1e-12, config.jit_atol), metrics


def test_every_statistic_type_is_covered():
    assert {type(setup(name)[0].statistic) for name in CONFIGS} == STATISTIC_TYPES


# --- data -------------------------------------------------------------------------------------------


@st.composite
def batches(draw, kind: str, max_rows: int = 40):
    """A batch of ``n`` rows (0 to ``max_rows``) as the accumulator takes it."""
    n = draw(st.integers(0, max_rows))
    w = draw(arrays(np.float64, n, elements=WEIGHTS))
    if kind == "binary":
        preds = draw(arrays(np.float64, n, elements=SCORES))
        targets = draw(arrays(np.int64, n, elements=st.integers(0, 1)))
    elif kind in ("multiclass", "multiclass-labels"):
        raw = draw(arrays(np.int64, (n, 4), elements=st.integers(0, 4))).astype(np.float64)
        raw[raw.sum(axis=1) == 0, 0] = 1.0
        preds = raw / raw.sum(axis=1, keepdims=True)
        low = -1 if kind == "multiclass-labels" else 0
        targets = draw(arrays(np.int64, n, elements=st.integers(low, 3)))
        if kind == "multiclass-labels":
            preds = draw(arrays(np.int64, n, elements=st.integers(0, 3)))
    elif kind == "multilabel":
        preds = draw(arrays(np.float64, (n, 3), elements=SCORES))
        targets = draw(arrays(np.int64, (n, 3), elements=st.integers(0, 1)))
    else:
        preds = draw(arrays(np.float64, n, elements=GRID))
        targets = draw(arrays(np.float64, n, elements=GRID))
    return {"predictions": preds, "targets": targets, "weights": w}


def seeded_batches(name: str, seed: int = 0) -> list[dict]:
    """Batches of 0, 1, 37 and 300 rows of the config's kind (labels in range), every weight positive."""
    config, rng = CONFIGS[name], np.random.default_rng(seed)
    out = []
    for n in (0, 1, 37, 300):
        w = rng.choice([0.5, 1.0, 2.0, 3.0], n)
        if config.data == "binary":
            y = rng.integers(0, 2, n)
            p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1).round(3)
        elif config.data == "multiclass":
            y = rng.integers(0, 4, n)
            raw = rng.random((n, 4)) + np.eye(4)[y]
            p = raw / raw.sum(axis=1, keepdims=True)
        elif config.data == "multiclass-labels":
            y = rng.integers(0, 4, n)
            p = np.where(rng.random(n) < 0.6, y, rng.integers(0, 4, n))
        elif config.data == "multilabel":
            y = rng.integers(0, 2, (n, 3))
            p = np.clip(0.3 * y + 0.7 * rng.random((n, 3)), 0, 1).round(3)
        else:
            y = rng.normal(size=n)
            p = y + 0.5 * rng.normal(size=n)
        out.append({"predictions": p, "targets": y, "weights": w})
    return out


# --- the laws ---------------------------------------------------------------------------------------

NAMES = list(CONFIGS)


@pytest.mark.parametrize("name", NAMES)
@LAWS
@given(data=st.data())
def test_merge_has_identity_zero_and_is_commutative_and_associative(name, data):
    tester, _ = setup(name)
    kind, rows = CONFIGS[name].data, CONFIGS[name].max_rows
    a, b, c = (data.draw(batches(kind, rows)) for _ in range(3))
    tester.check_identity(a)
    tester.check_commutative(a, b)
    tester.check_associative(a, b, c)


@pytest.mark.parametrize("name", NAMES)
@LAWS
@given(data=st.data())
def test_any_partition_and_merge_order_give_the_same_result(name, data):
    tester, _ = setup(name)
    batch = data.draw(batches(CONFIGS[name].data, max_rows=CONFIGS[name].max_rows + 10))
    n = len(batch["targets"])
    order = np.array(data.draw(st.permutations(range(n))), np.int64)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5)))
    seed = data.draw(st.integers(0, 2**32 - 1))
    tester.check_partition(batch, np.split(order, cuts), np.random.default_rng(seed))


def without_subnormals(batch: dict) -> dict:
    """The batch with subnormal floats (below 2.2e-308) as 0: compiled XLA code and eager ops treat them
    differently (one keeps them, the other flushes them to zero), so compiled and eager states may differ there."""
    tiny = np.finfo(np.float64).tiny
    return {
        k: np.where(np.abs(v) < tiny, 0.0, v)
        if np.issubdtype(np.asarray(v).dtype, np.floating) and k != "weights"
        else v
        for k, v in batch.items()
    }


@pytest.mark.slow  # eager updates op by op; the seeded test below checks the same laws once per statistic
@pytest.mark.parametrize("name", NAMES)
@FEWER
@given(data=st.data())
def test_compiled_update_equals_eager_and_resample_equals_explicit_merges(name, data):
    tester, _ = setup(name)
    kind, rows = CONFIGS[name].data, CONFIGS[name].max_rows
    buckets = [data.draw(batches(kind, rows)) for _ in range(data.draw(st.integers(1, 4)))]
    tester.check_jit(without_subnormals(buckets[0]))
    weights = data.draw(arrays(np.int64, (3, len(buckets)), elements=st.integers(0, 3)))
    tester.check_resample(buckets, weights)


def headline(values: dict) -> object:
    """A metric's value: ``values[""]``, or its per-class values ``[0]``, ``[1]``... as one array."""
    if "" in values:
        return values[""]
    return np.array([values[f"[{i}]"] for i in range(sum(k.startswith("[") for k in values))])


@pytest.mark.parametrize("name", NAMES)
def test_every_law_and_the_reference_value_on_seeded_batches(name):
    tester, metrics = setup(name)
    reference = CONFIGS[name].reference
    names = set(reference(take(seeded_batches(name)[-1], np.arange(5)))) if reference else set()

    def values(state) -> dict:
        return {m.name: headline(m.compute(state)) for m in metrics if m.name in names}

    tester.check_all(seeded_batches(name), finalize=values, reference=reference, rtol=1e-10, atol=1e-12)


def test_the_readme_conformance_example_runs():
    """The README's example of checking a statistic class of one's own runs as written."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"^```python\n(.*?)^```$", readme, re.M | re.S) if "StatisticTester" in b]
    exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
