"""Several Ray nodes (``ray.cluster_utils.Cluster``: one raylet per node, all on loopback, each with its own
resources): a worker node lost mid-run, a cluster that must add a node before actors can start, and a request
no node can ever satisfy.

The head node has no CPUs, so every actor runs on a worker node and the driver's node stays up; the driver
writes the run. An autoscaler announces what it may add by reporting its node types to Ray's GCS; the tests
report such a configuration themselves and add the node as the autoscaler would."""

from __future__ import annotations

import os
import threading
import time

import pytest

from pipelines import spec as spec_module
from pipelines.errors import JobFailed, UserError
from pipelines.execute import run_job
from pipelines.results import list_runs
from pipelines.synthetic import write_shards
from tests.conftest import add_file_column, text_function_job, write_job

pytestmark = [pytest.mark.ray, pytest.mark.slow]

FAST_NODE_FAILURE = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 4,
}


@pytest.fixture(scope="module")
def cluster():
    """A head node without CPUs and two worker nodes with 2 CPUs each; the driver connected to it. Any
    single-node cluster of the session is stopped first and started again afterwards."""
    import ray
    from ray.cluster_utils import Cluster

    from pipelines.runners.ray import loopback_only, start_local_cluster

    restart = ray.is_initialized()
    ray.shutdown()
    ip = loopback_only()
    nodes = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "node_ip_address": ip,
            "include_dashboard": False,
            "_system_config": FAST_NODE_FAILURE,
        },
    )
    try:
        for _ in range(2):
            nodes.add_node(num_cpus=2, node_ip_address=ip)
        nodes.wait_for_nodes()
        ray.init(address=nodes.address, _node_ip_address=ip, logging_level="WARNING", log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()
        if restart:
            start_local_cluster(num_cpus=2, log_to_driver=False, logging_level="WARNING")


def _text_job(tmp_path, name, function, marker, **execution):
    data = tmp_path / "data"
    if not data.exists():
        paths = write_shards(str(data), "text", 600, 3, seed=4, row_group_rows=100)
        add_file_column(paths, "marker", [str(marker)] * 3)
    execution = {"runner": "ray", "actors": 2, "unit_rows": 100, "checkpoints": False, **execution}
    spec = text_function_job(name, str(data), {"uri": str(tmp_path / "out")}, execution, function, "marker")
    return spec_module.load(str(write_job(tmp_path / f"{name}.yaml", spec)))


def _values(run):
    return {k: m.value for k, m in run.point("overall").metrics.items()}


def _wait_for(predicate, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.1)


def test_a_worker_node_lost_mid_run_has_its_units_rerun_on_another_node(tmp_path, cluster):
    marker = tmp_path / "marker"
    marker.mkdir()
    started = marker / "started"
    spec = _text_job(tmp_path, "node-lost", "stall_once_on_node", marker)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(run=run_job(spec, show_progress=False).run))
    thread.start()
    _wait_for(lambda: started.exists() and started.read_text(), "a unit starting")
    (node,) = [n for n in cluster.worker_nodes if n.node_id == started.read_text()]
    cluster.remove_node(node, allow_graceful=False)
    thread.join(timeout=240)
    assert not thread.is_alive(), "the job hung after a node was lost"
    lost = outcome["run"]
    assert lost.environment["cluster"]["nodes"] == 2  # the head and the worker node left
    assert lost.metadata["worker_failures"] and lost.metadata["retried_units"]
    (info,) = list_runs(str(tmp_path / "out"), "node-lost")  # committed by the driver, on the head node
    assert info.run_id == lost.id
    clean = run_job(_text_job(tmp_path, "clean", "stall_once_on_node", marker), show_progress=False).run
    assert _values(lost) == _values(clean) and _values(lost)["stall_once_on_node.words.count"] == 600
    cluster.add_node(num_cpus=2, node_ip_address=node.node_ip_address)  # back to two worker nodes
    cluster.wait_for_nodes()


@pytest.fixture
def scalable(cluster):
    """Report to the GCS, as an autoscaler does, a node type with 1 CPU and 1 GPU that may be added once."""
    import ray
    from ray.core.generated import autoscaler_pb2
    from ray.experimental.internal_kv import _internal_kv_del, _internal_kv_put

    config = autoscaler_pb2.ClusterConfig()
    group = config.node_group_configs.add()
    group.name = "gpu-worker"
    group.resources["CPU"] = 1
    group.resources["GPU"] = 1
    group.min_count, group.max_count = 0, 1
    key = ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY.encode()
    namespace = ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE.encode()
    _internal_kv_put(key, config.SerializeToString(), namespace=namespace)
    added = []
    yield lambda: added.append(cluster.add_node(num_cpus=1, num_gpus=1, node_ip_address="127.0.0.1"))
    _internal_kv_del(key, namespace=namespace)
    for node in added:
        cluster.remove_node(node)


def test_actors_asking_for_gpus_wait_for_an_autoscaling_cluster_to_add_them(tmp_path, cluster, scalable, capsys):
    marker = tmp_path / "marker"
    marker.mkdir()
    (marker / "started").write_text("no stall")
    spec = _text_job(tmp_path, "scaled", "stall_once", marker, actors=1, num_cpus=1, num_gpus=1)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(run=run_job(spec, show_progress=False).run))
    thread.start()
    said = []
    _wait_for(lambda: said.append(capsys.readouterr().err) or "waiting up to 600 s" in "".join(said), "the wait")
    assert "add nodes with 1 CPU, 1 GPU for each actor" in "".join(said)
    scalable()  # the autoscaler adds the node
    thread.join(timeout=240)
    assert not thread.is_alive(), "the job did not start once the node was added"
    run = outcome["run"]
    assert run.environment["cluster"]["GPU"] == 1 and run.environment["cluster"]["waited_for_nodes_seconds"] > 0
    assert _values(run)["stall_once.words.count"] == 600


def test_a_wait_for_nodes_that_never_come_ends_after_resource_wait_s(tmp_path, cluster, scalable):
    spec = _text_job(tmp_path, "never", "stall_once", tmp_path, num_gpus=1, resource_wait_s=3)
    started = time.monotonic()
    with pytest.raises(JobFailed) as caught:
        run_job(spec, show_progress=False)
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "waited 3 s (execution.resource_wait_s)" in message and "1 CPU, 1 GPU" in message, message
    assert not list_runs(str(tmp_path / "out"))


@pytest.mark.parametrize(
    ("execution", "scaling", "expected"),
    [
        ({"num_gpus": 1}, False, "the cluster cannot add nodes (no autoscaler reports node types)"),
        ({"num_cpus": 3}, False, "the largest has 2 CPU, 0 GPU"),
        ({"num_gpus": 2}, True, "the autoscaler's node types (1 CPU, 1 GPU) offer none that does"),
    ],
    ids=["gpus-on-a-fixed-cluster", "cpus-beyond-any-node", "gpus-beyond-any-node-type"],
)
def test_a_request_no_node_can_ever_hold_is_refused_at_once(tmp_path, request, cluster, execution, scaling, expected):
    if scaling:
        request.getfixturevalue("scalable")
    spec = _text_job(tmp_path, "refused", "stall_once", tmp_path, **execution)
    started = time.monotonic()
    with pytest.raises(UserError) as caught:
        run_job(spec, show_progress=False)
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert message.startswith("execution.num_cpus / execution.num_gpus: each actor asks for") and expected in message
    assert not list_runs(str(tmp_path / "out"))


def test_the_cluster_is_several_loopback_nodes(cluster):
    import ray

    alive = [n for n in ray.nodes() if n["Alive"]]
    assert len(alive) >= 3 and {n["NodeManagerAddress"] for n in alive} == {"127.0.0.1"}
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
