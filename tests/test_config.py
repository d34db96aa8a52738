"""Configuration: precedence, the seed's keys, and one error listing every bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_recursive_metrics import ConfigError, RecursiveMetricExporter, load_config


def test_defaults_match_the_seed() -> None:
    cfg = load_config(environ={})
    assert (cfg.batch_size, cfg.flush_interval_s, cfg.max_retries, cfg.retry_delay_s) == (50, 5.0, 3, 1.0)
    assert cfg.sinks == ("store",)
    assert cfg.resolved_store_path == Path("otel-metrics/metrics.db")


def test_precedence_keyword_over_mapping_over_environment() -> None:
    env = {
        "OTEL_RECURSIVE_METRICS_BATCH_SIZE": "7",
        "OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S": "2.5",
        "OTEL_RECURSIVE_METRICS_MAX_RETRIES": "9",
    }
    cfg = load_config({"metrics_batch_size": 11, "metrics_max_retries": 4}, environ=env, max_retries=5)
    assert cfg.batch_size == 11  # mapping beats environment
    assert cfg.flush_interval_s == 2.5  # environment beats default
    assert cfg.max_retries == 5  # keyword beats mapping


def test_seed_keys_map_to_fields() -> None:
    cfg = load_config(
        {"metrics_batch_size": 10, "metrics_flush_interval_sec": 0.5, "metrics_max_retries": 0, "metrics_retry_delay_sec": 0.25},
        environ={},
    )
    assert (cfg.batch_size, cfg.flush_interval_s, cfg.max_retries, cfg.retry_delay_s) == (10, 0.5, 0, 0.25)


def test_design_names_for_the_seed_settings() -> None:
    env = {
        "OTEL_RECURSIVE_METRICS_BATCH_SIZE": "9",
        "OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL": "0.5",
        "OTEL_RECURSIVE_METRICS_MAX_RETRIES": "2",
        "OTEL_RECURSIVE_METRICS_RETRY_DELAY": "0.1",
    }
    cfg = load_config(environ=env)
    assert (cfg.batch_size, cfg.flush_interval_s, cfg.max_retries, cfg.retry_delay_s) == (9, 0.5, 2, 0.1)
    # The unit-suffixed spelling works too.
    assert load_config(environ={"OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S": "2"}).flush_interval_s == 2.0


def test_environment_names() -> None:
    env = {
        "OTEL_RECURSIVE_METRICS_SINKS": "store, otlp",
        "OTEL_RECURSIVE_METRICS_DIR": "/data/run",
        "OTEL_RECURSIVE_METRICS_STORE": "/data/m.db",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20s3cret,x-tenant=a",
    }
    cfg = load_config(environ=env)
    assert cfg.sinks == ("store", "otlp")
    assert cfg.dir == Path("/data/run") and cfg.resolved_store_path == Path("/data/m.db")
    assert cfg.otlp_endpoint == "http://collector:4317"
    assert cfg.otlp_protocol == "http/protobuf"  # the METRICS variable wins
    assert cfg.otlp_timeout_s == 2.5  # the standard variable is milliseconds
    assert dict(cfg.otlp_headers) == {"authorization": "Bearer s3cret", "x-tenant": "a"}
    assert "s3cret" not in repr(cfg) and "s3cret" not in str(cfg.redacted())


def test_one_error_lists_every_bad_field() -> None:
    env = {"OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S": "soon"}
    with pytest.raises(ConfigError) as info:
        load_config({"metrics_batch_size": 0, "colour": "blue"}, environ=env, overflow="explode", sinks="store,kafka", max_retries=-1)
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) == 6, problems
    for needle in (
        "batch_size=0 (config key 'metrics_batch_size'): expected an integer >= 1",
        "colour='blue' (config mapping): unknown setting",
        "flush_interval_s='soon' (OTEL_RECURSIVE_METRICS_FLUSH_INTERVAL_S): expected a number > 0",
        "overflow='explode' (keyword argument): expected one of drop_oldest, drop_newest, block",
        "sinks='store,kafka' (keyword argument): expected a comma-separated list of store, otlp",
        "max_retries=-1 (keyword argument): expected an integer >= 0",
    ):
        assert needle in text


def test_bad_header_value_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(environ={"OTEL_EXPORTER_OTLP_HEADERS": "Bearer-tok3n-without-key"})
    assert "tok3n" not in str(info.value) and "otlp_headers=<redacted>" in str(info.value)


def test_exporter_takes_every_setting_as_keyword(tmp_path: Path) -> None:
    exporter = RecursiveMetricExporter(dir=tmp_path, batch_size=3, overflow="drop_newest", config={"metrics_max_retries": 1})
    assert (exporter.config.batch_size, exporter.config.overflow, exporter.config.max_retries) == (3, "drop_newest", 1)
    with pytest.raises(ConfigError):
        RecursiveMetricExporter(dir=tmp_path, batch_size="many")
    exporter.shutdown()


def test_config_is_immutable() -> None:
    cfg = load_config(environ={})
    with pytest.raises(AttributeError):
        cfg.batch_size = 5  # type: ignore[misc]
