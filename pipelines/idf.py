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

import contextlib
import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from pipelines.backbone_files import fsspec_reader
from pipelines.planning import FileInfo, UnitPart
from pipelines.reading import read_part
from pipelines.spec import JobSpec


def needs_idf(spec: JobSpec) -> bool:
    """Whether a metric of ``spec`` reads idf-weighted BERTScore."""
    return any("bertscore_idf" in metric.statistic.features for _, metric in spec.derived_metrics())


def resolve_idf(spec: JobSpec, files: Sequence[FileInfo]) -> tuple[JobSpec, dict[str, int] | None]:
    """``spec`` carrying the idf weights its BERTScore metrics need, and what they were counted from
    (``{"documents": M, "tokens": distinct tokens seen}``); ``spec`` itself and None when none needs them."""
    if not needs_idf(spec):
        return spec, None
    from evaluators.backbones.bert import BertConfig, document_frequency, idf_weights, load_tokenizer  # idf jobs only

    assert spec.backbone is not None
    read = fsspec_reader(spec.backbone.weights)
    config = BertConfig.from_json(json.loads(read("config.json")))
    tokenizer, _ = load_tokenizer(spec.backbone, read, config)
    roles = {"targets": spec.data.columns.targets}
    budget = int(spec.execution.memory_budget_mb * 2**20)
    counts = np.zeros(config.vocab_size, np.int64)
    documents = 0
    for info in files:
        part = UnitPart(info.path, 0, len(info.row_groups), info.rows, info.size, info.version)
        with contextlib.closing(read_part(part, roles, spec.data.storage_options, budget)) as groups:
            for _, _, columns in groups:
                counts += document_frequency(tokenizer, config.vocab_size, columns["targets"])
                documents += len(columns["targets"])
    weights = idf_weights(counts, documents)
    return dataclasses.replace(spec, idf=weights), {"documents": documents, "tokens": int((counts > 0).sum())}
