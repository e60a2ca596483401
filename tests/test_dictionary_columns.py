"""Dictionary-encoded string columns (what a pandas ``category`` column or ``pa.array(...).dictionary_encode()``
writes) are read wherever a plain string column is: a text task's predictions and targets, a ranking task's
query ids, group labels, row ids and slices, alone or beside plain shards, to results bit-identical to the same
data written plain. A column of the wrong type is still refused, naming the task's prediction kind only where it
decides the column's type."""

from __future__ import annotations

import itertools
from pathlib import Path

import jiwer
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sacrebleu

from evaluators import retrieval
from evaluators.retrieval import QUERY
from evaluators.task import Task, TaskKind
from pipelines.cli import main
from pipelines.outcome import parse_outcome
from pipelines.reading import expected_type
from pipelines.storage import read_run
from tests.conftest import write_job
from tests.test_corpus_text import pairs
from tests.test_retrieval import METRICS as RANKING_METRICS
from tests.test_retrieval import queries
from tests.test_retrieval import references as ranking_references

DICTIONARY, LARGE_DICTIONARY, PLAIN, LARGE = "dictionary", "large_dictionary", "plain", "large"


def _encoded(values: list, encoding: str) -> pa.Array:
    """``values`` (strings) as ``encoding`` writes them: plain or dictionary-encoded, ``string`` or ``large_string``."""
    large = encoding in (LARGE, LARGE_DICTIONARY)
    array = pa.array(values, pa.large_string() if large else pa.string())
    return array.dictionary_encode() if encoding in (DICTIONARY, LARGE_DICTIONARY) else array


def _write(directory: Path, columns: dict[str, list], bounds: list[int], encodings: list[str], text: tuple[str, ...]):
    """Rows ``bounds[i]:bounds[i + 1]`` of ``columns`` in file ``part-i``, the ``text`` columns as ``encodings[i]``."""
    directory.mkdir()
    for i, ((lo, hi), encoding) in enumerate(zip(itertools.pairwise(bounds), encodings, strict=True)):
        table = pa.table({k: _encoded(list(v[lo:hi]), encoding) if k in text else v[lo:hi] for k, v in columns.items()})
        path = directory / f"part-{i}.parquet"
        pq.write_table(table, path, row_group_size=70)
        dictionary = encoding in (DICTIONARY, LARGE_DICTIONARY)
        assert all(pa.types.is_dictionary(pq.read_schema(path).field(k).type) == dictionary for k in text)


def _run(tmp_path: Path, name: str, job: dict, capsys) -> tuple[int, str]:
    """``python -m pipelines run <job> --runner local``: exit code, and the run's URI (or the error's message)."""
    path = write_job(tmp_path / f"{name}.yaml", {**job, "name": name, "output": {"uri": str(tmp_path / "out")}})
    code = main(["run", str(path), "--runner", "local", "--quiet"])
    captured = capsys.readouterr()
    outcome = parse_outcome(captured.out)
    return code, outcome["run_uri"] if code == 0 else captured.err.strip()


def _points(tmp_path: Path, name: str, job: dict, capsys) -> list[dict]:
    code, uri = _run(tmp_path, name, job, capsys)
    assert code == 0, uri
    return [{k: v for k, v in p.to_dict().items() if k != "scenario"} for p in read_run(uri).points]  # not the path


def _overall(points: list[dict]) -> dict[str, float]:
    (overall,) = (p for p in points if p["name"] == "overall")
    return {k: m["value"] for k, m in overall["metrics"].items()}


def _text_job(data: Path) -> dict:
    return {
        "data": {
            "path": f"{data}/*.parquet",
            "columns": {"predictions": "cand", "targets": "ref", "sensitive": "lang", "row_id": "rid"},
        },
        "task": "text",
        "metrics": ["bleu", "wer"],
        "slices": [{"column": "lang"}],
        "confidence": {"replicates": 20},
        "execution": {"unit_rows": 150},
    }


@pytest.fixture(scope="module")
def texts() -> dict[str, list]:
    hyps, refs = pairs(np.random.default_rng(21), 600)
    rng = np.random.default_rng(22)
    langs = [str(rng.choice(["en", "de", "fr"])) for _ in hyps]
    return {"cand": hyps, "ref": refs, "lang": langs, "rid": [f"r{i:04d}" for i in range(len(hyps))]}


TEXT_COLUMNS = ("cand", "ref", "lang", "rid")


@pytest.mark.parametrize(
    "encodings",
    [[DICTIONARY] * 3, [DICTIONARY, PLAIN, LARGE_DICTIONARY], [LARGE, DICTIONARY, PLAIN]],
    ids=["all-dictionary", "dictionary-plain-large-dictionary", "large-dictionary-plain"],
)
def test_a_text_job_on_dictionary_columns_equals_plain_strings_and_the_references(tmp_path, texts, capsys, encodings):
    bounds = [0, 200, 400, 600]
    _write(tmp_path / "plain", texts, bounds, [PLAIN] * 3, TEXT_COLUMNS)
    _write(tmp_path / "encoded", texts, bounds, encodings, TEXT_COLUMNS)
    plain = _points(tmp_path, "plain", _text_job(tmp_path / "plain"), capsys)
    encoded = _points(tmp_path, "encoded", _text_job(tmp_path / "encoded"), capsys)
    assert encoded == plain  # every point (overall, the slices), value and interval, bit for bit
    assert {p["name"] for p in encoded} > {"overall"}
    values = _overall(encoded)
    assert values["bleu"] == pytest.approx(sacrebleu.corpus_bleu(texts["cand"], [texts["ref"]]).score, rel=1e-9)
    assert values["wer"] == pytest.approx(jiwer.wer(texts["ref"], texts["cand"]), rel=1e-9)


@pytest.mark.parametrize("encodings", [[DICTIONARY] * 3, [PLAIN, DICTIONARY, LARGE_DICTIONARY]], ids=["all", "mixed"])
def test_a_retrieval_job_with_dictionary_query_ids_equals_plain_ones(tmp_path, capsys, encodings):
    data = queries(np.random.default_rng(23), 90, ties=True)
    starts = retrieval.runs(data[QUERY])[0]
    bounds = [*(int(starts[len(starts) * i // 3]) for i in range(3)), len(data[QUERY])]  # whole queries per file
    columns = {"score": data["predictions"], "rel": data["targets"], "qid": list(data[QUERY])}

    def job(directory: Path) -> dict:
        _write(directory, columns, bounds, [PLAIN] * 3 if directory.name == "plain" else encodings, ("qid",))
        return {
            "data": {
                "path": f"{directory}/*.parquet",
                "columns": {"predictions": "score", "targets": "rel", "query_id": "qid"},
            },
            "task": "ranking",
            "metrics": [{"name": name, **params, "as": key} for key, (name, params) in RANKING_METRICS.items()],
            "confidence": {"replicates": 20},
            "execution": {"unit_rows": 64},
        }

    plain = _points(tmp_path, "plain", job(tmp_path / "plain"), capsys)
    encoded = _points(tmp_path, "encoded", job(tmp_path / "encoded"), capsys)
    assert encoded == plain
    values = _overall(encoded)
    for key, expected in ranking_references(data, ties=True).items():
        assert values[key] == pytest.approx(expected, rel=1e-9), key


def test_a_wrong_type_exits_2_naming_the_column_and_not_a_prediction_kind(tmp_path, texts, capsys):
    columns = {**texts, "cand": list(range(len(texts["cand"])))}  # int64 candidates
    _write(tmp_path / "data", columns, [0, 300, 600], [DICTIONARY] * 2, ("ref", "lang", "rid"))
    code, message = _run(tmp_path, "wrong", _text_job(tmp_path / "data"), capsys)
    assert code == 2, message
    assert message.startswith("evalpipe: error: ") and "\n" not in message and "Traceback" not in message
    assert (
        f"{tmp_path / 'data' / 'part-0.parquet'}: column 'cand' (data.columns.predictions) has type int64; "
        "expected a string column for a text task." in message
    ), message
    assert "probabilities" not in message, message
    assert not list((tmp_path / "out").glob("wrong/2*"))  # no run committed


@pytest.mark.parametrize(
    ("task", "role"),
    [
        (Task(TaskKind.TEXT), "predictions"),
        (Task(TaskKind.TEXT), "targets"),
        (Task(TaskKind.RANKING), "query_id"),
        (Task(TaskKind.BINARY), "sensitive"),
        (Task(TaskKind.BINARY), "row_id"),
    ],
)
def test_dictionary_strings_are_accepted_wherever_plain_strings_are(task, role):
    _, ok = expected_type(role, task)
    assert ok(pa.string())
    assert ok(pa.dictionary(pa.int32(), pa.string())) and ok(pa.dictionary(pa.int8(), pa.large_string()))
    assert not ok(pa.dictionary(pa.int32(), pa.binary())) and not ok(pa.dictionary(pa.int32(), pa.float64()))


def test_only_classification_predictions_name_the_prediction_kind(tmp_path, capsys):
    """Where the prediction kind decides the column (a binary task's scores or labels), the error still names it."""
    (tmp_path / "data").mkdir()
    table = pa.table({"score": _encoded(["a", "b"], DICTIONARY), "label": [0, 1]})
    pq.write_table(table, tmp_path / "data" / "part-0.parquet")
    job = {
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": {"predictions": "score", "targets": "label"}},
        "task": "binary",
        "metrics": ["accuracy"],
    }
    code, message = _run(tmp_path, "binary", job, capsys)
    assert code == 2, message
    assert "(data.columns.predictions) has type dictionary<values=string" in message, message
    assert message.endswith("expected a numeric column for a binary task with probabilities predictions."), message
