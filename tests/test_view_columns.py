"""Arrow's view layouts of strings and bytes (``string_view``, ``binary_view``: what Polars writes by default) are
read as the plain columns of the same values: text, slice and group-label columns give the values of the same files
written as ``string``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sacrebleu

from pipelines.cli import main
from pipelines.results import load_run
from tests.conftest import write_job

HYPOTHESES = ["the cat sat", "a dog ran", "", "hello world", "the cat sat down"]
REFERENCES = ["the cat sat down", "a dog ran fast", "x", "hello there world", "the cat sat down"]
COUNTRIES = list("uudde")


def _values(tmp_path, name: str, string: pa.DataType) -> dict[str, dict[str, float]]:
    data = tmp_path / name
    data.mkdir()
    columns = {"h": HYPOTHESES, "r": REFERENCES, "c": COUNTRIES}
    pq.write_table(pa.table({k: pa.array(v, string) for k, v in columns.items()}), data / "a.parquet")
    binary = {"p": [0.2, 0.8, 0.6, 0.4, 0.9], "y": [0, 1, 1, 0, 1], "g": pa.array(list("ababa"), string)}
    pq.write_table(pa.table(binary), data / "b.parquet")
    output = {"uri": str(tmp_path / "out")}
    text = {
        "name": f"{name}-text",
        "data": {"path": str(data / "a.parquet"), "columns": {"predictions": "h", "targets": "r"}},
        "task": "text",
        "metrics": ["bleu", "chrf", "wer"],
        "slices": [{"column": "c"}],
        "execution": {"runner": "local"},
        "output": output,
    }
    fair = {
        "name": f"{name}-fair",
        "data": {"path": str(data / "b.parquet"), "columns": {"predictions": "p", "targets": "y", "sensitive": "g"}},
        "task": "binary",
        "metrics": ["accuracy", "demographic_parity_difference"],
        "slices": [{"column": "g"}],
        "execution": {"runner": "local"},
        "output": output,
    }
    values = {}
    for spec in (text, fair):
        assert main(["run", str(write_job(tmp_path / f"{spec['name']}.yaml", spec)), "--quiet"]) == 0
        run = load_run(str(tmp_path / "out" / spec["name"] / "latest"))
        for point in run.points:
            values[f"{spec['name'].split('-')[1]}/{point.name}"] = {k: m.value for k, m in point.metrics.items()}
    return values


def test_view_columns_give_the_values_of_plain_strings(tmp_path, capsys):
    plain = _values(tmp_path, "plain", pa.string())
    view = _values(tmp_path, "view", pa.string_view())  # exit 2 before: "has type string_view; expected a string"
    assert view == plain and len(plain) == 7  # overall, 3 countries; overall, 2 groups
    bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score
    assert view["text/overall"]["bleu"] == pytest.approx(bleu, abs=1e-9)
    us = [i for i, c in enumerate(COUNTRIES) if c == "u"]
    u_bleu = sacrebleu.corpus_bleu([HYPOTHESES[i] for i in us], [[REFERENCES[i] for i in us]]).score
    assert view["text/c=u"]["bleu"] == pytest.approx(u_bleu, abs=1e-9)


def test_a_binary_view_column_is_read_as_bytes():
    from pipelines.reading import column_type

    assert column_type(pa.binary_view()) == column_type(pa.large_binary())
    assert column_type(pa.string_view()) == column_type(pa.string())
