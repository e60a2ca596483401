"""Command line: ``evalpipe run | validate | show | runs | compare | report`` (also ``python -m pipelines ...``).

Exit codes: 0 success, 2 user error (bad spec, data or path: one message, no
traceback), 3 a metric regressed against the baseline (``compare``, or ``run``
with ``baseline:``; the run is committed all the same), 1 internal failure.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from typing import TextIO

from pipelines.errors import JobFailed, UserError
from pipelines.records import Run


def _format_value(value: float | None) -> str:
    if value is None:
        return ""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.6g}"
    return f"{value:.6f}".rstrip("0").rstrip(".")


def format_run(run: Run, max_metrics: int = 200) -> str:
    """A plain text table: point, metric, value, interval."""
    rows = [("point", "metric", "value", "interval")]
    shown = 0
    hidden = 0
    for point in run.points:
        for name, metric in point.metrics.items():
            if shown >= max_metrics:
                hidden += 1
                continue
            interval = ""
            if metric.lower is not None and metric.upper is not None:
                interval = f"[{_format_value(metric.lower)}, {_format_value(metric.upper)}]"
            rows.append((point.name, name, _format_value(metric.value), interval))
            shown += 1
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if hidden:
        lines.append(f"... {hidden} more values (per-class and matrix entries) in metrics.parquet")
    return "\n".join(lines)


def _overrides(args: argparse.Namespace) -> dict:
    return {
        "set": args.set or [],
        "runner": getattr(args, "runner", None),
        "output": getattr(args, "output", None),
        "beam_args": getattr(args, "beam_args", None) or [],
    }


class Stopped(KeyboardInterrupt):
    """SIGTERM (``ray job stop``, a scheduler's kill): unwinds the job like Ctrl-C, so that nothing is
    committed, uploads in flight are closed or removed, and finished units stay as checkpoints."""


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises :class:`Stopped` in the main thread. Some libraries turn an exception raised by a
    signal handler into their own ``KeyboardInterrupt``: one that unwinds out of the block after a
    SIGTERM is re-raised as :class:`Stopped`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except KeyboardInterrupt as exc:
        if received and not isinstance(exc, Stopped):
            raise Stopped() from None
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines import spec as spec_module
    from pipelines.execute import run_job

    job = spec_module.load(args.job, _overrides(args))
    try:
        with _stop_on_sigterm():
            outcome = run_job(job, show_progress=not args.quiet)
    except BaseException as exc:
        # Drop what the failed run's frames still hold (readers, evaluators, actor handles) now, on this
        # thread, rather than leaving it to a garbage collection during interpreter shutdown.
        traceback.clear_frames(exc.__traceback__)
        raise
    out.write(format_run(outcome.run) + "\n")
    out.write(f"run: {outcome.uri}\n")
    baseline = outcome.run.metadata.get("baseline")
    if baseline is not None:
        if baseline.get("found") is None:
            out.write(f"baseline: no committed run to compare with ({baseline['run']})\n")
        else:
            out.write(f"baseline: {baseline['found']}: {len(outcome.regressions)} regressed\n")
            for r in outcome.regressions:
                out.write(f"  REGRESSED {r.point_name} {r.metric}: {r.baseline_value:.6g} -> {r.current_value:.6g}\n")
    return REGRESSED if outcome.regressions else 0


def cmd_validate(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines import spec as spec_module
    from pipelines.execute import check_dataset

    job = spec_module.load(args.job, _overrides(args))
    plan = check_dataset(job)
    out.write(
        f"{args.job}: valid. {len(job.metrics)} metrics on a {job.task.kind} task; "
        f"{len(plan.files)} files, {plan.rows} rows, {len(plan.units)} work units; "
        f"columns {', '.join(f'{r}={c}' for r, c in job.data.columns.roles().items())} present with the expected types.\n"
    )
    return 0


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.storage import read_run

    run = read_run(args.run)
    meta = run.metadata
    out.write(f"run {run.id}  job {meta.get('job', '?')}  {run.timestamp.isoformat()}  commit {run.commit or '-'}\n")
    out.write(
        f"rows {meta.get('rows', '?')}  units {meta.get('units', '?')}  runner {run.environment.get('runner', '?')}\n"
    )
    out.write(format_run(run, max_metrics=10_000) + "\n")
    return 0


REGRESSED = 3


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.results import list_runs

    runs = list_runs(args.uri, args.job, args.since)
    rows = [("job", "run id", "started (UTC)", "files", "uri")]
    rows += [(r.job, r.run_id, r.timestamp.strftime("%Y-%m-%d %H:%M:%S"), str(len(r.files)), r.uri) for r in runs]
    _table(rows, out)
    out.write(f"{len(runs)} committed runs\n")
    return 0


def cmd_checkpoints(args: argparse.Namespace, out: TextIO) -> int:
    import datetime as dt

    from pipelines.checkpoints import list_leftover_checkpoints, remove_checkpoints

    if args.older_than < 0:
        raise UserError(f"--older-than {args.older_than:g}: expected a number of hours, 0 or more.")
    leftovers = list_leftover_checkpoints(args.uri, args.job)
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=args.older_than)
    rows = [("job", "units", "MB", "last written (UTC)", "uri")]
    for c in leftovers:
        written = c.last_written.strftime("%Y-%m-%d %H:%M:%S") if c.last_written else "?"
        rows.append((c.job, str(c.units), f"{c.bytes / 1e6:.1f}", written, c.uri))
    _table(rows, out)
    out.write(f"{len(leftovers)} checkpoint directories of runs that have not committed\n")
    if args.delete:
        old = [c for c in leftovers if c.last_written is not None and c.last_written < cutoff]
        for c in old:
            remove_checkpoints(c)
        out.write(f"removed {len(old)} last written more than {args.older_than:g} h ago\n")
    return 0


def _table(rows: list[tuple[str, ...]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
        if i == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def _tolerance(text: str | None) -> float | dict[str, float]:
    """``0.01`` or ``roc_auc=0.005,accuracy=0.01,*=0.02``."""
    if not text:
        return 0.0
    try:
        if "=" not in text:
            return float(text)
        return {k.strip(): float(v) for k, v in (item.split("=", 1) for item in text.split(","))}
    except ValueError:
        raise UserError(
            f"--tolerance {text!r}: expected a number or NAME=NUMBER pairs separated by commas, e.g. roc_auc=0.005,*=0.01."
        ) from None


def cmd_compare(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.results import compare_all

    comparisons = compare_all(
        args.baseline,
        args.current,
        _tolerance(args.tolerance),
        metrics=args.metric,
        points=args.point,
        alpha=args.alpha,
    )
    rows = [("point", "metric", "baseline", "current", "worse by", "p", "")]
    for c in comparisons:
        if not (args.all or c.regressed):
            continue
        p = "" if c.significance is None else f"{c.significance.p_value:.3g}"
        rows.append(
            (
                c.point,
                c.metric,
                _format_value(c.baseline),
                _format_value(c.current),
                f"{c.worse_by:.3g}",
                p,
                "REGRESSED" if c.regressed else "",
            )
        )
    regressed = sum(c.regressed for c in comparisons)
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    out.write(f"{len(comparisons)} metrics compared, {regressed} regressed\n")
    return REGRESSED if regressed else 0


def cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from pipelines.report import write_report

    baseline = args.baseline
    if baseline is None:
        from pipelines.storage import read_run

        found = read_run(args.run).metadata.get("baseline") or {}
        if found.get("found"):
            baseline = f"{args.run.rstrip('/').rsplit('/', 1)[0]}/{found['found']}"
    write_report(args.run, args.output, baseline)
    out.write(f"report: {args.output}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evalpipe", description="Distributed batch evaluation of ML predictions.")
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
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check the spec and the dataset schema without computing")
    validate.add_argument("job")
    validate.add_argument("--set", action="append", metavar="KEY=VALUE")
    validate.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="print a committed run")
    show.add_argument("run", help="run URI: {output}/{job}/{run id}")
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
    compare.add_argument("--tolerance", help="absolute tolerance: 0.01, or roc_auc=0.005,*=0.01")
    compare.add_argument("--metric", action="append", help="only this metric (repeatable)")
    compare.add_argument("--point", action="append", help="only this point, e.g. overall (repeatable)")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance level when runs have samples")
    compare.add_argument("--all", action="store_true", help="list every compared metric, not only regressions")
    compare.set_defaults(func=cmd_compare)

    report = sub.add_parser("report", help="write one self-contained HTML page for a run")
    report.add_argument("run", help="run URI")
    report.add_argument("-o", "--output", required=True, help="HTML file (any fsspec URL)")
    report.add_argument("--baseline", help="baseline run URI (default: the run's own baseline, if it had one)")
    report.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    beam_args: list[str] = []
    if "--" in argv:  # what follows is for Apache Beam: ``run job.yaml --runner beam -- --runner=DataflowRunner``
        argv, beam_args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    args = parser.parse_args(argv)
    if beam_args and args.command not in ("run", "validate"):
        parser.error("arguments after `--` are Apache Beam pipeline options, taken by `run` and `validate` only")
    args.beam_args = beam_args
    try:
        return args.func(args, sys.stdout)
    except UserError as exc:
        sys.stderr.write(f"evalpipe: error: {exc}\n")
        return 2
    except JobFailed as exc:
        sys.stderr.write(f"evalpipe: job failed: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        how = "stopped (SIGTERM)" if isinstance(exc, Stopped) else "interrupted"
        sys.stderr.write(f"evalpipe: {how}; nothing was committed (finished work units are kept for a rerun)\n")
        return 143 if isinstance(exc, Stopped) else 130
    except Exception:
        sys.stderr.write("evalpipe: internal error (please report it with the traceback below)\n")
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
