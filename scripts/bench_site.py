"""The results site's incremental regeneration against a full rebuild, in one invocation.

    python scripts/bench_site.py [--runs 300] [--dir bench-data/site] [--json out.json]

One real nightly run (configs/nightly.yaml, local runner, 4,000 rows) is the template; ``--runs`` committed runs
of the same job are generated from it (one per night, every value and interval shifted by a seeded jitter, written
with the storage layer's commit protocol). The site is built over them, one more run is committed, and then:

* incremental: ``build_site`` with the site's index (reads the index, the last run's state and the new run);
* full: ``build_site(..., rebuild=True)`` over the same runs (reads every run).

Both read through a counting fsspec filesystem (``countedfile://``, the local filesystem with every byte read
and every file opened counted), without per-run report pages (the template's statistics are not copied). The
figures are wall time, bytes read and files opened, and their ratios (full / incremental).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from fsspec.implementations.local import LocalFileOpener, LocalFileSystem
from fsspec.registry import register_implementation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines import spec as spec_module  # noqa: E402
from pipelines.execute import run_job  # noqa: E402
from pipelines.records import Metric, Run  # noqa: E402
from pipelines.site import build_site  # noqa: E402
from pipelines.storage import new_run_id, run_location, write_run  # noqa: E402
from pipelines.synthetic import write_shards  # noqa: E402

PROTOCOL = "countedfile"


class CountingFile(LocalFileOpener):
    """A local file whose reads add to :class:`CountingFileSystem`'s counters."""

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        data = self.f.read(*args, **kwargs)
        CountingFileSystem.bytes_read += len(data)
        return data


class CountingFileSystem(LocalFileSystem):
    """The local filesystem under ``countedfile://``, counting bytes read and files opened for reading."""

    protocol = (PROTOCOL,)
    bytes_read: ClassVar[int] = 0
    files_opened: ClassVar[int] = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        text = str(path)
        return super()._strip_protocol(text[len(PROTOCOL) + 3 :] if text.startswith(f"{PROTOCOL}://") else text)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, **kwargs: Any) -> Any:
        if "r" in mode:
            CountingFileSystem.files_opened += 1
            return CountingFile(self._strip_protocol(path), mode, fs=self, **kwargs)
        return super()._open(path, mode, block_size, **kwargs)

    @classmethod
    def reset(cls) -> None:
        cls.bytes_read = cls.files_opened = 0


def template_run(work: Path) -> Run:
    """One committed run of configs/nightly.yaml over 4,000 generated rows."""
    write_shards(str(work / "preds" / "2026" / "11" / "18"), "binary", 4_000, 2, seed=1)
    assignments = [f"vars.root={work / 'preds'}", f"vars.results={work / 'template'}", "vars.DATE=2026-11-18"]
    job = spec_module.load(
        str(ROOT / "configs" / "nightly.yaml"), {"set": [*assignments, "confidence.replicates=20"], "runner": "local"}
    )
    return run_job(dataclasses.replace(job, baseline=None), show_progress=False).run


def jittered(template: Run, night: int, rng: np.random.Generator) -> Run:
    """The template as the run of ``night`` nights after 2026-01-01, every value and interval shifted alike."""
    timestamp = dt.datetime(2026, 1, 1, 3, 30, tzinfo=dt.UTC) + dt.timedelta(days=night)

    def shift(metric: Metric, delta: float) -> Metric:
        moved = (
            None if metric.lower is None else metric.lower + delta,
            None if metric.upper is None else metric.upper + delta,
        )
        return dataclasses.replace(metric, value=metric.value + delta, lower=moved[0], upper=moved[1])

    points = tuple(
        dataclasses.replace(
            p, metrics={k: m if k == "rows" else shift(m, float(rng.normal(0, 0.004))) for k, m in p.metrics.items()}
        )
        for p in template.points
    )
    return dataclasses.replace(template, id=new_run_id(timestamp), timestamp=timestamp, points=points)


def commit(results: str, run: Run) -> None:
    write_run(run_location(results, run.metadata["job"], run.id, {}), run, run.metadata["job"], (), {})


def measure(results: str, site: str, **kwargs: Any) -> dict[str, float]:
    CountingFileSystem.reset()
    start = time.perf_counter()
    built = build_site(results, site, reports=False, **kwargs)
    wall = time.perf_counter() - start
    return {
        "wall_s": wall,
        "bytes_read": CountingFileSystem.bytes_read,
        "files_opened": CountingFileSystem.files_opened,
        "runs_read": built.new_runs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="existing runs generated before the new one")
    parser.add_argument("--dir", help="work directory (default: a temporary one, removed after)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    register_implementation(PROTOCOL, CountingFileSystem, clobber=True)
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-site-"))
    try:
        template = template_run(work)
        results, site = f"{PROTOCOL}://{work / 'results'}", f"{PROTOCOL}://{work / 'site'}"
        rng = np.random.default_rng(0)
        for night in range(args.runs):
            commit(results, jittered(template, night, rng))
        first = measure(results, site)
        commit(results, jittered(template, args.runs, rng))
        incremental = measure(results, site)
        full = measure(results, site, rebuild=True)
        index_bytes = (work / "site" / "_site" / "index.json").stat().st_size
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    out = {
        "existing_runs": args.runs,
        "first_build": first,
        "incremental": incremental,
        "full_rebuild": full,
        "index_json_bytes": index_bytes,
        "ratio_full_over_incremental": {
            k: full[k] / incremental[k] for k in ("wall_s", "bytes_read", "files_opened") if incremental[k]
        },
    }
    print(f"| site, 1 new run over {args.runs} | wall s | bytes read | files opened | runs read |")
    print("|---|---:|---:|---:|---:|")
    for name, row in (("incremental", incremental), ("full rebuild", full)):
        print(f"| {name} | {row['wall_s']:.2f} | {row['bytes_read']:,} | {row['files_opened']} | {row['runs_read']} |")
    ratio = out["ratio_full_over_incremental"]
    print(
        f"full / incremental: {' , '.join(f'{k} {v:.1f}x' for k, v in ratio.items())}; index.json {index_bytes:,} bytes"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
