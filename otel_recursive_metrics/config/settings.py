"""The settings: one row each (parser, variables, meaning) and the :class:`Config` fields that hold their defaults.

:data:`SETTINGS` is the one list: :func:`~.loading.load_config` reads it, and the README's table
is made from it (:func:`settings_markdown`; a test keeps them equal). A default is written once,
as the :class:`Config` field's; :attr:`Setting.default` reads it from there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..model.kinds import OverflowPolicy
from .parsers import (
    parse_bool,
    parse_choice,
    parse_float,
    parse_headers,
    parse_int,
    parse_optional_path,
    parse_optional_str,
    parse_path,
    parse_sinks,
    parse_system_metric_set,
)

__all__ = [
    "ENV_PREFIX",
    "SEED_KEYS",
    "SETTINGS",
    "Config",
    "MiB",
    "Setting",
    "display_url",
    "setting_default",
    "settings_markdown",
]

ENV_PREFIX = "OTEL_RECURSIVE_METRICS_"

#: The seed system's config keys and the field each one sets.
SEED_KEYS: dict[str, str] = {
    "metrics_batch_size": "batch_size",
    "metrics_flush_interval_sec": "flush_interval_s",
    "metrics_max_retries": "max_retries",
    "metrics_retry_delay_sec": "retry_delay_s",
}

OVERFLOW_POLICIES = tuple(policy.value for policy in OverflowPolicy)
OTLP_PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("none", "gzip")


@dataclass(frozen=True)
class Setting:
    """One configurable field: its parser, environment variables and meaning (the README table).

    Its default is the :class:`Config` field's, the one place defaults are written.
    """

    name: str
    parse: Callable[[Any], Any]
    help: str
    env: tuple[str, ...] = ()
    secret: bool = False

    @property
    def default(self) -> Any:
        return _DEFAULTS[self.name]


_overflow_choice = parse_choice(OVERFLOW_POLICIES)


def parse_overflow(value: Any) -> OverflowPolicy:
    """The ``overflow`` setting: one of the :class:`~otel_recursive_metrics.model.kinds.OverflowPolicy` values."""
    return OverflowPolicy(_overflow_choice(value))


def _otlp_env(suffix: str) -> tuple[str, ...]:
    return (f"OTEL_EXPORTER_OTLP_METRICS_{suffix}", f"OTEL_EXPORTER_OTLP_{suffix}")


MiB = 1024 * 1024

SETTINGS: tuple[Setting, ...] = (
    Setting("sinks", parse_sinks, "Where points go: `store`, `otlp` or `store,otlp`."),
    Setting("dir", parse_path, "Data folder for the store, durable queue and dead letters."),
    Setting("store_path", parse_optional_path, "SQLite store file (default `$DIR/metrics.db`).", (ENV_PREFIX + "STORE",)),
    Setting("batch_size", parse_int(1), "Accepted items (an SDK export, a `log` call, a record) that wake the worker before the interval."),
    Setting(
        "flush_interval_s",
        parse_float(0.0, exclusive=True),
        "Longest time (seconds) a point waits in memory before it is on disk and sent.",
        (ENV_PREFIX + "FLUSH_INTERVAL",),
    ),
    Setting(
        "max_retries",
        parse_int(0),
        "Retries of one batch before the sink is reported failing (error callbacks); retrying goes on within `retry_max_elapsed_s`.",
    ),
    Setting(
        "retry_delay_s",
        parse_float(0.0),
        "First backoff delay (seconds); each next one is x`retry_multiplier`, with jitter.",
        (ENV_PREFIX + "RETRY_DELAY",),
    ),
    Setting("retry_multiplier", parse_float(1.0), "Backoff growth factor."),
    Setting("retry_jitter", parse_float(0.0), "Randomization factor: each delay is drawn from delay*(1 +/- jitter)."),
    Setting("retry_max_delay_s", parse_float(0.0), "Cap on one backoff delay."),
    Setting(
        "retry_max_elapsed_s",
        parse_float(0.0),
        "Time budget for one batch from its first attempt; then it is dead-lettered. 0 means retry forever.",
    ),
    Setting("send_timeout_s", parse_float(0.0, exclusive=True), "Deadline of one delivery attempt."),
    Setting("max_batch_points", parse_int(1), "Most points in one delivery (one OTLP request, one store transaction)."),
    Setting(
        "max_buffer_items",
        parse_int(1),
        "Most items waiting in memory for the worker (it also caps them at what it can write within the flush interval);"
        " past it the overflow policy applies.",
    ),
    Setting("max_queue_bytes", parse_int(MiB), "Byte cap of the durable on-disk queue; past it the overflow policy applies."),
    Setting("overflow", parse_overflow, "When memory or disk is full: `drop_oldest`, `drop_newest` or `block`."),
    Setting("block_timeout_s", parse_float(0.0), "With `overflow=block`, longest wait for room before dropping the newest."),
    Setting("dead_letter_max_bytes", parse_int(0), "Byte cap of the dead-letter folder; past it new dead letters are dropped and counted."),
    Setting(
        "fsync", parse_bool, "fsync the durable queue at least every `flush_interval_s` (off: survives a process crash, not a power loss)."
    ),
    Setting(
        "store_direct",
        parse_bool,
        "With `store` the only sink, write batches straight into the store, which is then the durable log (off: through the queue).",
    ),
    Setting("export_in_forked_child", parse_bool, "Let SDK exports in a forked child through (they would repeat the parent's data)."),
    Setting(
        "system_metrics",
        parse_bool,
        "Sample host, process and GPU metrics into the pipeline (extras `system`, `gpu`); see System and GPU metrics.",
    ),
    Setting(
        "system_metrics_interval_s",
        parse_float(0.0, exclusive=True),
        "Seconds between system metric samples.",
        (ENV_PREFIX + "SYSTEM_METRICS_INTERVAL",),
    ),
    Setting(
        "system_metrics_set",
        parse_system_metric_set,
        "Which system metrics: `default`, `all`, metric names, `-glob` to remove, or a JSON object of metric -> states.",
    ),
    Setting("system_metrics_gpu", parse_bool, "Include the GPU metrics (NVML) in the system metrics."),
    Setting(
        "offline",
        parse_bool,
        "Keep every sink but send nothing over the network: OTLP batches wait on disk for `otel-recursive-metrics sync`.",
    ),
    Setting(
        "shutdown_grace_s",
        parse_float(0.0),
        "Once everything is on disk, how long shutdown still waits for delivery; what is left is sent at the next start or by `sync`.",
    ),
    Setting(
        "handle_sigterm",
        parse_bool,
        "On SIGTERM, put what is in memory on disk, then chain to the program's own handler (or end as SIGTERM would).",
    ),
    Setting("sigterm_timeout_s", parse_float(0.0), "Longest time the SIGTERM handler spends putting memory on disk."),
    Setting(
        "attribute_count_limit",
        parse_int(1),
        "Most attributes a point keeps (`OTEL_ATTRIBUTE_COUNT_LIMIT`); the rest are cut and counted.",
        ("OTEL_ATTRIBUTE_COUNT_LIMIT",),
    ),
    Setting(
        "attribute_value_length_limit",
        parse_int(1),
        "Longest attribute string value in characters (`OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`); longer ones are cut and counted.",
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",),
    ),
    Setting(
        "otlp_endpoint",
        parse_optional_str,
        "OTLP endpoint (default `http://localhost:4317` for grpc, `http://localhost:4318/v1/metrics` for http).",
        _otlp_env("ENDPOINT"),
    ),
    Setting("otlp_protocol", parse_choice(OTLP_PROTOCOLS), "`grpc` or `http/protobuf`.", _otlp_env("PROTOCOL")),
    Setting(
        "otlp_headers", parse_headers, "Headers as `k=v,k2=v2`; values are secrets and never logged.", _otlp_env("HEADERS"), secret=True
    ),
    Setting(
        "otlp_timeout_s",
        parse_float(0.0, exclusive=True),
        "OTLP per-request timeout (the standard variable is in milliseconds).",
        _otlp_env("TIMEOUT"),
    ),
    Setting("otlp_compression", parse_choice(COMPRESSIONS), "`none` or `gzip`.", _otlp_env("COMPRESSION")),
    Setting("otlp_insecure", parse_bool, "gRPC without TLS when the endpoint has no scheme.", _otlp_env("INSECURE")),
    Setting("otlp_certificate", parse_optional_path, "CA bundle to verify the server.", _otlp_env("CERTIFICATE")),
    Setting("otlp_client_key", parse_optional_path, "Client private key for mTLS.", _otlp_env("CLIENT_KEY")),
    Setting("otlp_client_certificate", parse_optional_path, "Client certificate for mTLS.", _otlp_env("CLIENT_CERTIFICATE")),
)

_BY_NAME = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The resolved settings; build one with :func:`load_config`. Immutable and thread-safe."""

    sinks: tuple[str, ...] = ("store",)
    dir: Path = Path("./otel-metrics")
    store_path: Path | None = None
    batch_size: int = 50
    flush_interval_s: float = 5.0
    max_retries: int = 3
    retry_delay_s: float = 1.0
    retry_multiplier: float = 1.5
    retry_jitter: float = 0.5
    retry_max_delay_s: float = 30.0
    # An hour, not the Collector's 5 minutes: the batch waits on disk, not in memory, so an
    # outage of minutes should end in delivery, not in the dead-letter queue.
    retry_max_elapsed_s: float = 3600.0
    send_timeout_s: float = 10.0
    max_batch_points: int = 8192
    max_buffer_items: int = 100_000
    max_queue_bytes: int = 1024 * MiB
    overflow: OverflowPolicy = OverflowPolicy.DROP_OLDEST
    block_timeout_s: float = 1.0
    dead_letter_max_bytes: int = 256 * MiB
    fsync: bool = True
    store_direct: bool = True
    export_in_forked_child: bool = False
    system_metrics: bool = False
    system_metrics_interval_s: float = 10.0
    system_metrics_set: str = "default"
    system_metrics_gpu: bool = True
    offline: bool = False
    shutdown_grace_s: float = 3.0
    handle_sigterm: bool = True
    sigterm_timeout_s: float = 2.0
    # The SDK's default count; its value length is unlimited, but a label of megabytes costs
    # every point that carries it (queue, store, backend): 4 KiB is past any sane label.
    attribute_count_limit: int = 128
    attribute_value_length_limit: int = 4096
    otlp_endpoint: str | None = None
    otlp_protocol: str = "grpc"
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    otlp_timeout_s: float = 10.0
    otlp_compression: str = "none"
    otlp_insecure: bool = False
    otlp_certificate: Path | None = None
    otlp_client_key: Path | None = None
    otlp_client_certificate: Path | None = None

    @property
    def resolved_store_path(self) -> Path:
        """The SQLite store file: ``store_path`` or ``$DIR/metrics.db``."""
        return self.store_path if self.store_path is not None else self.dir / "metrics.db"

    @property
    def queue_dir(self) -> Path:
        return self.dir / "queue"

    @property
    def dead_letter_dir(self) -> Path:
        return self.dir / "dead-letter"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict, header values and endpoint credentials replaced, safe to log."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["otlp_headers"] = {k: "<redacted>" for k, _ in self.otlp_headers}
        if self.otlp_endpoint is not None:
            out["otlp_endpoint"] = display_url(self.otlp_endpoint)
        return out

    def __repr__(self) -> str:
        # repr ends up in logs and tracebacks: never a credential.
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self.redacted().items()) + ")"


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Config)}
if set(_DEFAULTS) != set(_BY_NAME):  # pragma: no cover - a developer's slip, caught at import
    raise RuntimeError(f"Config fields and SETTINGS differ: {sorted(set(_DEFAULTS) ^ set(_BY_NAME))}")


def setting_default(name: str) -> Any:
    """The default of setting ``name``, for modules that need it outside a :class:`Config`."""
    return _DEFAULTS[name]


def display_url(url: str) -> str:
    """``url`` safe for messages: no user info, no query string (either may hold a credential)."""
    try:
        # "collector:4317" (no scheme, as gRPC endpoints often are) would parse as scheme
        # "collector"; parse it as a network location instead.
        parts = urlsplit(url if "://" in url else "//" + url)
    except ValueError:
        return "<unparseable endpoint>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "<redacted>@" + netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    return shown + ("?<redacted>" if parts.query else "")


def settings_markdown() -> str:
    """The README's settings table, made from :data:`SETTINGS` (a test keeps the README equal to it)."""
    seed_key = {field: key for key, field in SEED_KEYS.items()}
    lines = ["| setting (keyword) | environment | seed key | default | meaning |", "|---|---|---|---|---|"]
    for setting in SETTINGS:
        default = setting.default
        if isinstance(default, tuple) and all(isinstance(v, str) for v in default):
            shown = ",".join(default) if default else "(none)"
        elif default is None or default == ():
            shown = "(none)"
        elif isinstance(default, int) and not isinstance(default, bool) and default >= MiB and default % MiB == 0:
            shown = f"{default // MiB} MiB" if default < 1024 * MiB else f"{default // (1024 * MiB)} GiB"
        else:
            shown = str(default)
        envs = "<br>".join(f"`{name}`" for name in env_names(setting))
        seed = f"`{seed_key[setting.name]}`" if setting.name in seed_key else ""
        lines.append(f"| `{setting.name}` | {envs} | {seed} | `{shown}` | {setting.help} |")
    return "\n".join(lines) + "\n"


def env_names(setting: Setting) -> tuple[str, ...]:
    """The variables that set ``setting``, first match wins: our documented names, then standard ones."""
    ours = [n for n in setting.env if n.startswith(ENV_PREFIX)]
    others = [n for n in setting.env if not n.startswith(ENV_PREFIX)]
    return (*ours, ENV_PREFIX + setting.name.upper(), *others)
