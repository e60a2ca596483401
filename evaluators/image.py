"""Image-generation metrics from a frozen image backbone: FID, KID and the Inception Score.

An ``image`` task has a generated-image column (``predictions``) and a real-image column (``targets``),
one image per row. The worker runs the job's backbone (``kind: cnn``, :mod:`evaluators.backbones.cnn`, or
``kind: inception``, :mod:`evaluators.backbones.inception`) once per batch and hands the statistics numeric
features instead of images:

* ``candidate`` / ``reference``: feature vectors ``[n, D]`` float32 of the generated / real images;
* ``candidate_logits``: class logits ``[n, K]`` float32 of the generated images;
* ``candidate_key`` / ``reference_key``: a stable 64-bit hash of each row's stored image, ``[n, 2]`` int32
  (high, low word), which picks KID's subset.

Statistics never keep all features:

* ``fid``: :class:`~evaluators.frechet.FeatureMoments` (count, mean, centred co-moment per side; Chan's merge)
  and :func:`~evaluators.frechet.frechet_distance`, shared with the text metrics.
* ``kid``: :class:`KernelSubset` keeps at most ``subset_size`` rows per side, those with the smallest keys.
  The kept rows are a function of the data alone (not of sharding, order or worker count), and a
  pseudo-random sample of it: keys are hashes. Host-side, no bootstrap intervals.
* ``inception_score``: :class:`ClassProbabilitySums` keeps the weight, the sum of ``p(y|x)`` ``[K]`` and the
  sum of ``sum_y p log p``: additive, jitted, with bootstrap intervals.

Example::

    >>> import numpy as np
    >>> from evaluators.accumulate import Accumulator
    >>> from evaluators.task import Task
    >>> metric = inception_score(Task("image"), classes=3)
    >>> acc = Accumulator([metric.statistic])
    >>> (state,) = acc.update(acc.zero(), {"candidate_logits": np.array([[9.0, 0, 0], [0, 9.0, 0], [0, 0, 9.0]])})
    >>> round(metric.compute(state)[""], 3)   # three confident, distinct classes: close to 3
    2.993
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from evaluators.backbones.cnn import join_keys
from evaluators.classification import require_kind
from evaluators.frechet import FeatureMoments, frechet_value
from evaluators.lazyjax import jax, jnp
from evaluators.statistic import NON_NEGATIVE, Batch, DerivedMetric, Direction, State, Statistic
from evaluators.task import Task, TaskKind

SIDES = ("candidate", "reference")


@dataclass(frozen=True)
class KernelSubset(Statistic):
    """A deterministic subset of candidate and reference features for the Kernel Inception Distance.

    State, per side (``"candidate"``, ``"reference"``): ``{"key": uint64 [m], "features": float64 [m, D],
    "weight": float64 [m]}`` with ``m <= subset_size``: the rows of positive weight with the smallest
    ``(key, features, weight)`` in lexicographic order, kept sorted that way. ``merge`` is the union
    cut back to ``subset_size`` rows, so the state is a function of the multiset of rows: the same for any
    sharding, order or worker count. Host-side (``jittable = False``); too large to keep per bootstrap
    bucket (``bootstrap = False``).
    """

    dimension: int
    subset_size: int = 1000
    jittable: ClassVar[bool] = False
    bootstrap: ClassVar[bool] = False
    unpaired_sides: ClassVar[bool] = True
    """A batch may hold one side only; a state of candidates merges with a stored state of references."""
    features: ClassVar[tuple[str, ...]] = ("candidate", "reference", "candidate_key", "reference_key")

    def zero(self) -> State:
        return {
            side: {
                "key": np.zeros(0, np.uint64),
                "features": np.zeros((0, self.dimension), np.float64),
                "weight": np.zeros(0, np.float64),
            }
            for side in SIDES
        }

    def update(self, state: State, batch: Batch) -> State:
        w = np.asarray(batch["weights"], np.float64)
        live = w > 0
        out = dict(state)
        for side in (s for s in SIDES if s in batch):  # a one-sided batch leaves the other side as it is
            features = np.asarray(batch[side], np.float64)  # (float64 columns as written: float32 lost 1e6 + x)
            if features.ndim != 2 or features.shape[1] != self.dimension:
                raise ValueError(
                    f"kid: the backbone's {side} features have shape {features.shape[1:]}, expected "
                    f"({self.dimension},); set the metric's `dimension` to the backbone's feature width"
                )
            rows = {"key": join_keys(batch[f"{side}_key"])[live], "features": features[live], "weight": w[live]}
            out[side] = self._keep(_concat(state[side], rows))
        return out

    def merge(self, a: State, b: State) -> State:
        return {side: self._keep(_concat(a[side], b[side])) for side in SIDES}

    def _keep(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The ``subset_size`` smallest rows by ``(key, features, weight)``, in that order."""
        keys = rows["key"]
        if len(keys) > self.subset_size:
            cut = np.partition(keys, self.subset_size - 1)[self.subset_size - 1]
            rows = {k: v[keys <= cut] for k, v in rows.items()}
        order = np.lexsort((rows["weight"], *rows["features"].T[::-1], rows["key"]))[: self.subset_size]
        return {k: np.ascontiguousarray(v[order]) for k, v in rows.items()}


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows of ``a`` then ``b``, each leaf in its dtype (features float64: a state stored in float32 is widened)."""
    dtypes = {"key": np.uint64, "features": np.float64, "weight": np.float64}
    return {k: np.concatenate([np.asarray(a[k], dtypes.get(k)), np.asarray(b[k], dtypes.get(k))]) for k in a}


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``k(x, y) = (x . y / d + 1)^3`` for rows ``x`` ``[m, d]`` and ``y`` ``[n, d]`` -> ``[m, n]`` float64."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 between rows ``x`` ``[m, d]`` and ``y`` ``[n, d]`` with the cubic polynomial kernel.

    ``E k(x, x') + E k(y, y') - 2 E k(x, y)``, the within-set terms over pairs ``i != j``. With row weights
    the pair terms are weighted by ``w_i w_j`` (unit weights give the usual U-statistic). NaN when a side
    has fewer than 2 rows.
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        return float("nan")
    wx = np.ones(m) if wx is None else np.asarray(wx, np.float64)
    wy = np.ones(n) if wy is None else np.asarray(wy, np.float64)

    def within(k: np.ndarray, w: np.ndarray) -> float:
        pairs = w.sum() ** 2 - np.sum(w * w)
        return float((w @ k @ w - np.sum(w * w * np.diag(k))) / pairs)

    cross = float(wx @ polynomial_kernel(x, y) @ wy / (wx.sum() * wy.sum()))
    return within(polynomial_kernel(x, x), wx) + within(polynomial_kernel(y, y), wy) - 2.0 * cross


def _kid(state: State) -> dict[str, float]:
    c, r = state["candidate"], state["reference"]
    return {"": mmd2_unbiased(c["features"], r["features"], c["weight"], r["weight"])}


@dataclass(frozen=True)
class ClassProbabilitySums(Statistic):
    """Sums for the Inception Score of the candidate images.

    State: ``{"weight": float64, "probability": float64 [K]`` (sum of ``w p(y|x)``), ``"negentropy": float64``
    (sum of ``w sum_y p(y|x) log p(y|x)``)}, with ``p(y|x) = softmax(candidate_logits)`` in float64.
    Additive: merged and bootstrapped by sums.
    """

    classes: int
    features: ClassVar[tuple[str, ...]] = ("candidate_logits",)

    def zero(self) -> State:
        return {
            "weight": np.zeros((), np.float64),
            "probability": np.zeros(self.classes, np.float64),
            "negentropy": np.zeros((), np.float64),
        }

    def update(self, state: State, batch: Batch) -> State:
        logits = jnp.asarray(batch["candidate_logits"], jnp.float64)
        if logits.ndim != 2 or logits.shape[1] != self.classes:
            raise ValueError(
                f"inception_score: the backbone gives logits of shape {logits.shape[1:]}, expected "
                f"({self.classes},); set the metric's `classes` to the backbone's number of classes"
            )
        w = jnp.asarray(batch["weights"], jnp.float64)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        p = jnp.exp(log_p)
        return {
            "weight": state["weight"] + jnp.sum(w),
            "probability": state["probability"] + w @ p,
            "negentropy": state["negentropy"] + w @ jnp.sum(p * log_p, axis=-1),
        }


def _inception_score(state: State) -> dict[str, float]:
    weight = float(state["weight"])
    if weight <= 0:
        return {"": float("nan")}
    marginal = np.asarray(state["probability"], np.float64) / weight
    marginal_negentropy = float(np.sum(marginal * np.log(np.clip(marginal, 1e-300, None))))  # 0 log 0 = 0
    return {"": float(np.exp(float(state["negentropy"]) / weight - marginal_negentropy))}


def _require_image(task: Task, name: str) -> None:
    require_kind(task, name, TaskKind.IMAGE)


def _positive(name: str, parameter: str, value: int, least: int = 1) -> int:
    if int(value) != value or value < least:
        raise ValueError(f"{name}: `{parameter}` must be an integer of at least {least}, got {value!r}")
    return int(value)


def fid(task: Task, *, dimension: int = 64) -> DerivedMetric:
    """Fréchet Inception Distance: Fréchet distance between the generated and real feature distributions.

    ``dimension`` is the backbone's feature width (64 for ``scripts/make_cnn_backbone.py``). Lower is better.
    """
    _require_image(task, "fid")
    stat = FeatureMoments(_positive("fid", "dimension", dimension))
    return DerivedMetric(
        "fid",
        stat,
        frechet_value,
        Direction.LOWER,
        description="Fréchet distance of generated vs real image features",
        value_range=NON_NEGATIVE,
    )


def kid(task: Task, *, dimension: int = 64, subset_size: int = 1000) -> DerivedMetric:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel ``(x . y / d + 1)^3`` on one deterministic subset.

    Each side keeps the ``subset_size`` rows whose stored image hashes smallest (all rows when there are
    fewer). torchmetrics instead averages 100 random subsets (and reports their std); with all rows
    kept both are the same estimator on the same rows. Lower is better.
    """
    _require_image(task, "kid")
    stat = KernelSubset(_positive("kid", "dimension", dimension), _positive("kid", "subset_size", subset_size, 2))
    return DerivedMetric(
        "kid", stat, _kid, Direction.LOWER, description="Kernel Inception Distance (MMD^2, cubic polynomial kernel)"
    )


def inception_score(task: Task, *, classes: int = 10) -> DerivedMetric:
    """Inception Score of the generated images: ``exp(E_x KL(p(y|x) || p(y)))``, in one split.

    ``classes`` is the backbone's number of logits (10 for ``scripts/make_cnn_backbone.py``). torchmetrics and
    torch-fidelity average over 10 splits of the data; this is the score of the whole set (one split),
    which is what they give with ``splits=1``. Higher is better.
    """
    _require_image(task, "inception_score")
    stat = ClassProbabilitySums(_positive("inception_score", "classes", classes, 2))
    return DerivedMetric(
        "inception_score",
        stat,
        _inception_score,
        Direction.HIGHER,
        description="Inception Score of the generated images (one split)",
        value_range=(1.0, float("inf")),  # (the exponential of a mean Kullback-Leibler divergence)
    )
