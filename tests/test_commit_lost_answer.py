"""A commit whose answer is lost on the way back: S3's conditional PUT of ``_COMMITTED`` reaches the server, the client
never hears back, times out and tries again, and the retry is refused (412: the object exists, written by the first
try). That run is committed: ``evalpipe run`` reports it so (exit 0, the run listed, its checkpoints removed), where it
said "Nothing was committed" (exit 1) about a run every reader lists. A real S3 endpoint (moto) behind a loopback TCP
proxy that drops the server's answer to the first PUT of a ``_COMMITTED``."""

from __future__ import annotations

import contextlib
import socket
import threading

from pipelines.cli import main as cli_main
from pipelines.results import list_runs
from tests.conftest import write_job
from tests.test_object_storage import _spec, s3  # noqa: F401  (the module's S3 endpoint fixture)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class AnswerDroppingProxy:
    """Forwards loopback TCP connections to ``upstream``; on the first connection that sends a PUT of a path holding
    ``marker``, every answer from the server but one ``100 Continue`` is dropped (the request itself goes through)."""

    def __init__(self, upstream: int, marker: bytes) -> None:
        self.upstream, self.marker = upstream, marker
        self.dropped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            self.sockets += [client, upstream]
            state = {"drop": False, "continued": False}
            threading.Thread(target=self._up, args=(client, upstream, state), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client, state), daemon=True).start()

    def _up(self, client: socket.socket, upstream: socket.socket, state: dict) -> None:
        while data := _recv(client):
            if data.startswith(b"PUT ") and self.marker in data.split(b"\r\n", 1)[0] and not self.dropped.is_set():
                self.dropped.set()
                state["drop"] = True
            upstream.sendall(data)
        upstream.close()

    def _down(self, upstream: socket.socket, client: socket.socket, state: dict) -> None:
        while data := _recv(upstream):
            if not state["drop"]:
                client.sendall(data)
            elif data.startswith(CONTINUE) and not state["continued"]:
                # the client sends the body only after it. Only one, as S3 sends: moto's server (werkzeug) sends two,
                # and aiohttp stops its read timeout at each interim answer, so a second one arriving after the body
                # left the client waiting on the dropped answer for good (the test took minutes, or never ended)
                state["continued"] = True
                client.sendall(CONTINUE)
        client.close()

    def close(self) -> None:
        """Stop listening and close every connection: the server's handlers of them then end (a threaded server
        waits for its handlers when it stops)."""
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(1 << 16)
    except OSError:
        return b""


def test_a_commit_whose_answer_was_lost_is_reported_committed(tmp_path, s3, capsys):  # noqa: F811
    proxy = AnswerDroppingProxy(int(s3["endpoint"].rsplit(":", 1)[1]), b"_COMMITTED")
    try:
        spec = _spec(tmp_path, s3, name="lost-answer")
        spec["output"]["storage_options"] = {
            "endpoint_url": f"http://127.0.0.1:{proxy.port}",
            # evalpipe's own bounds (pipelines.storage_budget), given explicitly: the client gives up on the lost
            # answer within seconds whichever test of this process made an S3 filesystem first
            "config_kwargs": {
                "connect_timeout": 5,
                "read_timeout": 10,
                "retries": {"max_attempts": 1, "mode": "standard"},
            },
        }
        job = write_job(tmp_path / "job.yaml", spec)
        code = cli_main(["run", str(job), "--quiet"])
        err = capsys.readouterr().err
    finally:
        proxy.close()
    assert proxy.dropped.is_set()  # (the answer to the manifest's PUT was lost)
    assert code == 0 and "Nothing was committed" not in err, err
    (run,) = list_runs("s3://results/evals", job="lost-answer", storage_options={"endpoint_url": s3["endpoint"]})
    assert not s3["fs"].exists("results/evals/lost-answer/_checkpoints") or not s3["fs"].ls(
        "results/evals/lost-answer/_checkpoints"
    )
    assert run.files and "run.json" in run.files
