"""Command line: ``evalpipe run | validate | show | runs | compare | merge | report | site | export | schema`` (also
``python -m pipelines ...``).

Exit codes: 0 success, 2 user error (bad spec, data or path: one message, no
traceback), 3 a metric regressed against the baseline (``compare``, or ``run``
with ``baseline:``; the run is committed all the same), 1 internal failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from pipelines.cli_values import tolerance_option
from pipelines.errors import JobFailed, UserError
from pipelines.records import Run
from pipelines.run_text import counted, format_run, format_value, metric_rows, terminal_text, with_article, write_table
from pipelines.stopping import (
    STOP_GRACE_S,
    STOPPED_EXIT,
    StopControl,
    Stopped,
    ignore_stops_at_exit,
    keep_noting_stops,
    stop_on_sigterm,
)

if TYPE_CHECKING:
    from pipelines.spec import JobSpec


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "set": args.set or [],
        "runner": getattr(args, "runner", None),
        "output": getattr(args, "output", None),
        "beam_args": getattr(args, "beam_args", None) or [],
    }


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines import spec as spec_module
    from pipelines.environment import check_backbone_weights
    from pipelines.execute import run_job

    job = spec_module.load(args.job, _overrides(args))
    args.env = job.env
    if args.commit or args.branch:
        job = dataclasses.replace(job, commit=args.commit or job.commit, branch=args.branch or job.branch)
    args.loaded_job = job
    check_backbone_weights(job)
    try:
        with stop_on_sigterm(STOP_GRACE_S if args.process else None) as stop:
            outcome = run_job(job, show_progress=not args.quiet, stop=stop)
            args.run_outcome = outcome
            out.write(format_run(outcome.run) + "\n")
            out.write(job.redact(f"run: {outcome.uri}\n"))
            for name in outcome.run.metadata.get("empty_filters", ()):
                sys.stderr.write(job.redact(f"evalpipe: warning: {name} matched no row, so it has no point\n"))
            for key, why in outcome.run.metadata.get("undefined", {}).items():
                sys.stderr.write(job.redact(f"evalpipe: note: {key} is undefined (NaN) at overall: {why}\n"))
            baseline = outcome.run.metadata.get("baseline")
            if baseline is not None:
                if baseline.get("found") is None:
                    out.write(f"baseline: no committed run to compare with ({baseline['run']})\n")
                else:
                    out.write(f"baseline: {baseline['found']}: {len(outcome.regressions)} regressed\n")
                    for r in outcome.regressions:
                        out.write(
                            f"  REGRESSED {terminal_text(r.point_name)} {r.metric}: {r.baseline_value:.6g} -> {r.current_value:.6g}\n"
                        )
            _say_late_stop(stop, outcome.uri, job.redact)
            if outcome.window is not None and outcome.window.uri is not None:
                out.write(job.redact(f"window: {outcome.window.uri}\n"))
            elif outcome.window is not None:
                raise UserError(f"run {outcome.uri} committed, but its window run was not: {outcome.window.error}")
    except BaseException as exc:
        # Drop what the failed run's frames still hold (readers, evaluators, actor handles) now, on this
        # thread, rather than leaving it to a garbage collection during interpreter shutdown.
        traceback.clear_frames(exc.__traceback__)
        raise
    if args.process:
        keep_noting_stops(stop)  # committed and reported: a signal from here to the exit would only hide that
    args.stop = stop
    return REGRESSED if outcome.regressions else 0


def _say_late_stop(stop: StopControl, uri: str, redact: Callable[[str], str] = str) -> None:
    """One line on stderr where a SIGTERM or Ctrl-C came after the run at ``uri`` committed (it was only noted)."""
    if stop.received or stop.interrupted:
        signal_name = "SIGTERM" if stop.received else "Ctrl-C"
        sys.stderr.write(redact(f"evalpipe: {signal_name} received after run {uri} committed; the run is complete\n"))


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines import spec as spec_module
    from pipelines.environment import check_backbone_weights
    from pipelines.execute import check_dataset
    from pipelines.outputprobe import probe_output
    from pipelines.reference import load_reference

    job = spec_module.load(args.job, _overrides(args))
    args.env = job.env
    check_backbone_weights(job)
    plan = check_dataset(job)  # (the files' schemas: the role columns, and the `slices:` columns for each entry)
    load_reference(job)  # `reference:` names a committed reference run that fits the job
    probe_output(job.output, job.name)
    out.write(
        f"{args.job}: valid. {counted(len(job.metrics), 'metric')} on {with_article(job.task.kind)} task; "
        f"{counted(len(plan.files), 'file')}, {counted(plan.rows, 'row')}, {counted(len(plan.units), 'work unit')}; "
        f"columns {', '.join(f'{r}={c}' for r, c in job.data.columns.roles().items())} present with the expected types.\n"
    )
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.results import resolve_run_uri
    from pipelines.storage import read_run

    run = read_run(resolve_run_uri(args.run))
    if args.format in ("json", "csv"):
        rows = metric_rows(run, args.metric, args.point)
        if args.format == "json":
            import json

            # NaN (an undefined value) as null, as in run.json: JSON has no NaN
            rows = [(*r[:2], *(None if v is None or math.isnan(v) else v for v in r[2:])) for r in rows]
            records = [dict(zip(("point", "metric", "value", "lower", "upper"), r, strict=True)) for r in rows]
            text = json.dumps({"run_id": run.id, "commit": run.commit, "metrics": records}, allow_nan=False)
            out.write(text + "\n")
        else:
            import csv

            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(("point", "metric", "value", "lower", "upper"))
            writer.writerows(rows)
        return 0
    meta = run.metadata
    table = format_run(run, max_metrics=10_000, expand=args.all, metrics=args.metric, points=args.point)
    out.write(f"run {run.id}  job {meta.get('job', '?')}  {run.timestamp.isoformat()}  commit {run.commit or '-'}\n")
    out.write(
        f"rows {meta.get('rows', '?')}  units {meta.get('units', '?')}  runner {run.environment.get('runner', '?')}\n"
    )
    out.write(table + "\n")
    return 0


REGRESSED = 3


def _primary(run: Run) -> str:
    """``name=value`` of the run's first primary metric at the overall point (the first metric without one)."""
    overall = next((p for p in run.points if p.name == "overall"), None)
    if overall is None:
        return "-"
    keys = [k for k, d in run.metric_defs.items() if str(d.priority) == "primary" and k in overall.metrics]
    keys = keys or [k for k in overall.metrics if k != "rows"]
    return f"{keys[0]}={format_value(overall.metrics[keys[0]].value)}" if keys else "-"


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.results import concurrently, list_runs
    from pipelines.storage import read_run

    runs = list_runs(args.uri, args.job, args.since, must_exist=True)
    records = concurrently(lambda r: read_run(r.uri), runs)  # object stores: one request per run, concurrently
    rows = [("job", "run id", "time (UTC)", "rows", "commit", "primary metric", "uri")]
    for info, run in zip(runs, records, strict=True):
        started = info.timestamp.strftime("%Y-%m-%d %H:%M:%S")
        commit = (run.commit or "-")[:10]
        rows.append(
            (info.job, info.run_id, started, str(run.metadata.get("rows", "?")), commit, _primary(run), info.uri)
        )
    write_table(rows, out)
    out.write(f"{counted(len(runs), 'committed run')}\n")
    return 0


def cmd_checkpoints(args: argparse.Namespace, out: TextIO) -> int:
    import datetime as dt

    from pipelines.checkpoints import check_results_location, list_leftover_checkpoints, remove_checkpoints
    from pipelines.leftovers import list_leftovers, remove_leftover

    if not (math.isfinite(args.older_than) and args.older_than >= 0):
        raise UserError(f"--older-than {args.older_than:g}: expected a number of hours, 0 or more.")
    check_results_location(args.uri, args.job)
    try:
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.older_than)
    except OverflowError:  # (before year 1: every directory is newer)
        cutoff = dt.datetime.min.replace(tzinfo=dt.UTC)
    others = list_leftovers(args.uri, args.job)
    if others:
        rows = [("kind", "job", "files", "MB", "last written (UTC)", "uri")]
        for o in others:
            written = o.last_written.strftime("%Y-%m-%d %H:%M:%S") if o.last_written else "?"
            rows.append((o.kind, o.job, str(o.files), f"{o.bytes / 1e6:.1f}", written, o.uri))
        write_table(rows, out)
        directories = counted(len(others), "uncommitted run directory", "uncommitted run directories")
        out.write(f"{directories} and stale refuse-claims (readers ignore them; a damaged run is never deleted)\n")
    if args.delete and others:
        # a stale claim is stale by its lease; a run directory may still be being written, so it waits as long
        # as checkpoints do; a damaged run is kept (its files can be restored)
        gone = [
            o
            for o in others
            if o.kind == "claim" or (o.kind == "run" and o.last_written is not None and o.last_written < cutoff)
        ]
        for o in gone:
            remove_leftover(o)
        out.write(f"removed {len(gone)} of them\n")
    leftovers = list_leftover_checkpoints(args.uri, args.job)
    rows = [("job", "units", "MB", "last written (UTC)", "uri")]
    for c in leftovers:
        written = c.last_written.strftime("%Y-%m-%d %H:%M:%S") if c.last_written else "?"
        rows.append((c.job, str(c.units), f"{c.bytes / 1e6:.1f}", written, c.uri))
    write_table(rows, out)
    out.write(
        f"{counted(len(leftovers), 'checkpoint directory', 'checkpoint directories')} of runs that have not committed\n"
    )
    if args.delete:
        old = [c for c in leftovers if c.last_written is not None and c.last_written < cutoff]
        for c in old:
            remove_checkpoints(c)
        out.write(f"removed {len(old)} last written more than {args.older_than:g} h ago\n")
    return 0


def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.results import check_shared_metrics, compare_all, load_run, resolve_run_uri
    from pipelines.run_text import not_compared, write_comparisons

    tolerance = tolerance_option(args.tolerance)
    if not (math.isfinite(args.alpha) and 0 < args.alpha < 1):
        raise UserError(
            f"--alpha {args.alpha:g}: expected a significance level between 0 and 1 (exclusive), e.g. 0.05."
        )
    baseline, current = load_run(resolve_run_uri(args.baseline)), load_run(resolve_run_uri(args.current))
    comparisons = compare_all(
        baseline,
        current,
        tolerance,
        metrics=args.metric,
        points=args.point,
        alpha=args.alpha,
        force=args.force,
    )
    notes = not_compared(baseline, current, args.metric, args.point)
    if not comparisons:
        check_shared_metrics(baseline, current)  # never "0 metrics compared" for runs with no metric in common
        chosen = " ".join([*(f"--metric {m}" for m in args.metric or ()), *(f"--point {p}" for p in args.point or ())])
        raise UserError(
            f"no value to compare{f' with {chosen}' if chosen else ''}: "
            + (
                "; ".join(notes)
                or "every chosen metric is undefined (NaN) in both runs, or not ranked (direction info)"
            )
            + "."
        )
    write_comparisons(comparisons, notes, args.all, out)
    return REGRESSED if any(c.regressed for c in comparisons) else 0


def cmd_submit(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.submit import submit

    run_args = [f"--set={item}" for item in args.set or []]
    run_args += [f"--output={args.output}"] if args.output else []
    return submit(
        args.address,
        args.job,
        run_args,
        working_dir=None if args.no_working_dir else args.working_dir,
        submission_id=args.submission_id,
        timeout_s=args.timeout,
        out=out,
    )


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.report import write_report
    from pipelines.results import resolve_run_uri

    args.run = resolve_run_uri(args.run)
    baseline, tolerance = args.baseline, 0.0
    if baseline is None:  # (the run's own gate: its baseline, judged with the gate's tolerance)
        from pipelines.storage import read_run

        gate = read_run(args.run).metadata.get("baseline") or {}
        tolerance = gate.get("tolerance", 0) if gate.get("found") else 0
        baseline = f"{args.run.rstrip('/').rsplit('/', 1)[0]}/{gate['found']}" if gate.get("found") else None
    write_report(args.run, args.output, baseline, tolerance=tolerance, force=args.force)
    out.write(f"report: {args.output}\n")
    return 0


def cmd_merge(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.merge import merge_runs

    with stop_on_sigterm(STOP_GRACE_S if args.process else None) as stop:
        outcome = merge_runs(args.runs, args.name, output=args.output, allow_overlap=args.allow_overlap, stop=stop)
        out.write(format_run(outcome.run) + "\n")
        out.write(f"merged {len(outcome.run.metadata['merged_from'])} runs: {outcome.uri}\n")
        _say_late_stop(stop, outcome.uri)
    if args.process:
        keep_noting_stops(stop)
    args.stop = stop
    return 0


def cmd_site(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.site import build_site

    built = build_site(args.results, args.output, job=args.job, since=args.since, reports=not args.no_reports)
    how = "rebuilt" if built.rebuilt else "updated"
    out.write(f"site: {args.output.rstrip('/')}/index.html ({how}: {built.new_runs} new runs)\n")
    return 0


def cmd_export(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.export_mlflow import export_run

    done = export_run(args.run, args.tracking_uri)
    state = "already in" if done.existed else "exported to"
    out.write(f"{args.run}: {state} MLflow run {done.mlflow_run_id} (experiment {done.experiment!r})\n")
    return 0


def cmd_schema(args: argparse.Namespace, out: TextIO) -> int:
    import json

    from pipelines.schema import job_schema

    out.write(json.dumps(job_schema(), indent=2) + "\n")
    return 0


class _ShowVersion(argparse.Action):
    """``--version``: prints ``evalpipe {version}`` and exits; the installed version is looked up only then
    (reading package metadata is not free, and every other command goes without it)."""

    def __init__(self, option_strings: list[str], dest: str) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from pipelines import __version__

        print(f"evalpipe {__version__}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalpipe", description="Distributed batch evaluation of ML predictions.")
    parser.add_argument("--version", action=_ShowVersion)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate a job and commit the run")
    run.add_argument("job", help="job spec (YAML), a path or fsspec URL")
    run.add_argument(
        "--runner",
        choices=("local", "ray", "beam"),
        help="override execution.runner; with beam, Beam pipeline flags may follow `--` (e.g. -- --project=p)",
    )
    run.add_argument("--output", help="override output.uri")
    run.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key, e.g. execution.actors=4")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--commit", help="the code's commit to record (default: EVALPIPE_COMMIT, else git HEAD)")
    run.add_argument("--branch", help="the code's branch to record (default: EVALPIPE_BRANCH, else git's)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check the spec and the dataset schema without computing")
    validate.add_argument("job", help="job spec (YAML), a path or fsspec URL")
    validate.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key, as for run")
    validate.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="print a committed run")
    show.add_argument("run", help="run URI: {output}/{job}/{run id}, or {output}/{job}/latest")
    show.add_argument("--metric", action="append", help="only this metric (key or base name; repeatable)")
    show.add_argument("--point", action="append", help="only this point, e.g. overall (repeatable)")
    show.add_argument("--format", choices=("text", "json", "csv"), default="text", help="output format")
    show.add_argument("--all", action="store_true", help="list every entry of vector metrics (text format)")
    show.set_defaults(func=cmd_show)

    runs = sub.add_parser("runs", help="list the committed runs under a results URI")
    runs.add_argument("uri", help="the jobs' output.uri (any fsspec URL)")
    runs.add_argument("--job", help="only this job")
    runs.add_argument("--since", help="only runs started at or after this ISO date/time (UTC)")
    runs.set_defaults(func=cmd_runs)

    checkpoints = sub.add_parser(
        "checkpoints", help="list (and with --delete remove) the unit checkpoints of runs that never committed"
    )
    checkpoints.add_argument("uri", help="the jobs' output.uri (any fsspec URL)")
    checkpoints.add_argument("--job", help="only this job")
    checkpoints.add_argument("--delete", action="store_true", help="remove those last written before --older-than")
    checkpoints.add_argument(
        "--older-than",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="with --delete: only directories whose newest checkpoint is older than this (default 24, so that a "
        "run in progress keeps its own)",
    )
    checkpoints.set_defaults(func=cmd_checkpoints)

    compare = sub.add_parser("compare", help="compare two runs; exit 3 when a metric regressed (for gating)")
    compare.add_argument("baseline", help="baseline run URI")
    compare.add_argument("current", help="current run URI")
    compare.add_argument(
        "--tolerance", help="absolute tolerance: 0.01, or roc_auc=0.005,*=0.01 (default 0: any worsening regresses)"
    )
    compare.add_argument("--metric", action="append", help="only this metric (repeatable)")
    compare.add_argument("--point", action="append", help="only this point, e.g. overall (repeatable)")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level when runs have samples")
    compare.add_argument("--all", action="store_true", help="list every compared metric, not only regressions")
    compare.add_argument("--force", action="store_true", help="compare runs of different jobs")
    compare.set_defaults(func=cmd_compare)

    submit = sub.add_parser(
        "submit",
        help="run a job on a Ray cluster (Jobs API) with this checkout's commit; exits with the run's exit code",
    )
    submit.add_argument("job", help="job spec (YAML), relative to the working directory")
    submit.add_argument("--address", required=True, help="the cluster's dashboard URL, e.g. http://head:8265")
    submit.add_argument("--working-dir", default=".", help="directory shipped to the cluster (default: .)")
    submit.add_argument("--no-working-dir", action="store_true", help="ship nothing: evalpipe is in the image")
    submit.add_argument("--submission-id", help="default: Ray's")
    submit.add_argument("--set", action="append", metavar="KEY=VALUE", help="passed to evalpipe run")
    submit.add_argument("--output", help="passed to evalpipe run")
    submit.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this long")
    submit.set_defaults(func=cmd_submit)

    merge = sub.add_parser("merge", help="commit a run merged from committed runs' statistics (no data read)")
    merge.add_argument("runs", nargs="+", metavar="RUN_URI", help="runs to merge ({output}/{job}/{run id} or latest)")
    merge.add_argument("--name", required=True, help="job name of the merged run")
    merge.add_argument("--output", help="results location to write to (default: the newest run's)")
    merge.add_argument("--allow-overlap", action="store_true", help="merge runs that read the same input file")
    merge.set_defaults(func=cmd_merge)

    report = sub.add_parser("report", help="write one self-contained HTML page for a run")
    report.add_argument("run", help="run URI")
    report.add_argument("-o", "--output", required=True, help="HTML file (any fsspec URL)")
    report.add_argument("--baseline", help="baseline run URI (default: the run's own baseline, if it had one)")
    report.add_argument("--force", action="store_true", help="compare with a baseline run of another job")
    report.set_defaults(func=cmd_report)

    site = sub.add_parser("site", help="write or update a static results site (HTML) over every committed run")
    site.add_argument("results", help="the jobs' output.uri (any fsspec URL)")
    site.add_argument("-o", "--output", required=True, help="the site's directory (any fsspec URL)")
    site.add_argument("--job", help="only add runs of this job")
    site.add_argument("--since", help="only runs started at or after this ISO date/time (UTC)")
    site.add_argument("--no-reports", action="store_true", help="no per-run report pages")
    site.set_defaults(func=cmd_site)

    export = sub.add_parser("export", help="copy a committed run into MLflow (params, metrics with intervals, report)")
    export.add_argument("run", help="run URI: {output}/{job}/{run id}, or {output}/{job}/latest")
    export.add_argument("--to", choices=("mlflow",), required=True, help="the tracking system")
    export.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's, MLFLOW_TRACKING_URI)")
    export.set_defaults(func=cmd_export)

    schema = sub.add_parser("schema", help="print the JSON Schema (draft 2020-12) of the job spec, for editors and CI")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:  # what follows is for Apache Beam: ``run job.yaml --runner beam -- --runner=DataflowRunner``
        argv, beam_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(argv)
    if beam_args and args.command not in ("run", "validate"):
        parser.error("arguments after `--` are Apache Beam pipeline options, taken by `run` and `validate` only")
    args.beam_args = beam_args
    args.process = process  # the whole process (``evalpipe``, ``python -m pipelines``): may end it on SIGTERM
    if process and args.command in ("run", "merge"):
        from pipelines.host_memory import keep_freed_memory

        keep_freed_memory()  # before pyarrow or XLA start a thread: every thread then allocates from the main heap
    from pipelines.storage_budget import bound_storage_calls

    bound_storage_calls()
    args.env = {}  # the job's resolved ${env:...} values, once it is loaded: never printed
    code, error = _dispatch(args)
    if args.command == "run":
        _report_outcome(args, code, error)
    if process and getattr(args, "stop", None) is not None:
        ignore_stops_at_exit(args.stop)
    return code


def _say(args: argparse.Namespace, text: str) -> str:
    """Write ``text`` to stderr with the job's resolved ``${env:...}`` values put back as placeholders; returns
    what was written."""
    from pipelines.templating import redact

    text = redact(text, getattr(args, "env", {}))
    sys.stderr.write(text)
    return text


def _dispatch(args: argparse.Namespace) -> tuple[int, str | None]:
    """Run the command: its exit code, and the one-paragraph error it printed (None on success)."""
    try:
        return args.func(args, sys.stdout), None
    except UserError as exc:  # (one line: a slice value's newline is written as an escape)
        return 2, _say(args, f"evalpipe: error: {terminal_text(str(exc))}\n").removeprefix("evalpipe: error: ").strip()
    except JobFailed as exc:
        return exc.exit_code, _say(args, f"evalpipe: job failed: {exc}\n").removeprefix(
            "evalpipe: job failed: "
        ).strip()
    except BrokenPipeError:  # the reader stopped reading (`| head`): the rest of the output is not wanted
        _drop_stdout()
        return 0, None
    except KeyboardInterrupt as exc:
        how = "stopped (SIGTERM)" if isinstance(exc, Stopped) else "interrupted"
        kept = " (finished work units are kept for a rerun)" if args.command == "run" else ""
        sys.stderr.write(f"evalpipe: {how}; nothing was committed{kept}\n")
        return (STOPPED_EXIT if isinstance(exc, Stopped) else 130), how
    except Exception as exc:
        from pipelines.environment import describe, unreachable
        from pipelines.functions import user_code_error

        job = getattr(args, "loaded_job", None)
        # credentials, permissions, paths and the job's own code: the user's to fix (2); storage that did not answer (1)
        for code, message in ((2, describe(exc)), (1, unreachable(exc)), (2, user_code_error(job, exc))):
            if message is not None:
                return code, _say(args, f"evalpipe: error: {terminal_text(message)}\n")[
                    len("evalpipe: error: ") :
                ].strip()
        _say(args, "evalpipe: internal error (please report it with the traceback below)\n" + traceback.format_exc())
        return 1, f"internal error: {type(exc).__name__}"


def _report_outcome(args: argparse.Namespace, code: int, error: str | None) -> None:
    """Write the run's outcome next to its output (when the spec was read) and print it as the last line."""
    from pipelines.outcome import Outcome, log_line, outcome_id, write_outcome

    job = getattr(args, "loaded_job", None)
    done = getattr(args, "run_outcome", None)
    outcome = Outcome(
        exit_code=code,
        job=job.name if job is not None else None,
        run_id=done.run.id if done is not None else (outcome_id() if job is not None else None),
        run_uri=job.redact(done.uri) if done is not None and job is not None else None,
        regressions=tuple(r.to_dict() for r in done.regressions) if done is not None else (),
        error=error,
    )
    if job is not None:
        write_outcome(job.output.uri, job.output.storage_options, outcome)
        if job.site is not None and done is not None:
            _regenerate_site(args, job)
    sys.stderr.flush()
    try:
        sys.stdout.write(log_line(outcome) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:  # (`evalpipe run ... | head -1`: the outcome is written beside the output; the code stands)
        _drop_stdout()


def _drop_stdout() -> None:
    """Send what is left of stdout to the null device, once its reader has stopped reading (so that the
    interpreter's own flush at exit does not fail again)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _regenerate_site(args: argparse.Namespace, job: JobSpec) -> None:
    """Update the job's results site after a committed run (and its window run's job); a failure is reported and
    changes no exit code."""
    from pipelines.site import build_site

    done = args.run_outcome
    window = job.window.name if job.window is not None and done.window is not None and done.window.uri else None
    try:
        assert job.site is not None
        for name in (job.name, *([window] if window else [])):  # (the window's run: a job of its own)
            built = build_site(job.output.uri, job.site, job=name, storage_options=job.output.storage_options)
        sys.stdout.write(job.redact(f"site: {built.site.rstrip('/')}/index.html\n"))
    except Exception as exc:  # the run is committed: the site can be regenerated later with evalpipe site
        _say(args, f"evalpipe: the site was not regenerated ({type(exc).__name__}: {exc}); the run is committed.\n")


if __name__ == "__main__":
    sys.exit(main())
