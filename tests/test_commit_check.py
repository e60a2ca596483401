"""``read_run`` and ``list_runs`` apply one commit check: a run directory that one of them refuses (no
manifest, a manifest cut short, a listed file missing, cut short or rewritten), the other refuses too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipelines import spec as spec_module
from pipelines.errors import UserError
from pipelines.execute import run_job
from pipelines.results import list_runs
from pipelines.storage import COMMIT_MARKER, METRICS_FILE, RUN_FILE, STATISTICS_FILE, read_run
from pipelines.synthetic import write_shards
from tests.conftest import accuracy_job, write_job


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewritten(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\n")


BROKEN = {
    "no-manifest": lambda run: (run / COMMIT_MARKER).unlink(),  # a driver that died before committing
    "manifest-cut-short": lambda run: _cut_short(run / COMMIT_MARKER),
    "metrics-cut-short": lambda run: _cut_short(run / METRICS_FILE),  # a copy still under way
    "statistics-missing": lambda run: (run / STATISTICS_FILE).unlink(),
    "run-rewritten": lambda run: _rewritten(run / RUN_FILE),
}


@pytest.fixture(scope="module")
def committed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("commit")
    write_shards(str(tmp / "data"), "binary", 300, 2, seed=1)
    spec = accuracy_job("job", str(tmp / "data"), {"uri": str(tmp / "out")})
    return Path(run_job(spec_module.load(str(write_job(tmp / "job.yaml", spec))), show_progress=False).uri)


def test_read_run_and_list_runs_refuse_the_same_incomplete_runs(committed, tmp_path):
    out = tmp_path / "out"
    for name, damage in BROKEN.items():
        copy = out / "job" / f"{committed.name[:-6]}{name[:6]}"
        shutil.copytree(committed, copy)
        damage(copy)
    shutil.copytree(committed, out / "job" / committed.name)

    (listed,) = list_runs(str(out))
    assert listed.run_id == committed.name and listed.uri == str(out / "job" / committed.name)
    assert read_run(listed.uri).id == committed.name
    for run in (out / "job").iterdir():
        if run.name == committed.name:
            continue
        with pytest.raises(UserError) as error:
            read_run(str(run))
        message = str(error.value)
        if (run / COMMIT_MARKER).exists():
            assert "not complete" in message and "missing or of another size" in message, run.name
            if run.name.endswith(("metric", "statis", "run-re")):  # (the manifest reads: the file is named)
                named = {"metric": f"of another size: {METRICS_FILE} (", "statis": f"missing: {STATISTICS_FILE}"}
                assert named.get(run.name[-6:], f"of another size: {RUN_FILE} (") in message, message
        else:
            assert "not committed" in message, run.name


def test_evalpipe_checkpoints_lists_the_run_directories_that_readers_refuse(committed, tmp_path, capsys):
    """Each damaged copy of a committed run (named as a run, so that only its commit tells it apart) is listed by
    ``evalpipe checkpoints`` among the run directories that never committed, as ``runs`` leaves it out; the intact
    copy is not. Before, a manifest listing a missing or rewritten file counted as a commit there."""
    from pipelines.cli import main
    from pipelines.leftovers import list_leftovers

    out = tmp_path / "out"
    damaged = set()
    for i, damage in enumerate(BROKEN.values()):
        copy = out / "job" / f"{committed.name[:-6]}{i:06x}"
        shutil.copytree(committed, copy)
        damage(copy)
        damaged.add(str(copy))
    shutil.copytree(committed, out / "job" / committed.name)

    assert [run.run_id for run in list_runs(str(out))] == [committed.name]
    leftovers = list_leftovers(str(out))
    # a manifest that reads, with a listed file missing or resized: a damaged run, kept by --delete (the file can be
    # restored); no manifest, or one that does not read: a run that never committed, removed once old enough
    kinds = {uri: "damaged" if Path(uri).name[-6:] in ("000002", "000003", "000004") else "run" for uri in damaged}
    assert {left.uri: left.kind for left in leftovers} == kinds
    assert main(["checkpoints", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(uri in printed for uri in damaged) and str(out / "job" / committed.name) + "\n" not in printed
    assert main(["checkpoints", str(out), "--delete", "--older-than", "0"]) == 0
    assert {str(p) for p in (out / "job").iterdir()} == {u for u, k in kinds.items() if k == "damaged"} | {
        str(out / "job" / committed.name)
    }
