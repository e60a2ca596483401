"""The Ray runner: long-lived actors, dynamic hand-out of work units, bounded retries.

* Connects to an existing cluster (``execution.ray_address``, ``RAY_ADDRESS``,
  or the cluster a ``ray job submit`` driver runs in); otherwise starts a
  local one bound to a loopback address and stops it at the end.
* Creates the actors once per job (each builds its
  :class:`~pipelines.worker.UnitEvaluator`: compiled updates, backbones) and
  keeps two units in flight per actor, handing the next unit to whichever
  actor finishes, so fast actors take more.
* An actor that dies (killed, out of memory, node lost) is replaced and its
  units go back in the queue; a unit is attempted at most
  ``execution.max_attempts`` times, then the job fails naming the unit's files.
* Storage errors that pass (connection resets, throttling) are retried inside
  the actor with back-off (:mod:`pipelines.worker`); if they persist, the unit
  goes back in the queue for another actor, counted as an attempt.
* Any other error raised in an actor, bad data, a user function or statistic
  that raises, stops the job at once: it is a function of the unit's rows and
  would fail the same way again.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError

from evaluators import lazyjax
from pipelines.errors import JobFailed, UserError, is_transient_error
from pipelines.planning import WorkUnit
from pipelines.runners import ExecutionReport, OnResult
from pipelines.spec import JobSpec
from pipelines.unit_result import UnitResult
from pipelines.worker import UnitEvaluator

IN_FLIGHT_PER_ACTOR = 2
MAX_START_FAILURES = 3
"""Replacement actors that may die in a row while starting before the job gives up."""
LOCAL_NODE_IP_ENV = "EVALPIPE_RAY_NODE_IP"
LOCAL_START_ATTEMPTS = 3
"""Tries at starting a local cluster whose node did not register in time (a heavily loaded machine)."""
GCS_PORT_WAIT_S = 120
"""Seconds a local cluster's start waits for the GCS server's port (Ray's default: 30)."""


def start_local_cluster(**kwargs: Any) -> None:
    """Start an in-process Ray cluster bound to loopback only.

    Ray rewrites 127.0.0.1 to the machine's outward address unless
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set, in which case every server
    binds to 127.0.0.1 (as on macOS). ``EVALPIPE_RAY_NODE_IP`` picks another
    address.
    """
    node_ip = loopback_only()
    # Ray waits 30 s for its GCS server to write its port; on a machine whose cores are all busy that has run out
    # (an explicit RAY_gcs_server_port_wait_time_s is kept)
    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(GCS_PORT_WAIT_S))
    for attempt in range(LOCAL_START_ATTEMPTS):
        try:
            ray.init(include_dashboard=False, _node_ip_address=node_ip, **kwargs)
            return
        except Exception as exc:
            # Ray gives a new raylet 30 s to register (not configurable); a loaded machine can take longer.
            slow = any(sign in str(exc) for sign in ("timed out during startup", "Timed out waiting for file"))
            if not slow or attempt + 1 == LOCAL_START_ATTEMPTS:
                raise
            ray.shutdown()


def loopback_only() -> str:
    """Make the Ray nodes this process starts bind loopback only; returns their node IP address
    (``127.0.0.1`` unless ``EVALPIPE_RAY_NODE_IP`` says otherwise)."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    if os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0":
        # Ray reads the variable once, when it is first imported: make a late setting count too.
        from ray._private import ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False
    return os.environ.get(LOCAL_NODE_IP_ENV, "127.0.0.1")


def connect(address: str | None) -> bool:
    """Make sure Ray is initialised. Returns True when this call started a local cluster."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as exc:
            raise UserError(
                f"cannot connect to the Ray cluster at {address!r} (execution.ray_address or RAY_ADDRESS): {exc}"
            ) from None
        return False
    start_local_cluster(**quiet)
    return True


class EvalActor:
    """Actor body: one evaluator built at construction, then many units."""

    def __init__(self, spec: JobSpec) -> None:
        lazyjax.share_gpu_memory(spec.execution.num_gpus)  # (before JAX starts: actors sharing one GPU)
        self.evaluator = UnitEvaluator(spec, ships=True)

    def ready(self, warmup: WorkUnit | None = None) -> dict[str, Any]:
        return self.evaluator.ready(warmup)

    def process(self, unit: WorkUnit) -> UnitResult:
        return self.evaluator.process(unit)


def _asked(spec: JobSpec) -> dict[str, float]:
    ex = spec.execution
    return {k: v for k, v in (("CPU", ex.num_cpus), ("GPU", ex.num_gpus)) if v > 0}


def _describe_resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in resources.items()) or "no CPUs or GPUs"


def _scalable_node_types() -> list[dict[str, float]]:
    """Resources of each node type an autoscaler may still add (from the cluster config it reports to
    Ray's GCS, as Ray Data reads it); empty for a fixed cluster."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a private API: a Ray without it is treated as a fixed cluster
        return []
    if config is None:
        return []
    return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]


def must_wait_for_resources(spec: JobSpec) -> bool:
    """Whether an actor must wait for the cluster to add a node: False when some live node has the CPUs
    and GPUs one actor asks for, True when only a node type the autoscaler may add has them.

    Raises:
        UserError: neither a node nor a node type can ever hold one actor.
    """
    asked = _asked(spec)

    def fits(resources: dict[str, float]) -> bool:
        return all(resources.get(k, 0.0) >= v for k, v in asked.items())

    nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
    if any(fits(n) for n in nodes):
        return False
    types = _scalable_node_types()
    if any(fits(t) for t in types):
        return True
    largest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    raise UserError(
        f"execution.num_cpus / execution.num_gpus: each actor asks for {_describe_resources(asked)}, but no node "
        f"of the Ray cluster has that much (the largest has {_describe_resources(_cpu_gpu(largest))}) and the "
        + (
            f"autoscaler's node types ({'; '.join(_describe_resources(_cpu_gpu(t)) for t in types)}) offer none "
            "that does"
            if types
            else "cluster cannot add nodes (no autoscaler reports node types)"
        )
        + "; lower the request or use a cluster that has such nodes."
    )


def _cpu_gpu(resources: dict[str, float]) -> dict[str, float]:
    return {k: resources.get(k, 0.0) for k in ("CPU", "GPU")}


def _actor_count(spec: JobSpec, units: int) -> tuple[int, bool]:
    """``(actors to start, whether they need more than the cluster holds now)``. ``execution.actors`` beyond what a
    cluster that cannot add nodes holds at once would wait forever for the rest: it starts as many as fit, and says
    so; an autoscaling cluster is given ``execution.resource_wait_s`` to add them."""
    ex = spec.execution
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    asked = _asked(spec)
    nodes = [_cpu_gpu(dict(n.get("Resources", {}))) for n in ray.nodes() if n.get("Alive")]
    room = sum(min((int(n[k] // v) for k, v in asked.items() if v > 0), default=units) for n in nodes)  # (per node)
    if ex.actors is None:
        wanted = (
            int(gpus // ex.num_gpus) if ex.num_gpus > 0 else int(cpus // ex.num_cpus) if ex.num_cpus > 0 else int(cpus)
        )
    elif ex.actors > room and not _scalable_node_types():
        wanted = room
        sys.stderr.write(
            f"evalpipe: execution.actors asks for {ex.actors} actors of {_describe_resources(asked)}, but the Ray "
            f"cluster holds {max(room, 1)} at once ({_describe_resources(_cpu_gpu(resources))} on {len(nodes)} "
            f"nodes) and cannot add nodes: starting {max(1, min(wanted, units))}\n"
        )
    else:
        wanted = ex.actors
    count = max(1, min(wanted, units))
    return count, count > max(room, 1)


def _start(actors: list[Any], warmup: WorkUnit | None, spec: JobSpec, wait: bool) -> float:
    """Wait until every actor is built and ready; returns the seconds spent waiting for the cluster to
    add nodes (0 when it had them). The wait for nodes is bounded by ``execution.resource_wait_s``."""
    refs = [a.ready.remote(warmup) for a in actors]
    started = time.monotonic()
    if wait:
        ex = spec.execution
        sys.stderr.write(
            f"evalpipe: waiting up to {ex.resource_wait_s:g} s (execution.resource_wait_s) for the Ray cluster to "
            f"add nodes with {_describe_resources(_asked(spec))} for each actor\n"
        )
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=ex.resource_wait_s)
        if len(ready) < len(refs):
            raise JobFailed(
                f"waited {ex.resource_wait_s:g} s (execution.resource_wait_s) for the Ray cluster to add nodes with "
                f"{_describe_resources(_asked(spec))} for each of {len(refs)} actors; {len(ready)} could start. "
                "Nothing was committed."
            )
    try:
        ray.get(refs)
    except RayTaskError as exc:
        raise _unwrap(exc) from None
    return time.monotonic() - started if wait else 0.0


def _keeping_sigterm_handler(fn: Callable[[], bool]) -> bool:
    """Call ``fn`` (which initialises Ray) and put back this process's Python SIGTERM handler, if it had
    one: Ray's core worker installs a native one that would end the driver without unwinding (so
    ``ray job stop`` could not leave a clean state)."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    handler = signal.getsignal(signal.SIGTERM)
    result = fn()
    if callable(handler):
        signal.signal(signal.SIGTERM, handler)
    return result


def _unwrap(exc: BaseException) -> BaseException:
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if cause is not None:
            return cause
    return exc


def run_ray(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None]
) -> ExecutionReport:
    t0 = time.perf_counter()
    started_here = _keeping_sigterm_handler(lambda: connect(spec.execution.ray_address))
    try:
        return _run(spec, units, on_result, on_started, t0)
    finally:
        if started_here:
            ray.shutdown()


@dataclass
class _Scheduler:
    """Which unit goes to which actor, and which unit is charged when an actor dies.

    Normal units go up to :data:`IN_FLIGHT_PER_ACTOR` at a time to each ready actor. Units that were in
    flight on an actor that died with several of them are *suspects*: none is charged; each is run again
    alone, on an actor holding nothing else, so that a death is then the unit's own. A unit is charged an
    attempt only when it alone was on the actor that died, when it ran past ``execution.unit_timeout_s``
    (the unit the actor was executing, known exactly since an actor runs its units in order), or when
    storage kept failing; a unit charged for a death or a timeout keeps running alone.
    """

    spec: JobSpec
    queue: deque[WorkUnit]
    suspects: deque[WorkUnit] = field(default_factory=deque)
    in_flight: dict[Any, tuple[Any, WorkUnit]] = field(default_factory=dict)
    alone: set[Any] = field(default_factory=set)
    """Actors running a suspect (nothing else is given to them meanwhile). Actor handles hash and compare by
    the actor's id, and a set or dict holding one keeps it alive: no key stands for two actors."""
    busy_since: dict[Any, float] = field(default_factory=dict)
    """actor -> when the unit it is executing started (set when a ready actor gets work)."""
    charges: dict[int, int] = field(default_factory=dict)
    retried: set[int] = field(default_factory=set)
    failures: list[dict[str, Any]] = field(default_factory=list)
    submitted: int = 0

    def held(self, actor: Any) -> list[tuple[Any, WorkUnit]]:
        """``(ref, unit)`` in flight on ``actor``, in the order it was given them (the order it runs them)."""
        return [(ref, unit) for ref, (holder, unit) in self.in_flight.items() if holder is actor]

    def submit(self, actor: Any, unit: WorkUnit) -> None:
        if not self.held(actor):
            self.busy_since[actor] = time.monotonic()
        self.submitted += 1
        self.in_flight[actor.process.remote(unit)] = (actor, unit)

    def fill(self, actor: Any) -> None:
        """Give a ready actor work: a suspect when it holds nothing, else normal units up to the limit."""
        if actor in self.alone:
            return
        held = len(self.held(actor))
        if held == 0 and self.suspects:
            self.alone.add(actor)
            self.submit(actor, self.suspects.popleft())
            return
        while self.queue and held < IN_FLIGHT_PER_ACTOR:
            self.submit(actor, self.queue.popleft())
            held += 1

    def finished(self, actor: Any) -> None:
        """``actor`` returned a unit: its next one, if any, starts now."""
        self.alone.discard(actor)
        self.busy_since[actor] = time.monotonic()

    def charge(self, unit: WorkUnit, worker: str, why: str, *, alone: bool) -> None:
        """Count a failed attempt against ``unit`` (and record it); give up after ``execution.max_attempts``."""
        n = self.charges[unit.index] = self.charges.get(unit.index, 0) + 1
        self.failures.append({"worker": worker, "units": [unit.index], "charged": unit.index, "why": why})
        if n >= self.spec.execution.max_attempts:
            raise JobFailed(
                f"work unit {unit.index} ({unit.describe()}) failed {n} time{'s' if n != 1 else ''} "
                f"(execution.max_attempts); "
                f"{why}. Nothing was committed."
            )
        self.retried.add(unit.index)
        if alone:
            self.suspects.appendleft(unit)
        else:
            self.queue.append(unit)

    def lost(self, actor: Any, worker: str, lost: list[WorkUnit], timed_out: bool) -> None:
        """``actor`` died (or was stopped for running over ``execution.unit_timeout_s``) holding ``lost``,
        in the order it was given them."""
        ex = self.spec.execution
        for unit in lost:
            self.retried.add(unit.index)
        if timed_out:
            executing, waiting = lost[0], lost[1:]
            self.queue.extendleft(reversed(waiting))  # never started: not charged
            why = f"it did not finish within {ex.unit_timeout_s:g} s (execution.unit_timeout_s) each time"
            self.charge(executing, worker, why, alone=True)
        elif len(lost) == 1:
            why = "its worker died each time it ran alone (killed, out of memory or its node lost)"
            self.charge(lost[0], worker, why, alone=True)
        else:
            units = sorted(lost, key=lambda u: u.index)
            self.suspects.extend(units)
            self.failures.append(
                {
                    "worker": worker,
                    "units": [u.index for u in units],
                    "charged": None,
                    "why": f"its worker died with {len(units)} units in flight; each is run again alone before "
                    "any is charged",
                }
            )


def _run(
    spec: JobSpec, units: Sequence[WorkUnit], on_result: OnResult, on_started: Callable[[], None], t0: float
) -> ExecutionReport:
    ex = spec.execution
    wait = must_wait_for_resources(spec)
    remote_cls = ray.remote(num_cpus=ex.num_cpus, num_gpus=ex.num_gpus, max_restarts=0)(EvalActor)
    count, beyond = _actor_count(spec, len(units))
    wait = wait or beyond  # (actors beyond what the cluster holds now: bounded by resource_wait_s)
    spec_ref = ray.put(spec)
    prefix = f"evalpipe:{spec.name}:{uuid.uuid4().hex[:8]}"
    names: dict[Any, str] = {}
    warmup = units[0] if units else None

    def spawn() -> Any:
        """A new actor, named ``evalpipe:<job>:<random>:<n>`` (so operators can find it in Ray's state API)."""
        name = f"{prefix}:{len(names) + 1}"
        actor = remote_cls.options(name=name).remote(spec_ref)
        names[actor] = name
        return actor

    actors = [spawn() for _ in range(count)]
    try:
        waited = _start(actors, warmup, spec, wait)
    except BaseException:
        for a in actors:
            ray.kill(a, no_restart=True)
        raise
    startup = time.perf_counter() - t0
    on_started()
    t1 = time.perf_counter()

    plan = _Scheduler(spec, deque(units))
    starting: dict[Any, tuple[Any, float]] = {}  # ready() ref of a replacement -> (actor, when it was asked for)
    timed_out: set[Any] = set()  # actors killed for a unit over execution.unit_timeout_s
    start_failures = 0
    done_units: set[int] = set()

    def replace(dead: Any) -> None:
        """A fresh actor in ``dead``'s place; it gets work once it is ready, so its start-up (imports,
        compilation) never counts as a unit's time."""
        fresh = spawn()
        actors[actors.index(dead)] = fresh
        starting[fresh.ready.remote(warmup)] = (fresh, time.monotonic())

    def stop_overdue() -> None:
        """Kill each actor whose current unit has run longer than ``execution.unit_timeout_s``; its units
        come back as a dead actor's do."""
        now = time.monotonic()
        for actor in {a for a, _ in plan.in_flight.values()}:
            if now - plan.busy_since[actor] > ex.unit_timeout_s and actor not in timed_out:
                timed_out.add(actor)
                ray.kill(actor, no_restart=True)

    def deliver(ref: Any, actor: Any, unit: WorkUnit) -> None:
        result = ray.get(ref)
        plan.finished(actor)
        if unit.index not in done_units:
            done_units.add(unit.index)
            on_result(result)

    for actor in actors:
        plan.fill(actor)
    try:
        while plan.in_flight or starting:
            poll = 1.0 if starting else None
            if ex.unit_timeout_s is not None:
                poll = min(poll or 1.0, ex.unit_timeout_s / 4)
            ready, _ = ray.wait([*plan.in_flight, *starting], num_returns=1, timeout=poll)
            if ex.unit_timeout_s is not None:
                stop_overdue()
            _check_starting(starting, start_failures, ex.resource_wait_s)
            if not ready:
                continue
            ref = ready[0]
            if ref in starting:
                actor, _ = starting.pop(ref)
                try:
                    ray.get(ref)
                except RayActorError:
                    start_failures += 1
                    replace(actor)
                    continue
                except RayTaskError as exc:
                    raise _unwrap(exc) from None
                start_failures = 0
                plan.fill(actor)
                continue
            actor, unit = plan.in_flight[ref]
            try:
                deliver(ref, actor, unit)
                del plan.in_flight[ref]
            except (RayActorError, ObjectLostError):  # the actor died, or its node with the result
                lost = _collect_lost(plan, actor, deliver)
                plan.lost(actor, names[actor], lost, actor in timed_out)
                replace(actor)
            except RayTaskError as exc:
                del plan.in_flight[ref]
                plan.finished(actor)
                cause = _unwrap(exc)
                if not is_transient_error(cause):
                    raise cause from None
                why = f"storage kept failing; last error: {type(cause).__name__}: {cause}"
                plan.charge(unit, names[actor], why, alone=False)
            for a in actors:
                if a not in timed_out and not any(a is pending for pending, _ in starting.values()):
                    plan.fill(a)
        if plan.queue or plan.suspects:
            raise RuntimeError(f"units {sorted(u.index for u in (*plan.queue, *plan.suspects))} were never handed out")
    finally:
        for a in actors:
            ray.kill(a, no_restart=True)
    resources = ray.cluster_resources()
    return ExecutionReport(
        runner="ray",
        workers=count,
        startup_seconds=startup,
        compute_seconds=time.perf_counter() - t1,
        attempts=plan.submitted,
        retried_units=tuple(sorted(plan.retried)),
        cluster={
            "CPU": resources.get("CPU", 0.0),
            "GPU": resources.get("GPU", 0.0),
            "nodes": sum(1 for n in ray.nodes() if n.get("Alive")),
            **({"waited_for_nodes_seconds": round(waited, 3)} if wait else {}),
        },
        worker_failures=tuple(plan.failures),
    )


def _collect_lost(plan: _Scheduler, actor: Any, deliver: Callable[[Any, Any, WorkUnit], None]) -> list[WorkUnit]:
    """The units ``actor`` held when it died, in the order it was given them; those it finished before
    dying are delivered instead."""
    held = plan.held(actor)
    for ref, _ in held:
        del plan.in_flight[ref]
    finished, _ = ray.wait([ref for ref, _ in held], num_returns=len(held), timeout=0)
    lost = []
    for ref, unit in held:
        if ref in finished:
            try:
                deliver(ref, actor, unit)
                continue
            except (RayActorError, ObjectLostError):
                pass
        lost.append(unit)
    plan.alone.discard(actor)
    return lost


def _check_starting(starting: dict[Any, tuple[Any, float]], failures: int, wait_s: float) -> None:
    """Give up when replacement actors keep dying as they start, or cannot be placed in time."""
    if failures > MAX_START_FAILURES:
        raise JobFailed(
            f"{failures} replacement workers in a row died while starting (imports, backbone loading); "
            "nothing was committed."
        )
    now = time.monotonic()
    for _, since in starting.values():
        if now - since > wait_s:
            raise JobFailed(
                f"a replacement worker could not be started within {wait_s:g} s (execution.resource_wait_s): the "
                "Ray cluster had no free CPUs/GPUs for it. Nothing was committed."
            )
