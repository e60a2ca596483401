"""BERTScore idf weights: document frequencies of the reference texts, counted before the main pass.

idf weighting makes a pair's score depend on the whole reference corpus, so it cannot come from per-unit
statistics alone. When a BERTScore metric sets ``idf: true``, the driver first reads the reference
column (``data.columns.targets``) of every input file a row group at a time, tokenizes it with the
backbone's tokenizer (no model weights are loaded) and counts in how many references each token occurs.
Counts of disjoint row groups add up, so the weights do not depend on sharding or runner. The weights
``log((M + 1) / (df + 1))`` travel with the job to every worker. Memory: one row group of text plus one
int64 per vocabulary entry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from evaluators.backbones.bert import BertConfig, document_frequency, idf_weights, load_tokenizer
from pipelines.planning import FileInfo
from pipelines.spec import JobSpec
from pipelines.worker import fsspec_reader


def needs_idf(spec: JobSpec) -> bool:
    """Whether a metric of ``spec`` reads idf-weighted BERTScore."""
    return any("bertscore_idf" in metric.statistic.features for _, metric in spec.derived_metrics())


def resolve_idf(spec: JobSpec, files: Sequence[FileInfo]) -> tuple[JobSpec, dict[str, int] | None]:
    """``spec`` carrying the idf weights its BERTScore metrics need, and what they were counted from
    (``{"documents": M, "tokens": distinct tokens seen}``); ``spec`` itself and None when none needs them."""
    if not needs_idf(spec):
        return spec, None
    assert spec.backbone is not None
    import json

    read = fsspec_reader(spec.backbone.weights)
    config = BertConfig.from_json(json.loads(read("config.json")))
    tokenizer, _ = load_tokenizer(spec.backbone, read, config)
    column = spec.data.columns.targets
    counts = np.zeros(config.vocab_size, np.int64)
    documents = 0
    for info in files:
        fs, path = url_to_fs(info.path, **spec.data.storage_options)
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.metadata.num_row_groups):
                texts = parquet.read_row_group(group, columns=[column]).column(column).to_pylist()
                counts += document_frequency(tokenizer, config.vocab_size, texts)
                documents += len(texts)
    weights = idf_weights(counts, documents)
    return dataclasses.replace(spec, idf=weights), {"documents": documents, "tokens": int((counts > 0).sum())}
