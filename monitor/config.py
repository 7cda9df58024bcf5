"""The YAML configuration: file -> validated `Settings` (pydantic), with `${ENV}` substitution.

Every problem is reported with its YAML path (`watch.codefresh[0].account_id: field required`) so
that `rekorwatch check-config` can list them all at once; an unknown key comes with the closest known
one. Whatever the file holds (not a mapping, a 5 MB pattern, groups nested 5,000 deep, a port that is
no number, an interval of 1e-7 s), loading it is a ConfigError, never another exception. Settings
built in code (tests) skip the file-only floors, such as the minimum poll interval.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.contract import CODEFRESH_ISSUER
from monitor.patterns import PatternError, compile_pattern
from monitor.tlog.witness import PolicyError, WitnessPolicy, parse_policy

CONFIG_ENV = "REKORWATCH_CONFIG"
DEFAULT_CONFIG_FILE = "rekorwatch.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
_HEADER_VALUE_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_DURATION_SECONDS = 366 * 86400.0
MIN_POLL_INTERVAL = 1.0
"""Seconds; a config file may not ask a log more often (tests building Settings in code may)."""
MAX_CONFIG_BYTES = 16 * 1024 * 1024
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")
FROM_FILE = {"from_file": True}
"""Validation context of a config read from a file."""


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one `path: message` line per error."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def parse_duration(value: Any) -> float:
    """`10s`, `5m`, `1.5h`, `250ms` or a bare number of seconds -> seconds (float > 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 10s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (use e.g. 10s, 5m, 1h)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError("a duration must be at most 366d")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _linear_time_pattern(value: str) -> str:
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise ValueError(str(exc)) from None
    return value


Regexp = Annotated[str, AfterValidator(_linear_time_pattern)]
"""A full-match pattern for the linear-time engine (monitor/patterns.py), kept as its text."""


class _Strict(BaseModel):
    # hide_input_in_errors: a validation error's text must never echo a secret (api_key, tokens).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class TrustSettings(_Strict):
    root: str = "public-good"
    refresh: bool = True
    signing_config: str = "public-good"


def _config_error(field: str, kind: str, message: str, value: Any) -> ValidationError:
    """A problem of one field, raised from a model validator so that its YAML path names that field."""
    error = PydanticCustomError(kind, "{message}", {"message": message})
    return ValidationError.from_exception_data(field, [InitErrorDetails(type=error, loc=(field,), input=value)])


class _LogEndpoint(_Strict):
    """Where and how to read a log, Rekor's or a CT log."""

    url: str
    start: Literal["head"] | int = "head"
    concurrency: int = Field(8, ge=1, le=64)
    """Requests in flight to this log."""
    origin: str | None = None
    """The log's own origin, when it is read through a mirror or proxy (its key is then the trust
    root's log whose base URL, without scheme, is this origin)."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")

    @field_validator("start")
    @classmethod
    def _non_negative(cls, value: str | int) -> str | int:
        if isinstance(value, int) and value < 0:
            raise ValueError("start must be 'head' or an index >= 0 (a global index for a sharded Rekor)")
        return value

    @field_validator("origin")
    @classmethod
    def _one_line_origin(cls, value: str | None) -> str | None:
        if value is not None and (not value or value != value.strip() or "\n" in value):
            raise ValueError("origin must be a checkpoint's first line: not empty, one line, no outer spaces")
        return value


class LogSettings(_LogEndpoint):
    api: Literal["v1", "tiles"] = "v1"
    witness_policy: str | None = None
    """C2SP tlog-policy text (FORMATS.md §6); or `witness_policy_file`, a path (relative to the working directory)."""
    witness_policy_file: str | None = None
    witness_mode: Literal["enforce", "alert"] = "enforce"
    """enforce: entries past the newest checkpoint meeting the quorum wait; alert: read, and alerted."""
    _parsed_witness_policy: WitnessPolicy | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _parse_witness_policy(self) -> LogSettings:
        """Read and parse the witness policy now, so that every problem is a config error with its line."""
        if self.witness_policy is not None and self.witness_policy_file is not None:
            message = "set witness_policy or witness_policy_file, not both"
            raise _config_error("witness_policy_file", "witness_policy", message, self.witness_policy_file)
        field, text = "witness_policy", self.witness_policy
        if self.witness_policy_file is not None:
            field, text = "witness_policy_file", self._read_policy_file(self.witness_policy_file)
        if text is not None:
            try:
                self._parsed_witness_policy = parse_policy(text)
            except PolicyError as exc:
                raise _config_error(field, "witness_policy", str(exc), text[:80]) from None
        return self

    @staticmethod
    def _read_policy_file(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise _config_error(
                "witness_policy_file", "witness_policy", f"cannot read {path}: {reason}", path
            ) from None

    @property
    def parsed_witness_policy(self) -> WitnessPolicy | None:
        """The log's witness policy, parsed when the config was loaded; None when it has none."""
        return self._parsed_witness_policy


def _is_plain_http_url(value: str) -> bool:
    """http(s)://host[:port][/path], nothing that could carry credentials or change the request."""
    return re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~/\-]*)?", value) is not None


class CodefreshPipeline(_Strict):
    id: str = Field(min_length=1)
    name: str | None = None


class CodefreshAccount(_Strict):
    account_id: str = Field(min_length=1)
    account_name: str | None = None
    platform_url: str = "https://g.codefresh.io"
    pipelines: list[CodefreshPipeline] = Field(default_factory=list)
    all_pipelines: bool = False
    """Set by writing `pipelines: "*"` (or a "*" item): every pipeline of the account is allowed."""
    api_key: SecretStr | None = None
    """Codefresh API key: each signing's build is checked (FORMATS.md §9). An empty `${VAR}` means none."""
    api_url: str | None = None
    """Base URL of the Codefresh API; `builds_api_url` falls back to platform_url."""

    @model_validator(mode="before")
    @classmethod
    def _star_means_all(cls, data: Any) -> Any:
        if isinstance(data, dict):
            pipelines = data.get("pipelines")
            if pipelines == "*" or (isinstance(pipelines, list) and "*" in pipelines):
                rest = [] if pipelines == "*" else [p for p in pipelines if p != "*"]
                data = {**data, "pipelines": rest, "all_pipelines": True}
        return data

    @field_validator("platform_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
                raise ValueError("api_key contains control characters")
            return value or None
        return value

    @field_validator("api_url")
    @classmethod
    def _api_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _is_plain_http_url(value):
            raise ValueError("api_url must be an http(s) URL without credentials, query or fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _key_needs_a_url(self) -> CodefreshAccount:
        if self.api_key is not None and self.api_url is None and not _is_plain_http_url(self.platform_url):
            raise ValueError("api_key needs an http(s) api_url, or a platform_url that is one")
        return self

    @property
    def builds_api_url(self) -> str:
        """Where the builds API is asked: api_url, else platform_url."""
        return self.api_url or self.platform_url


class IdentityRule(_Strict):
    issuer: str
    identity_regexp: Regexp
    allow: list[Regexp] = Field(default_factory=list)


class WatchSettings(_Strict):
    issuers: list[str] = Field(default_factory=lambda: [CODEFRESH_ISSUER])
    codefresh: list[CodefreshAccount] = Field(default_factory=list)
    identities: list[IdentityRule] = Field(default_factory=list)

    def watched_issuers(self) -> frozenset[str]:
        """Issuers whose certificates are looked at: `issuers` plus those the rules name."""
        names = set(self.issuers) | {rule.issuer for rule in self.identities}
        if self.codefresh:
            names.add(CODEFRESH_ISSUER)
        return frozenset(names)


class AlertSink(_Strict):
    type: Literal["webhook", "slack", "pagerduty", "alertmanager", "log"]
    name: str | None = None
    url: str | None = None
    """webhook/slack: where to POST; alertmanager: its base URL (POST {url}/api/v2/alerts);
    pagerduty: the Events API v2 endpoint, empty for PagerDuty's own."""
    secret: SecretStr | None = None
    routing_key: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every request (e.g. `Authorization` for an Alertmanager behind a proxy); secret."""
    min_severity: Literal["info", "warning", "critical"] = "info"
    timeout: Duration = 10.0
    backoff_cap: Duration = Field(300.0, ge=1.0, le=86400.0)
    """Longest wait between two tries while the sink fails (and for an answer retrying cannot fix)."""
    resend_interval: Duration = Field(60.0, ge=1.0, le=3600.0)
    """alertmanager: how often a condition that lasts is sent again while it holds."""

    @field_validator("headers")
    @classmethod
    def _plain_headers(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not an HTTP header name")
            if _HEADER_VALUE_FORBIDDEN.search(value.get_secret_value()):
                raise ValueError(f"the value of header {name!r} holds a control character")  # value not echoed
        return headers

    @model_validator(mode="after")
    def _needs_url(self) -> AlertSink:
        if self.type in ("webhook", "slack", "alertmanager") and not self.url:
            raise ValueError(f"a {self.type} sink needs a url")
        if self.url and not re.match(r"^https?://[^/\s]+", self.url):
            raise ValueError("url must be an http(s) URL")  # not echoed: sink URLs may hold tokens
        if self.type == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty sink needs a routing_key")
        if self.url and "@" in urlsplit(self.url).netloc and "authorization" in {h.lower() for h in self.headers}:
            raise ValueError("give credentials either in the url or in an Authorization header, not both")
        return self

    @property
    def sink_name(self) -> str:
        """Stable name used in delivery rows and metrics."""
        return self.name or self.type


class ServerSettings(_Strict):
    listen: str = "127.0.0.1:9464"
    api_token: SecretStr | None = None

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError(f"{value!r} is not HOST:PORT")
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class CtLogSettings(_LogEndpoint):
    """A CT log of Fulcio to watch (DESIGN.md "ct_logs"): every certificate issued, used in Rekor or not."""

    api: Literal["rfc6962", "static"] = "rfc6962"

    witness_mode: ClassVar[str] = "enforce"

    @property
    def parsed_witness_policy(self) -> None:
        """CT logs have no witness policy (the follower of every log asks)."""
        return None


class GossipPeer(_Strict):
    """Another rekorwatch instance, asked for its checkpoints (GET {url}/api/v1/checkpoints)."""

    url: str
    token: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("url must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value


class GossipSettings(_Strict):
    """Comparing our verified checkpoints with what others saw (FORMATS.md §7): split views."""

    interval: Duration = 300.0
    peers: list[GossipPeer] = Field(default_factory=list)
    distributors: list[str] = Field(default_factory=list)
    """transparency-dev distributor API base URLs, e.g. https://api.transparency.dev"""

    @field_validator("distributors")
    @classmethod
    def _http_urls(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^https?://[^/\s]+", value):
                raise ValueError(f"{value!r} is not an http(s) URL")
        return [value.rstrip("/") for value in values]


class Settings(_Strict):
    database: str = "sqlite+aiosqlite:///rekorwatch.db"
    trust: TrustSettings = Field(default_factory=TrustSettings)
    logs: list[LogSettings] | None = None
    poll_interval: Duration = 10.0
    watch: WatchSettings = Field(default_factory=WatchSettings)
    alerts: list[AlertSink] = Field(default_factory=list)
    server: ServerSettings = Field(default_factory=ServerSettings)
    gossip: GossipSettings | None = None
    ct_logs: list[CtLogSettings] | None = None
    """Default: the trust root's CT logs valid now, from their head; [] turns CT watching off."""
    ct_grace: Duration = 600.0
    """A watched certificate in CT with no Rekor signing this long after its CT timestamp: unlogged_certificate."""

    @field_validator("database")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        """The URL as SQLAlchemy will read it; messages never echo it (it may hold a password)."""
        # Imported here: the decode worker loads the config's models but must not load a database layer.
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        usage = "use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST[:PORT]/DB"
        driver = value.partition("://")[0]
        if driver not in DATABASE_DRIVERS:
            shown = repr(driver) if driver.replace("+", "").isalnum() and len(driver) <= 40 else "this"
            raise ValueError(f"{shown} is not a supported database driver: {usage}")
        try:
            url = make_url(value)
            port = url.port
        except (ValueError, TypeError) as exc:
            why = str(exc).removeprefix("invalid literal for int() with base 10: ")
            raise ValueError(f"not a database URL ({why[:40]} is no port number?): {usage}") from None
        except ArgumentError:
            raise ValueError(f"not a database URL: {usage}") from None
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range (1-65535)")
        return value

    @field_validator("poll_interval")
    @classmethod
    def _not_too_often(cls, value: float, info: ValidationInfo) -> float:
        if (info.context or {}).get("from_file") and value < MIN_POLL_INTERVAL:
            raise ValueError(f"must be at least {MIN_POLL_INTERVAL:g}s: a log is not asked more often")
        return value

    @field_validator("alerts")
    @classmethod
    def _unique_sink_names(cls, sinks: list[AlertSink]) -> list[AlertSink]:
        """Delivery rows and metrics are keyed by sink name: two sinks sharing one would share deliveries."""
        seen: set[str] = set()
        errors = []
        for index, sink in enumerate(sinks):
            if sink.sink_name in seen:
                message = "two sinks are named '{name}'; give each a `name`"
                error = PydanticCustomError("duplicate_sink_name", message, {"name": sink.sink_name})
                errors.append(InitErrorDetails(type=error, loc=(index,), input=sink.sink_name))
            seen.add(sink.sink_name)
        if errors:
            # A ValidationError (not a ValueError) keeps the index in the path: `alerts[1]: ...`.
            raise ValidationError.from_exception_data("alerts", errors)
        return sinks


def substitute_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${NAME}` (or `${NAME:-default}`) with the environment's value; unset -> empty."""
    env = os.environ if environ is None else environ
    return _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(2) or ""), text)


def _yaml_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith(("function-", "literal[", "list[", "int", "str")):
            continue  # pydantic's union-branch labels, not YAML keys
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for error in exc.errors():
        path = _yaml_path(error["loc"])
        if error["type"] == "extra_forbidden":
            lines.append(f"{path}: {_unknown_key(error['loc'])}")
        else:
            lines.append(f"{path}: {error['msg'].removeprefix('Value error, ')}")
    return sorted(set(lines), key=lines.index)


def _unknown_key(location: tuple[int | str, ...]) -> str:
    """`unknown key 'poll_intervall' (did you mean 'poll_interval'?)`, or the keys allowed there."""
    key = str(location[-1])
    known = sorted(_model_at(location[:-1]).model_fields)
    shown = repr(key) if len(key) <= 40 else repr(key[:40] + "…")
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {shown} (did you mean {close[0]!r}?)"
    return f"unknown key {shown} (known here: {', '.join(known)})"


def _model_at(location: tuple[int | str, ...]) -> type[BaseModel]:
    """The settings model that holds the keys at a validation location (list indexes skipped)."""
    model: type[BaseModel] = Settings
    for part in location:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        inner = _model_in(field.annotation) if field is not None else None
        if inner is not None:
            model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((found for arg in typing.get_args(annotation) if (found := _model_in(arg))), None)


def _load_yaml(text: str) -> Any:
    """YAML -> Python, with the C parser where there is one (a 5 MB value takes 0.03 s, not 1 s)."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def parse_settings(text: str, environ: dict[str, str] | None = None) -> Settings:
    """A config file's text -> Settings, or ConfigError listing every problem with its YAML path."""
    try:
        raw = _load_yaml(substitute_env(text, environ))
    except yaml.YAMLError as exc:
        raise ConfigError([f"(file): not valid YAML: {' '.join(str(exc).split())}"]) from None
    except RecursionError:
        raise ConfigError(["(file): not valid YAML: nested too deep"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping of settings"])
    try:
        return Settings.model_validate(raw, context=FROM_FILE)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None


SECRET_KEYS = frozenset({"api_token", "secret", "routing_key", "token", "api_key"})
"""Keys whose value is a secret wherever they are; a sink's `url` is one too (it may hold a token)."""


def empty_secret_warnings(text: str, environ: dict[str, str] | None = None) -> list[str]:
    """`${NAME}` references in secrets that came out empty (the variable is unset or empty): the
    config is valid, but a webhook would go unsigned or the API open. One line each, with its path."""
    try:
        raw = _load_yaml(text)
    except (yaml.YAMLError, RecursionError):
        return []  # parse_settings reports it
    return [
        f"{path}: {value} is empty (is the environment variable set?){_EMPTY_MEANS.get(path.rpartition('.')[2], '')}"
        for path, value in _secret_values(raw, "")
        if _ENV_REF.search(value) and not substitute_env(value, environ).strip()
    ]


_EMPTY_MEANS = {
    "api_token": ": /api/* answers anyone who reaches server.listen",
    "secret": ": deliveries go unsigned",
}


def _secret_values(node: Any, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            is_secret = key in SECRET_KEYS or (key == "url" and path.startswith("alerts["))
            if is_secret and isinstance(value, str):
                found.append((child, value))
            else:
                found += _secret_values(value, child)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _secret_values(value, f"{path}[{index}]")
    return found


def config_path(explicit: str | None) -> Path | None:
    """The file to read: `-c`, else $REKORWATCH_CONFIG, else ./rekorwatch.yaml, else None (defaults)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    local = Path(DEFAULT_CONFIG_FILE)
    return local if local.exists() else None


def read_config(explicit: str | None = None) -> tuple[Settings, list[str]]:
    """The settings and the warnings about them (empty secrets); ConfigError when invalid."""
    path = config_path(explicit)
    if path is None:
        return Settings(), []
    try:
        with path.open(encoding="utf-8") as file:
            text = file.read(MAX_CONFIG_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([f"(file): cannot read {path}: {why}"]) from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError([f"(file): {path} is larger than {MAX_CONFIG_BYTES // (1024 * 1024)} MiB"])
    return parse_settings(text), empty_secret_warnings(text)
