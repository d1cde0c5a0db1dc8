"""The one settings object: built at the edge (the CLI), passed down to every part.

Sources, strongest first: keyword arguments, environment (``BENTOGATE_*``, nested groups
with ``__``, e.g. ``BENTOGATE_GATE__RATE=300``), the file ``bentogate.toml`` in the working
directory (or the path in ``BENTOGATE_CONFIG``; a ``.json`` there holds the same fields),
then the defaults below. Nothing below the CLI reads ``os.environ``.
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class PortSettings(BaseModel):
    """Where things listen on 127.0.0.1 (the models' ports also on the host's ``address``).
    Nothing in the code hard-codes a port."""

    production_start: int = Field(10000, description="Production port of the first model.")
    production_step: int = Field(
        10, description="Gap between two models' production ports; +1 is the candidate port."
    )
    backend_start: int = Field(3001, description="First port handed to a Bento process.")
    backend_end: int = Field(3999, description="Last port handed to a Bento process.")
    stats: int = Field(9901, description="HAProxy stats page and Prometheus exporter.")


class HAProxySettings(BaseModel):
    """The sidecar HAProxy: binary, health-check cadence, timeouts and limits."""

    binary: str = Field("haproxy", description="The haproxy executable.")
    check_inter_ms: int = Field(1000, description="Health-check interval of an UP server.")
    check_fastinter_ms: int = Field(
        300, description="Interval while a server is changing state (fast detection)."
    )
    check_fall: int = Field(2, description="Failed checks before a server is marked DOWN.")
    check_rise: int = Field(2, description="Passed checks before a server is marked UP.")
    timeout_check_ms: int = Field(
        500, description="A check slower than this fails: bounds hung-server detection."
    )
    timeout_connect_ms: int = Field(250, description="Connect timeout to a Bento.")
    timeout_server_ms: int = Field(5000, description="Response timeout of a Bento.")
    timeout_client_ms: int = Field(30000, description="Idle timeout of a client connection.")
    server_maxconn: int = Field(64, description="Per-server concurrency; beyond it HAProxy queues.")
    hard_stop_after_s: int = Field(30, description="Old workers exit this long after a reload.")
    command_timeout_s: float = Field(5.0, description="Runtime API call timeout.")
    healthy_timeout_s: float = Field(
        10.0,
        description="A version already ready must pass its canary health check on every "
        "server within this long before traffic is switched to it.",
    )
    access_log: bool = Field(
        True,
        description="HAProxy logs one line per request (frontend, backend/server, status, "
        "timers, bytes) into a ring in its own memory, saved to logs/haproxy.log at every "
        "reload, stop and `bentogate logs`; `bentogate logs` shows it.",
    )
    access_log_memory_bytes: int = Field(
        32 * 1024 * 1024,
        ge=1024 * 1024,
        description="How much of the newest request-log lines HAProxy keeps in memory "
        "(≈ 200 bytes a line): lines older than this that no reload, stop or `bentogate logs` "
        "saved meanwhile are lost.",
    )
    access_log_max_bytes: int = Field(
        20 * 1024 * 1024,
        ge=4096,
        description="The request log's file is rotated (renamed to haproxy.log.1 …) once "
        "larger than this.",
    )
    access_log_keep: int = Field(
        3, ge=0, description="Rotated copies of the request log kept (haproxy.log.1 …)."
    )


class BentoSettings(BaseModel):
    """How Bentos are served."""

    replicas: int | None = Field(
        None,
        ge=1,
        description="Bentos (BentoML servers, each on its own port) per deployed version, "
        "balanced by HAProxy; default: one per CPU core this host lets bentogate use.",
        examples=[2],
    )
    workers: int = Field(1, description="BentoML worker processes per replica.")
    ready_timeout_s: float = Field(90.0, description="Wait this long for /readyz after start.")
    stop_timeout_s: float = Field(15.0, description="Graceful stop deadline before SIGKILL.")
    max_batch_rows: int = Field(1024, description="Rows accepted by /predict_batch.")
    recent_rows: int = Field(
        2000,
        ge=0,
        description="Feature rows of recent client /predict requests each Bento worker keeps "
        "in memory for shadow scoring (GET /_recent on its own port, never routed by "
        "HAProxy); 0 keeps none.",
    )
    recent_max_age_s: float = Field(
        3600.0, gt=0, description="Kept rows older than this are not handed out."
    )
    max_body_bytes: int = Field(
        1_048_576,
        description="Request bodies above this get 413: built into each Bento, and HAProxy "
        "enforces the limit each served Bento was built with.",
    )
    keep_previous_s: float = Field(
        300.0,
        ge=0,
        description="After a cutover the version that left production keeps running "
        "(unrouted, health-checked) this long, so a rollback is instant; then it is stopped. "
        "0: stop it as soon as it has drained.",
    )
    runtime: Literal["process", "container"] = Field(
        "process",
        description="How this host serves a version (deploy, release, the agent): "
        "`bentoml serve` processes of the Bento in its store, or containers of the image "
        "`build --containerize` recorded (the container group below).",
    )
    expire_warm: Literal["detached", "agent", "manual"] = Field(
        "detached",
        description="Who stops a warm version when its time is over: a detached expirer "
        "(`python -m bentogate.expirer`) that each cutover leaves running until then, this "
        "host's fleet agent, "
        "or nobody until `bentogate expire` is run.",
    )

    def replica_count(self) -> int:
        """``replicas``, or the CPU cores this process may run on when it is not set."""
        return self.replicas or len(os.sched_getaffinity(0))

    def build_args(self) -> dict[str, object]:
        """The values built into each Bento (service.BentoArgs besides the model tag)."""
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_batch_rows": self.max_batch_rows,
            "recent_rows": self.recent_rows,
            "recent_max_age_s": self.recent_max_age_s,
        }


class GateSettings(BaseModel):
    """The default gate policy; a model's stored policy overrides it."""

    rate: float = Field(200.0, description="Target request rate (req/s), held open-loop.")
    duration_s: float = Field(20.0, description="Measured time, after warm-up.")
    warmup_s: float = Field(3.0, description="Discarded from the figures.")
    users: int = Field(16, description="Concurrent Locust users available to hold the rate.")
    p50_ms: float = Field(5.0, description="Limit on the candidate's p50 latency.")
    p95_ms: float = Field(15.0, description="Limit on the candidate's p95 latency.")
    p99_ms: float = Field(25.0, description="Limit on the candidate's p99 latency.")
    max_error_ratio: float = Field(0.001, description="Failed / all requests.")
    min_samples: int = Field(1000, description="Fewer measured requests is inconclusive.")
    max_regression: float = Field(
        1.25,
        description="Candidate server-side p50 may be at most this x live's, measured in "
        "the same run (the statistical rules: bentogate.loadtest.GatePolicy).",
    )
    max_tail_regression: float = Field(
        1.5, description="Candidate server-side p99 may be at most this x live's."
    )
    block_s: float = Field(
        1.0,
        description="Seconds per block of the gate's bootstrap intervals (candidate and live "
        "resampled as pairs of blocks); the measured time must hold at least 4.",
    )
    max_auc_drop: float = Field(
        0.005,
        description="Validation: the candidate's holdout AUC may be at most this much below "
        "production's on the same rows.",
    )


class AgentSettings(BaseModel):
    """The fleet agent (`bentogate agent`): how often it reconciles and how it backs off."""

    interval_s: float = Field(
        2.0,
        gt=0,
        description="Seconds between two reconciliations; a pass that runs longer (a Bento "
        "starting, a cutover, a retry's wait) sends a keep-alive heartbeat this often.",
    )
    max_backoff_s: float = Field(
        30.0, description="Longest wait between retries while the governance DB is unreachable."
    )
    stale_after_s: float = Field(
        30.0, description="A host whose last heartbeat is older is not in the fleet."
    )
    reach_timeout_s: float = Field(
        1.0,
        gt=0,
        description="`status --fleet` gives each host's production port this long to answer "
        "over the network before it calls the host unreachable.",
    )
    rollout_deadline_s: float = Field(
        300.0, description="A fleet promotion not live on every host by then is rolled back."
    )
    start_attempts: int = Field(
        3,
        ge=1,
        description="Starts of a version the agent tries before it reports that its host "
        "failed it (which fails the rollout); each failed start is audited.",
    )
    start_retry_s: float = Field(
        2.0,
        ge=0,
        description="Wait before the first retry of a failed start; it doubles for each "
        "further one, up to max_backoff_s.",
    )


class ContainerSettings(BaseModel):
    """Container images of the versions (`build --containerize`) and the engine that builds
    and runs them (`bento.runtime = "container"`)."""

    engine: Literal["podman", "docker"] = Field(
        "podman",
        description="The engine command that runs a version's image (and reads its files): "
        "podman (daemonless, set up by `./run containers`), or docker where its daemon answers.",
    )
    builder: Literal["podman", "buildah", "docker"] = Field(
        "podman", description="BentoML containerize's backend that builds each version's image."
    )
    repository: str = Field(
        "bentogate",
        pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$",
        description="Images are tagged <repository>/<model>:<version>.",
    )
    base_image: str | None = Field(
        None,
        description="The image every version's image is built FROM (BentoML's "
        "docker.base_image: Debian with Python 3.11 and the Bento's pinned requirements). "
        "Default: the one `./run containers` builds locally, "
        "localhost/bentogate-base:<hash of its recipe>.",
        examples=["localhost/bentogate-base:0123456789ab"],
    )
    storage_dir: Path = Field(
        Path("/var/cache/bentogate/containers"),
        description="podman's and buildah's image store (one per storage driver) and their "
        "configuration files, shared by every checkout on the machine (outside the state "
        "directory: the base image is built once per machine).",
    )
    storage_driver: Literal["overlay", "vfs"] = Field(
        "overlay",
        description="podman's and buildah's storage driver: overlay (the kernel's overlayfs: "
        "a container starts without copying its image), or vfs where overlay mounts are "
        "refused (every build step and every container start copies the image's files).",
    )
    build_timeout_s: float = Field(1800.0, gt=0, description="Longest image build.")

    def image_tag(self, model: str, version: str) -> str:
        """``<repository>/<model>:<version>``, the tag of a version's image."""
        return f"{self.repository}/{model}:{version}"


class AuditSettings(BaseModel):
    """The audit trail's anchor outside the database: signed checkpoints of the chain's head."""

    checkpoint_key: Path | None = Field(
        None,
        description="Ed25519 private key (PEM, mode 600) that signs the checkpoints; created "
        "on first use. Keep it outside the database (every writer of a shared DB needs the "
        "same key). Default: home/keys/audit-checkpoint.pem.",
        examples=["/etc/bentogate/audit-checkpoint.pem"],
    )
    checkpoint_log: Path | None = Field(
        None,
        description="File every checkpoint is appended to (a WORM store or another host's "
        "mount). Default: home/audit-checkpoints.jsonl.",
        examples=["/mnt/worm/bentogate/audit-checkpoints.jsonl"],
    )
    checkpoint_every: int = Field(
        100,
        ge=1,
        description="A checkpoint at least every this many audit rows (and at every "
        "promotion, rollback and retirement).",
    )


class Settings(BaseSettings):
    """Everything bentogate can be told. ``home`` holds all state of one host."""

    model_config = SettingsConfigDict(
        env_prefix="BENTOGATE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = Field(Path(".bentogate"), description="State: DB, Bento store, config, logs.")
    db_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the governance DB; default SQLite under home.",
        examples=["postgresql+psycopg://bentogate@db.internal:5432/bentogate"],
    )
    host: str = Field("local", description="This host's name in the governance DB.")
    address: str = Field(
        "127.0.0.1",
        description="This host's address on the network: its HAProxy serves every model's "
        "production port there as well as on 127.0.0.1 (candidate and stats ports stay on "
        "127.0.0.1), and its fleet agent's heartbeat names it, so `status --fleet` reaches "
        "the host there.",
        examples=["10.0.3.21"],
    )
    shared_bentos_dir: Path | None = Field(
        None,
        description="Shared artifact store: `build` exports .bento archives here and fleet "
        "agents import them from here (a shared mount). Default: home/bentos.",
        examples=["/mnt/shared/bentos"],
    )
    environment: str = Field("prod", description="Environment name in the governance DB.")
    require_authenticated: bool = Field(
        True,
        description="PostgreSQL: refuse an actor named (--actor, --validator, ...) who is not "
        "the database role that connects. SQLite always lets the one-machine demo name people, "
        "and records their rows as unauthenticated.",
    )
    ports: PortSettings = PortSettings()
    haproxy: HAProxySettings = HAProxySettings()
    bento: BentoSettings = BentoSettings()
    gate: GateSettings = GateSettings()
    agent: AgentSettings = AgentSettings()
    container: ContainerSettings = ContainerSettings()
    audit: AuditSettings = AuditSettings()

    @field_validator("address")
    @classmethod
    def _ipv4_address(cls, address: str) -> str:
        # Rendered into HAProxy's bind lines: a literal, never a name resolved at start.
        try:
            return str(ipaddress.IPv4Address(address))
        except ValueError as err:
            raise ValueError(f"address must be an IPv4 address, got {address!r}") from err

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, home: Path) -> Path:
        # Child processes (bentoml, haproxy, locust) run in other directories.
        return home.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get("BENTOGATE_CONFIG") or "bentogate.toml"
        if config.endswith(".json"):  # settings handed to a child process (warm expiry)
            return (init_settings, env_settings, JsonConfigSettingsSource(settings_cls, config))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config))

    @property
    def database_url(self) -> str:
        """The governance DB URL: ``db_url`` or SQLite in ``home``."""
        return self.db_url or f"sqlite:///{(self.home / 'governance.db').resolve()}"

    @property
    def checkpoint_key(self) -> Path:
        """The audit checkpoints' signing key: ``audit.checkpoint_key`` or under home."""
        key = self.audit.checkpoint_key
        return key.expanduser().resolve() if key else self.home / "keys" / "audit-checkpoint.pem"

    @property
    def checkpoint_log(self) -> Path:
        """Where checkpoints are appended: ``audit.checkpoint_log`` or under home."""
        log = self.audit.checkpoint_log
        return log.expanduser().resolve() if log else self.home / "audit-checkpoints.jsonl"

    @property
    def bentos_dir(self) -> Path:
        """Where .bento archives are exported to and imported from."""
        shared = self.shared_bentos_dir
        return shared.expanduser().resolve() if shared is not None else self.home / "bentos"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def haproxy_dir(self) -> Path:
        return self.home / "haproxy"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"


# -- the commented example file (bentogate.toml.example), generated from the fields above --

_EXAMPLE_HEAD = """\
# bentogate.toml: every setting bentogate reads, each with its description and default.
#
# Generated from bentogate/settings.py by bentogate.settings.example_toml() (a test checks
# that they agree). Copy it to ./bentogate.toml, or name a copy in BENTOGATE_CONFIG, and keep
# only the lines you change. Environment variables win over this file: each setting's is
# named above it (nested groups with "__", e.g. BENTOGATE_GATE__RATE=300).\
"""


def example_toml() -> str:
    """The text of ``bentogate.toml.example``: every field of :class:`Settings` with its
    description, environment variable and default (a field without a default, commented
    out, with an example value). Parsed, it gives the defaults."""
    parts = [_EXAMPLE_HEAD]
    groups: list[tuple[str, type[BaseModel]]] = []
    for name, info in Settings.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            groups.append((name, kind))
        else:
            parts.append(_example_field(name, info, f"BENTOGATE_{name.upper()}"))
    for group, model in groups:
        doc = inspect.cleandoc(model.__doc__ or "")
        parts.append(f"{_comment(doc)}\n[{group}]")
        for name, info in model.model_fields.items():
            env = f"BENTOGATE_{group.upper()}__{name.upper()}"
            parts.append(_example_field(name, info, env))
    return "\n\n".join(parts) + "\n"


def _example_field(name: str, info: FieldInfo, env: str) -> str:
    text = info.description or ""
    choices = (
        typing.get_args(info.annotation) if typing.get_origin(info.annotation) is Literal else ()
    )
    if choices:
        text += f" One of: {', '.join(json.dumps(c) for c in choices)}."
    lines = [_comment(f"{text} ({env})")]
    if info.default is None:
        example = info.examples[0] if info.examples else ""
        lines.append(f"# {name} = {_toml_value(example)}")
    else:
        lines.append(f"{name} = {_toml_value(info.default)}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def _comment(text: str) -> str:
    lines = textwrap.wrap(
        text, 94, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False
    )
    return "\n".join(lines)
