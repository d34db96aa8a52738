"""Real OTLP receivers on loopback for tests and benchmarks: gRPC (grpcio) and HTTP (http.server).

Both record every request with its headers and can inject faults, one request at a time
(:meth:`inject`) or for every request until cleared (:meth:`set_fault`)::

    with GrpcReceiver() as receiver:
        receiver.inject(Fault(grpc_code="UNAVAILABLE", retry_info_s=0.5))
        ...  # point an exporter at receiver.endpoint
        receiver.wait_for_points(100, timeout_s=10)

``down()`` stops listening (clients get "connection refused") and ``up()`` listens again on the
same port. ``make_tls_files(folder)`` makes a CA, a server certificate for 127.0.0.1/localhost
and a client certificate, at test time.
"""

from __future__ import annotations

import gzip
import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from otel_recursive_metrics.sinks.otlp.base import count_points  # the sinks' own count, not a copy

__all__ = ["Attempt", "Fault", "GrpcReceiver", "HttpReceiver", "TlsFiles", "make_tls_files", "wait_until"]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition", *, interval_s: float = 0.02) -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


@dataclass
class Fault:
    """How to answer one request. Without a status or code it is a success (maybe partial)."""

    http_status: int | None = None
    grpc_code: str | None = None
    retry_after: str | None = None
    retry_info_s: float | None = None
    message: str = ""
    rejected: int = 0
    delay_s: float = 0.0


@dataclass
class Attempt:
    """One request as the receiver saw it."""

    time: float
    headers: dict[str, str]
    request: ExportMetricsServiceRequest
    accepted: bool
    path: str = ""
    content_encoding: str = ""


class _Recorder:
    def __init__(self, *, keep_requests: bool = True) -> None:
        self.keep_requests = keep_requests
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._always: Fault | None = None
        self._refuse: tuple[Callable[[ExportMetricsServiceRequest], bool], Fault] | None = None
        self.attempts: list[Attempt] = []
        self.points_accepted = 0
        self.requests_accepted = 0
        self._stopping = threading.Event()

    # -- faults --------------------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order, then normally."""
        with self._lock:
            self._faults.extend(faults)

    def set_fault(self, fault: Fault | None) -> None:
        """Answer every request with ``fault`` until ``set_fault(None)``."""
        with self._lock:
            self._always = fault

    def refuse_when(self, predicate: Callable[[ExportMetricsServiceRequest], bool] | None, fault: Fault | None = None) -> None:
        """Answer with ``fault`` every request for which ``predicate(request)`` holds (a receiver
        that refuses some data points, as a backend validating values would); None to stop."""
        with self._lock:
            self._refuse = None if predicate is None or fault is None else (predicate, fault)

    def _next_fault(self, request: ExportMetricsServiceRequest | None = None) -> Fault | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._refuse is not None and request is not None and self._refuse[0](request):
                return self._refuse[1]
            return self._always

    def _record(self, attempt: Attempt, points: int) -> None:
        with self._lock:
            if self.keep_requests:
                self.attempts.append(attempt)
            if attempt.accepted:
                self.requests_accepted += 1
                self.points_accepted += points

    # -- reading -------------------------------------------------------------------------------

    @property
    def accepted(self) -> list[ExportMetricsServiceRequest]:
        with self._lock:
            return [a.request for a in self.attempts if a.accepted]

    def wait_for_points(self, n: int, timeout_s: float = 20.0) -> None:
        wait_until(lambda: self.points_accepted >= n, timeout_s, what=f"{n} points at the receiver (have {self.points_accepted})")

    def wait_for_attempts(self, n: int, timeout_s: float = 20.0) -> None:
        wait_until(lambda: len(self.attempts) >= n, timeout_s, what=f"{n} requests at the receiver (have {len(self.attempts)})")

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


# -- gRPC ------------------------------------------------------------------------------------------


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, recorder: GrpcReceiver) -> None:
        self.recorder = recorder

    def Export(self, request: ExportMetricsServiceRequest, context: grpc.ServicerContext) -> ExportMetricsServiceResponse:
        rec = self.recorder
        headers = {k: v if isinstance(v, str) else v.hex() for k, v in context.invocation_metadata()}
        fault = rec._next_fault(request)
        if fault is not None:
            rec._sleep(fault.delay_s)
        failed = fault is not None and fault.grpc_code is not None
        rec._record(Attempt(time.monotonic(), headers, request, accepted=not failed and context.is_active()), count_points(request))
        if fault is not None and fault.grpc_code is not None:
            code = grpc.StatusCode[fault.grpc_code]
            if fault.retry_info_s is not None:
                info = error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(seconds=int(fault.retry_info_s), nanos=int((fault.retry_info_s % 1) * 1e9))
                )
                status = status_pb2.Status(code=code.value[0], message=fault.message)
                status.details.add().Pack(info)
                context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
            context.abort(code, fault.message or code.name)
        response = ExportMetricsServiceResponse()
        if fault is not None and (fault.rejected or fault.message):
            response.partial_success.rejected_data_points = fault.rejected
            response.partial_success.error_message = fault.message
        return response


class GrpcReceiver(_Recorder):
    """An OTLP/gRPC receiver on 127.0.0.1; TLS (and mTLS) when given :class:`TlsFiles`."""

    def __init__(
        self, *, tls: TlsFiles | None = None, require_client_cert: bool = False, keep_requests: bool = True, workers: int = 8
    ) -> None:
        super().__init__(keep_requests=keep_requests)
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.workers = workers
        self.port = 0
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> GrpcReceiver:
        self._stopping.clear()
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.workers), options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), server)
        address = f"127.0.0.1:{self.port}"
        if self.tls:
            credentials = grpc.ssl_server_credentials(
                [(self.tls.server_key.read_bytes(), self.tls.server_cert.read_bytes())],
                root_certificates=self.tls.ca_cert.read_bytes() if self.require_client_cert else None,
                require_client_auth=self.require_client_cert,
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
        if not port:
            raise RuntimeError(f"cannot listen on {address}")
        self.port = port
        server.start()
        self._server = server
        return self

    def down(self) -> None:
        """Stop listening and drop connections; :meth:`up` listens again on the same port."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=0).wait(5)

    def up(self) -> None:
        self.start()

    stop = down

    def __enter__(self) -> GrpcReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.down()


# -- HTTP -----------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.receiver._lock:
            self.server.receiver._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.receiver._lock:
                self.server.receiver._connections.discard(self.connection)

    def do_POST(self) -> None:
        rec = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path != rec.path:
            self._answer(404, b"not found", "text/plain")
            return
        request = ExportMetricsServiceRequest.FromString(body)
        fault = rec._next_fault(request)
        if fault is not None:
            rec._sleep(fault.delay_s)
        failed = fault is not None and fault.http_status is not None
        rec._record(
            Attempt(time.monotonic(), headers, request, accepted=not failed, path=self.path, content_encoding=encoding),
            count_points(request),
        )
        if fault is not None and fault.http_status is not None:
            status = status_pb2.Status(code=2, message=fault.message)
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._answer(fault.http_status, status.SerializeToString(), "application/x-protobuf", extra)
            return
        response = ExportMetricsServiceResponse()
        if fault is not None and (fault.rejected or fault.message):
            response.partial_success.rejected_data_points = fault.rejected
            response.partial_success.error_message = fault.message
        self._answer(200, response.SerializeToString(), "application/x-protobuf")

    def _answer(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: HttpReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that time out and hang up are part of the tests


class HttpReceiver(_Recorder):
    """An OTLP/HTTP receiver (protobuf, gzip) on 127.0.0.1 at ``path``; TLS when given :class:`TlsFiles`."""

    def __init__(
        self, *, tls: TlsFiles | None = None, require_client_cert: bool = False, keep_requests: bool = True, path: str = "/v1/metrics"
    ) -> None:
        super().__init__(keep_requests=keep_requests)
        self.tls = tls
        self.require_client_cert = require_client_cert
        self.path = path
        self.port = 0
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()

    @property
    def base_endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.base_endpoint + self.path

    def start(self) -> HttpReceiver:
        self._stopping.clear()
        server = _HttpServer(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.server_cert, self.tls.server_key)
            if self.require_client_cert:
                context.verify_mode = ssl.CERT_REQUIRED
                context.load_verify_locations(self.tls.ca_cert)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="test-otlp-http-receiver", daemon=True
        )
        self._thread.start()
        return self

    def down(self) -> None:
        """Stop listening and cut open keep-alive connections."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)

    def up(self) -> None:
        self.start()

    stop = down

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.down()


# -- certificates -----------------------------------------------------------------------------------


@dataclass
class TlsFiles:
    """PEM files of a test CA, a server certificate (127.0.0.1, localhost) and a client certificate."""

    folder: Path
    ca_cert: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    client_cert: Path = field(init=False)
    client_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca_cert = self.folder / "ca.pem"
        self.server_cert = self.folder / "server.pem"
        self.server_key = self.folder / "server-key.pem"
        self.client_cert = self.folder / "client.pem"
        self.client_key = self.folder / "client-key.pem"


def make_tls_files(folder: Path) -> TlsFiles:
    """Make the certificates with ``cryptography`` if installed, else the ``openssl`` command."""
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        if shutil.which("openssl") is None:
            import pytest

            pytest.skip("neither the cryptography package nor the openssl command is available")
        _make_with_openssl(files)
    else:
        _make_with_cryptography(files)
    return files


def _make_with_cryptography(files: TlsFiles) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "otel-recursive-metrics test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(name: str, usage: x509.ObjectIdentifier, san: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    server_cert, server_key = leaf(
        "localhost", ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    client_cert, client_key = leaf("test-client", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    files.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)


def _make_with_openssl(files: TlsFiles) -> None:
    folder = files.folder

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=otel-recursive-metrics test CA",
        "-keyout",
        str(folder / "ca-key.pem"),
        "-out",
        str(files.ca_cert),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    for name, key, cert, ext in (
        ("localhost", files.server_key, files.server_cert, "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"),
        ("test-client", files.client_key, files.client_cert, "extendedKeyUsage=clientAuth\n"),
    ):
        csr = folder / f"{name}.csr"
        extfile = folder / f"{name}.ext"
        extfile.write_text("basicConstraints=CA:FALSE\n" + ext)
        run(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(key),
            "-out",
            str(csr),
        )
        run(
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(files.ca_cert),
            "-CAkey",
            str(folder / "ca-key.pem"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            str(extfile),
            "-out",
            str(cert),
        )


# -- points, to compare what was recorded with what arrived ---------------------------------------


def _attr_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return tuple(_attr_value(v) for v in value.array_value.values)
    return getattr(value, which) if which else None


def _point_key(name: str, attributes: dict[str, Any], start: int | None, end: int, value: Any) -> tuple[Any, ...]:
    return (name, tuple(sorted(attributes.items())), start or 0, end, value)


def sdk_points(metrics_data: Any) -> list[tuple[Any, ...]]:
    """Every point of SDK ``MetricsData`` objects (one or a list) as comparable tuples, sorted."""
    datas = metrics_data if isinstance(metrics_data, list) else [metrics_data]
    out = []
    for md in datas:
        for rm in md.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for dp in metric.data.data_points:
                        if hasattr(dp, "bucket_counts"):
                            value: Any = (dp.count, dp.sum, tuple(dp.bucket_counts), tuple(dp.explicit_bounds), dp.min, dp.max)
                        else:
                            value = dp.value
                        attrs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in (dp.attributes or {}).items()}
                        out.append(_point_key(metric.name, attrs, dp.start_time_unix_nano, dp.time_unix_nano, value))
    return sorted(out, key=repr)


def otlp_points(requests: list[ExportMetricsServiceRequest]) -> list[tuple[Any, ...]]:
    """Every point of OTLP requests as the same tuples as :func:`sdk_points`, sorted."""
    out = []
    for request in requests:
        for rm in request.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    which = metric.WhichOneof("data")
                    for dp in getattr(metric, which).data_points:
                        attrs = {kv.key: _attr_value(kv.value) for kv in dp.attributes}
                        if which == "histogram":
                            value: Any = (
                                dp.count,
                                dp.sum,
                                tuple(dp.bucket_counts),
                                tuple(dp.explicit_bounds),
                                dp.min if dp.HasField("min") else None,
                                dp.max if dp.HasField("max") else None,
                            )
                        else:
                            value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
                        out.append(_point_key(metric.name, attrs, dp.start_time_unix_nano, dp.time_unix_nano, value))
    return sorted(out, key=repr)


def sample_batch(n: int = 3, *, metric: str = "train.loss", first_step: int = 0) -> Any:
    """A PointBatch of ``n`` gauge points with steps, as the training API would make it."""
    from otel_recursive_metrics.model.attributes import canonical_json
    from otel_recursive_metrics.model.batch import BatchBuilder

    builder = BatchBuilder()
    res = builder.resource({"service.name": "trainer", "training.run.id": "run-1"})
    scope = builder.scope("test", "1.0")
    m = builder.metric(metric, "loss", "1", "gauge")
    base = 1_700_000_000_000_000_000
    for i in range(n):
        step = first_step + i
        builder.add_point(res, scope, m, canonical_json({"phase": "train"}), 0, base + step * 1000, 1.0 / (step + 1), step, 0)
    return builder.build()
