"""The one typed place for settings: zones, halls, thresholds, where the lake and runs live.

Precedence: defaults < the project's ``kafer.toml`` < environment (``KAFER_LAKE``, ``KAFER_RUNS``, ``KAFER_LANG``)
< explicit arguments. The project folder is found the way git finds its root: the nearest folder,
from the working folder up, that holds ``kafer.toml`` or ``pyproject.toml``. So the CLI, papermill
and a notebook opened in JupyterLab from ``notebooks/`` all find the same lake: ``<project>/lake``
by default, paths in ``kafer.toml`` relative to its folder, paths given on the command line or in
the environment relative to the working folder. Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import ConfigError
from .i18n import language_code

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: The settings file of a project.
CONFIG_FILE = "kafer.toml"
#: What marks a project folder, nearest first.
PROJECT_MARKERS = (CONFIG_FILE, "pyproject.toml")

#: Model families Käfer can train: gradient boosting, a Keras dense network, or both stacked into
#: one calibrated ensemble.
FAMILIES = ("hgb", "keras", "ensemble")
#: What ``family`` may be set to: a family, or ``auto`` (compare them and keep the better).
FAMILY_CHOICES = FAMILIES + ("auto",)

#: Checkpoint codes of each zone whose dwell time is a feature (DATA.md defaults).
DEFAULT_ZONES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ZP5": ("R640", "R650", "R700", "R754"),
        "ZP5A": tuple(f"L{n}" for n in (534, 535, 536, 537, 538, 539, 541, 542, 543, 544, 545, 546, 547, 548)),
        "ZP6": ("M591", "M592", "M593", "M594", "M595", "M596", "M599", "M647", "M648", "M651", "M652",
                "M677", "M678", "M681", "M682"),
        "CAB": ("M619", "M643", "M644", "M655", "M656", "M673", "M674"),
        "ZP7": ("M695", "M698", "M701", "M702", "M704", "M711", "M712", "M721", "M722"),
    }
)

#: Halls before the road test, and the hall values that count for each (HALLE stripped, upper-cased).
DEFAULT_HALL_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "ZP5": ("ZP5",),
        "ZP5A": ("ZP5A",),
        "ZP6": ("ZP6", "ZP61", "ZP62", "ZP6Q"),
        "CAB": ("CAB",),
        "ZP7": ("ZP7",),
    }
)


@dataclass(frozen=True)
class Settings:
    """Everything configurable, frozen once built by :func:`load_settings`."""

    #: Where the datalake lives: a folder or an fsspec URL (default: ``<project>/lake``).
    lake: str = "lake"
    #: Folder of run records (default: ``<project>/runs``).
    runs: str = "runs"
    #: Hall whose defects make the label.
    label_hall: str = "ROD"
    #: Status code of the first road-test checkpoint: it and everything after are left out.
    road_test_code: str = "G710"
    zones: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_ZONES)
    hall_groups: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_HALL_GROUPS)
    #: Resultados sections measured after the road test (prefix of NAME), never used.
    post_road_sections: tuple[str, ...] = ("SECTION_ZP8_",)
    #: Two falhas files whose periods are at most this many hours apart cover the gap between them.
    falhas_gap_hours: float = 24.0
    #: A road test must lie this many hours before the end of the falhas period for its label to be
    #: known: a defect found on the road can be logged after the export was cut.
    label_maturity_hours: float = 24.0
    #: A falhas export cut by hall holds defects of other halls and no road-test defect: counting its
    #: period would make its cars known negatives. An export is taken as filtered, its period making
    #: no label known, when it holds defects of other halls and its road-test failures are absent or
    #: implausibly few: below ``filtered_falhas_rate_share`` of the failure rate the lake's other
    #: exports show, and fewer than a complete export would show with a chance of
    #: ``filtered_falhas_chance`` (binomial, at that rate). A tenth: the real exports show 6-8 %, a
    #: month that fails half or a quarter as often keeps its labels (docs/data.md says why).
    filtered_falhas_chance: float = 0.05
    filtered_falhas_rate_share: float = 0.1
    #: The failure rate assumed before the lake has seen many road tests (DATA.md: 6-8 %, its low end
    #: so that a complete export is not taken as filtered); the rate the lake has seen is pulled
    #: towards it with the weight of ``expected_failure_rate_road_tests`` road tests.
    expected_failure_rate: float = 0.06
    expected_failure_rate_road_tests: int = 1000
    #: Cars whose features a merge or a rebuild builds at a time: bounds memory to one batch's raw rows
    #: (~880 resultados rows a car) however many cars an upload or the lake holds.
    merge_batch_cars: int = 5000
    #: Share of the labelled cars, latest by production time, kept for evaluation.
    eval_fraction: float = 0.2
    #: Fewest evaluation cars, and failures among them, that neither model saw in training for the
    #: candidate and production to be compared; with fewer the comparison says it cannot judge.
    min_compare_cars: int = 200
    min_compare_failures: int = 20
    #: Inspection budgets (share of cars tested, riskiest first) reported in the comparison.
    budgets: tuple[float, ...] = (0.05, 0.10, 0.20)
    #: The budget whose threshold is the operating point (confusion matrices, predict's flag).
    operating_budget: float = 0.10
    bootstrap_rounds: int = 1000
    #: Chance that the track record warns of a model that still keeps its promise (shared by the
    #: figures tested), and that the drift table calls an unchanged input moved (shared by the inputs).
    monitor_alpha: float = 0.05
    #: The share of cars at or above the operating threshold has drifted far from the budget when it
    #: lies outside ``operating_budget * (1 ± threshold_tolerance)`` (and its interval leaves the budget out).
    threshold_tolerance: float = 0.5
    #: Model family trained when none is named: ``hgb`` (the default: on held-out uploads the ensemble
    #: earned nothing beyond noise over it, docs/models.md), ``keras``, ``ensemble`` (both, their log-odds
    #: stacked with weights fitted on held-out training cars neither learned on), or ``auto`` (every
    #: family compared on the same time-ordered validation cars, the better one kept and the comparison
    #: written to the run).
    family: str = "hgb"
    #: A column learned from the data (a test's NOKs, a defect text, a station, a repeated checkpoint,
    #: a configuration category) is used only when at least this many training cars have it.
    fact_min_cars: int = 20
    #: At most this many such columns of each kind, the most common first.
    fact_max_columns: int = 300
    #: Hours at which the plant's shifts start (shift 1 starts at the first).
    shift_start_hours: tuple[int, ...] = (6, 14, 22)
    seed: int = 20240520
    #: Seconds a decision or retrain waits for another one to release the lake's lock.
    lock_timeout: float = 30.0
    #: A lock on an object store (S3) whose holder, on another machine, has not renewed its heartbeat
    #: for this many seconds (by the store's clock) counts as abandoned by a crashed process. A holder on
    #: this machine is judged by its process, and local lakes hold OS locks that die with their owner:
    #: neither waits for this.
    lock_stale_after: float = 120.0
    #: The lake is used from this machine only: a lake folder on a share whose locks stay on this
    #: machine (NFS mounted nolock or local_lock, SMB mounted nobrl, sshfs) is then accepted. Left
    #: false, such a lake is refused, since two machines could change it at once.
    single_machine: bool = False
    #: Rows per xlsx sheet in the plant's exports, top rows included (Excel's limit is 1,048,576).
    sheet_rows: int = 1_048_575
    #: Earliest plausible DATA (ISO date): an upload holding an earlier date is refused.
    dates_from: str = "2000-01-01"
    #: Latest plausible DATA, in days after the upload is checked (1: tomorrow); later dates are refused.
    dates_ahead_days: float = 1.0
    #: Local folder where an upload's checked rows wait, as Parquet, until it is landed (about the
    #: size of its files again); empty for the system's temporary folder.
    staging_dir: str = ""

    # -- The decision desk (kafer desk, kafer users): who signs in, and how it is served -------------
    #: Folder outside the lake for the desk's users file and cookie secret, written only by the desk's
    #: administrators (made private, 0700, on first use); empty: ``~/.config/kafer/desk`` of the
    #: account that runs the desk (``kafer\desk`` under ``%APPDATA%`` on Windows).
    desk_state_dir: str = ""
    #: Addresses (or networks, ``10.0.4.0/29``) of the reverse proxies that stand for the plant's
    #: single sign-on: only a connection from one of them may say who is signed in. Empty: no single
    #: sign-on (local accounts, else one person on this computer).
    desk_proxy_addresses: tuple[str, ...] = ()
    #: Request headers in which the proxy passes the signed-in person's name and their groups.
    desk_user_header: str = "X-Forwarded-User"
    desk_groups_header: str = "X-Forwarded-Groups"
    #: Role (approver, analyst or viewer) of each group the proxy passes; a person in several gets
    #: the rights of each.
    desk_group_roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Role of each person by the name the proxy passes, beside or instead of the groups.
    desk_user_roles: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Role of a person the proxy signs in whom neither table names: empty refuses them (in words);
    #: ``viewer`` lets everyone the sign-on admits read the desk.
    desk_default_role: str = ""
    #: Desk pages one person may have open at once (each page is a kernel of ~340 MB or more): a page
    #: beyond it is refused in words until one is closed or left idle long enough to be closed.
    desk_kernels_per_person: int = 3
    #: A desk page with no activity for this many minutes is closed (its kernel shut down, even
    #: with the tab still open); reloading the page opens it again.
    desk_idle_minutes: float = 60.0
    #: Hours a sign-in with a local account lasts before the desk asks for the password again.
    desk_session_hours: float = 12.0
    #: Seconds an address must wait after a failed sign-in before the next attempt is checked; the
    #: wait doubles with each further failure from that address, up to ``desk_signin_wait_max``.
    #: Per address, never per account: nobody can lock an approver out.
    desk_signin_wait: float = 1.0
    desk_signin_wait_max: float = 60.0
    # -- The plant's language, and uploads received through the desk (issue 26: kafer.i18n, kafer.uploads) --
    #: Language of messages, numbers and dates: ``en`` or ``pt-BR`` (1.234,5; 06/12/2026). ``KAFER_LANG``
    #: overrides it; the desk lets each person choose their own.
    language: str = "en"
    #: Folder where the desk's uploads arrive in pieces, one folder per upload, outside the lake and the
    #: notebooks; empty for ``<runs>/uploads`` (on disk beside the run records: a system temporary
    #: folder may be memory, and a month is 60-125 MB).
    upload_dir: str = ""
    #: Largest file, and largest upload (all its files), a person may send, in MB (10^6 bytes): refused
    #: when announced, before a byte is written. A month's largest file is about 65 MB, a month 60-125 MB.
    upload_max_file_mb: float = 300.0
    upload_max_mb: float = 800.0
    #: Largest unpacked size of one workbook (its zip's content) or csv.gz, in MB: measured by unpacking
    #: it as a stream, before it is read, so that a zip or gzip bomb is refused before it fills memory
    #: or the disk. A month's files unpack 10-14 times (a 63 MB workbook: 866 MB).
    upload_max_unpacked_mb: float = 4000.0
    #: Hours an upload lives after its last piece (or its check) before it is removed.
    upload_expire_hours: float = 24.0
    # -- Inspection lists: their record, the audit share, the shadow and its bar; people's ids --
    #: Share of each inspection list's cars at their road test picked at random for the extended
    #: inspection whatever their risk (the audit), marked on the list and in its record: what the
    #: list misses, and its lift over random picking, can then be measured on cars it did not choose
    #: even once the list is acted on. 0 picks none.
    audit_share: float = 0.02
    #: Lists are made and recorded but marked not acted on (the shadow): inspectors keep picking
    #: cars as before, and the lists' outcomes say whether acting on them would pay. ``kafer predict
    #: --shadow`` / ``--acted-on`` decide for one list.
    shadow: bool = False
    #: The shadow's first day (plant time, YYYY-MM-DD); empty: the day of the first shadow list's data.
    shadow_from: str = ""
    #: Weeks of lists the shadow runs before its go/no-go verdict.
    shadow_weeks: int = 4
    #: The go/no-go bar, set before the shadow begins: the list goes ahead when the low end of the 95 %
    #: interval of its lift over random picking (failures found among its flagged cars against the same
    #: number picked at random) reaches it. Each shadow list records the bar it was made under; the
    #: verdict keeps the one of the shadow's first list.
    shadow_bar: float = 2.0
    #: Fewest road-test failures among the shadow's cars with a known outcome before a verdict.
    shadow_min_failures: int = 20
    #: The secret key that pseudonymizes people's ids (falhas USUARIO) when they are landed: a file
    #: outside the lake, made on first use (mode 0600). Every machine that lands exports into one
    #: lake needs the same key (copy the file); the lake keeps its fingerprint to check it.
    person_key_file: str = ".kafer/person-ids.key"
    # -- which falhas exports make labels known (the analyst's word over the filtered-falhas rule) --
    #: Falhas exports (file names as ingest lists them) taken as complete whatever they hold: their
    #: periods make labels known even when the rule would take them as cut by hall.
    falhas_complete: tuple[str, ...] = ()
    #: Falhas exports taken as filtered (cut by hall, or otherwise incomplete) whatever they hold:
    #: their periods make no label known.
    falhas_filtered: tuple[str, ...] = ()
    # -- The desk's pages for the whole loop (issue 26: kafer.desk.loop) --
    #: Size of the pieces the desk's page sends a file in, in MB (10^6 bytes; at most 16): each piece is
    #: one request, held in the server's memory while it is written.
    desk_piece_mb: float = 4.0

    @property
    def lock_options(self) -> dict:
        """How the lake's locks wait and judge (:func:`kafer.locks.hold`'s keywords)."""
        return {"timeout": self.lock_timeout, "stale_after": self.lock_stale_after,
                "single_machine": self.single_machine}

    def replace(self, **changes) -> "Settings":
        """Return a copy with ``changes`` applied (``None`` values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        """Every setting as JSON-ready values (a run's snapshot)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Mapping):
                value = {k: list(v) if isinstance(v, tuple) else v for k, v in value.items()}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, values: Mapping) -> "Settings":
        """The settings a snapshot written by :meth:`to_dict` holds.

        Raises
        ------
        ConfigError
            When the snapshot names a setting this Käfer does not know.
        """
        return _checked(cls().replace(**_typed(dict(values), "a settings snapshot")))


_TUPLE_FIELDS = {"post_road_sections", "budgets", "shift_start_hours", "falhas_complete", "falhas_filtered",
                 "desk_proxy_addresses"}
#: The desk's roles (what each may do is :mod:`kafer.desk.rights`' business).
DESK_ROLES = ("approver", "analyst", "viewer")


def project_root(start: str | os.PathLike | None = None) -> Path:
    """The project folder: the nearest folder at or above ``start`` (the working folder) that holds
    ``kafer.toml`` or ``pyproject.toml``; ``start`` itself when there is none."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).is_file() for marker in PROJECT_MARKERS):
            return folder
    return here


def _typed(values: dict, where: str) -> dict:
    """Settings read from a file, with unknown names refused and lists made tuples."""
    known = {f.name for f in dataclasses.fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    out = dict(values)
    for name in ("zones", "hall_groups"):
        if name in out:
            out[name] = MappingProxyType({str(k): tuple(v) for k, v in out[name].items()})
    for name in ("desk_group_roles", "desk_user_roles"):
        if name in out:
            out[name] = MappingProxyType({str(k): str(v) for k, v in out[name].items()})
    for name in _TUPLE_FIELDS & set(out):
        out[name] = tuple(out[name])
    return out


def _from_toml(path: Path) -> dict:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read settings: {exc}") from None
    out = _typed(raw.get("kafer", raw), str(path))
    for name in ("lake", "runs"):
        if name in out:
            out[name] = _located(out[name], path.parent)
    for name in ("staging_dir", "upload_dir", "person_key_file", "desk_state_dir"):
        if out.get(name):
            out[name] = _located(out[name], path.parent)
    return out


def _located(place: str, base: Path) -> str:
    """A local path made absolute against ``base``; an fsspec URL kept as it is."""
    place = str(place)
    return place if "://" in place else str((base / os.path.expanduser(place)).resolve())


def load_settings(*, config_file: str | os.PathLike | None = None, **overrides) -> Settings:
    """Build the settings: defaults, then ``kafer.toml``, then environment, then ``overrides``.

    Parameters
    ----------
    config_file : path, optional
        Settings file to read; defaults to the project's ``kafer.toml`` when there is one.
    **overrides
        Explicit values (``None`` or ``""`` means "not given"); relative ``lake`` and ``runs``
        paths are taken relative to the working folder.

    Raises
    ------
    ConfigError
        When the settings file is unreadable, names an unknown setting, or a value is out of range.
    """
    root = project_root()
    settings = Settings(lake=str(root / "lake"), runs=str(root / "runs"),
                        person_key_file=str(root / Settings.person_key_file))
    path = Path(config_file) if config_file else root / CONFIG_FILE
    if config_file or path.is_file():
        settings = settings.replace(**_from_toml(path))
    cwd = Path(os.getcwd())
    given = {name: os.environ.get(f"KAFER_{name.upper()}") for name in ("lake", "runs")}
    given.update({name: value for name in ("lake", "runs") if (value := overrides.pop(name, None))})
    settings = settings.replace(**{name: _located(value, cwd) for name, value in given.items() if value})
    settings = settings.replace(language=os.environ.get("KAFER_LANG") or None)
    return _checked(settings.replace(**{k: v for k, v in overrides.items() if v != ""}))


def _checked(settings: Settings) -> Settings:
    if not 0 < settings.eval_fraction < 1:
        raise ConfigError(f"eval_fraction must lie between 0 and 1, not {settings.eval_fraction}")
    if settings.family not in FAMILY_CHOICES:
        raise ConfigError(f"family must be one of {', '.join(FAMILY_CHOICES)}, not {settings.family!r}")
    if settings.fact_min_cars < 1 or settings.fact_max_columns < 0:
        raise ConfigError("fact_min_cars must be at least 1 and fact_max_columns at least 0")
    hours = settings.shift_start_hours
    if not hours or list(hours) != sorted(set(hours)) or not all(0 <= h < 24 for h in hours):
        raise ConfigError(f"shift_start_hours must be distinct hours 0-23 in increasing order, not {hours}")
    shares = (settings.filtered_falhas_chance, settings.filtered_falhas_rate_share, settings.expected_failure_rate)
    if not all(0 < share < 1 for share in shares) or settings.expected_failure_rate_road_tests < 0:
        raise ConfigError("filtered_falhas_chance, filtered_falhas_rate_share and expected_failure_rate must lie "
                          "between 0 and 1, expected_failure_rate_road_tests must not be negative")
    both = sorted(set(settings.falhas_complete) & set(settings.falhas_filtered))
    if both:
        raise ConfigError(f"falhas_complete and falhas_filtered both name {', '.join(both)}: say whether it is "
                          "complete or filtered in one of them only")
    if not all(0 < b < 1 for b in settings.budgets) or not 0 < settings.operating_budget < 1:
        raise ConfigError("inspection budgets must lie between 0 and 1")
    if not 0 < settings.monitor_alpha < 1 or settings.threshold_tolerance <= 0:
        raise ConfigError("monitor_alpha must lie between 0 and 1 and threshold_tolerance must be positive")
    settings = settings.replace(language=language_code(settings.language))
    caps = (settings.upload_max_file_mb, settings.upload_max_mb, settings.upload_max_unpacked_mb,
            settings.upload_expire_hours)
    if not all(cap > 0 for cap in caps) or settings.upload_max_file_mb > settings.upload_max_mb:
        raise ConfigError("upload_max_file_mb, upload_max_mb, upload_max_unpacked_mb and upload_expire_hours must be "
                          "positive, and upload_max_file_mb at most upload_max_mb")
    if not 0 <= settings.audit_share < 1:
        raise ConfigError(f"audit_share must lie between 0 (no audit) and 1, not {settings.audit_share}")
    if settings.shadow_weeks < 1 or settings.shadow_bar <= 0 or settings.shadow_min_failures < 1:
        raise ConfigError("shadow_weeks and shadow_min_failures must be at least 1 and shadow_bar positive")
    if settings.shadow_from:
        try:
            dt.date.fromisoformat(settings.shadow_from)
        except ValueError:
            raise ConfigError(f"shadow_from must be a day written YYYY-MM-DD, not {settings.shadow_from!r}") from None
    if not settings.person_key_file:
        raise ConfigError("person_key_file must name a file outside the lake, for the key that pseudonymizes "
                          "people's ids")
    return _checked_desk(settings)


def _checked_desk(settings: Settings) -> Settings:
    """The desk's block: roles known, proxy addresses real addresses, limits positive."""
    import ipaddress
    import re

    for table in ("desk_group_roles", "desk_user_roles"):
        wrong = {k: v for k, v in getattr(settings, table).items() if v not in DESK_ROLES}
        if wrong:
            raise ConfigError(f"{table}: {', '.join(f'{k!r} = {v!r}' for k, v in wrong.items())}: a role is one of "
                              f"{', '.join(DESK_ROLES)}")
    if settings.desk_default_role not in ("", *DESK_ROLES):
        raise ConfigError(f"desk_default_role must be empty (refuse people no table names) or one of "
                          f"{', '.join(DESK_ROLES)}, not {settings.desk_default_role!r}")
    for address in settings.desk_proxy_addresses:
        try:
            ipaddress.ip_network(str(address), strict=False)
        except ValueError:
            raise ConfigError(f"desk_proxy_addresses: {address!r} is not an IP address or network (e.g. 10.0.4.7 "
                              "or 10.0.4.0/29); name the proxy by its address, not its host name") from None
    for header in ("desk_user_header", "desk_groups_header"):
        if not re.fullmatch(r"[A-Za-z0-9-]+", getattr(settings, header)):
            raise ConfigError(f"{header} must be a header name such as X-Forwarded-User, not "
                              f"{getattr(settings, header)!r}")
    if settings.desk_proxy_addresses and not (settings.desk_group_roles or settings.desk_user_roles
                                              or settings.desk_default_role):
        raise ConfigError("desk_proxy_addresses is set but nobody the proxy signs in could get a role: set "
                          "desk_group_roles (group = role), desk_user_roles (name = role) or desk_default_role")
    if settings.desk_kernels_per_person < 1:
        raise ConfigError("desk_kernels_per_person must be at least 1")
    if not (settings.desk_idle_minutes > 0 and settings.desk_session_hours > 0):
        raise ConfigError("desk_idle_minutes and desk_session_hours must be positive")
    if not 0 <= settings.desk_signin_wait <= settings.desk_signin_wait_max:
        raise ConfigError("desk_signin_wait must lie between 0 and desk_signin_wait_max")
    if not 0 < settings.desk_piece_mb <= 16:
        raise ConfigError("desk_piece_mb must lie above 0 and at most 16 (MB a piece of an upload may be)")
    return settings
