"""The one typed place for settings: zones, halls, thresholds, where the lake and runs live.

Precedence: defaults < the project's ``kafer.toml`` < environment (``KAFER_LAKE``, ``KAFER_RUNS``)
< explicit arguments. The project folder is found the way git finds its root: the nearest folder,
from the working folder up, that holds ``kafer.toml`` or ``pyproject.toml``. So the CLI, papermill
and a notebook opened in JupyterLab from ``notebooks/`` all find the same lake: ``<project>/lake``
by default, paths in ``kafer.toml`` relative to its folder, paths given on the command line or in
the environment relative to the working folder. Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .errors import ConfigError

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
    #: A falhas export exported for some halls only holds (almost) no road-test defect: counting its
    #: period would make its cars known negatives. An export is taken as filtered, its period making
    #: no label known, when a complete export would show as few failures among its period's road tests
    #: less often than ``filtered_falhas_chance`` (binomial, at the failure rate the lake has seen)
    #: and its own rate is below ``filtered_falhas_rate_share`` of that rate (so a month that is
    #: merely better than usual is never taken for a filtered one).
    filtered_falhas_chance: float = 0.05
    filtered_falhas_rate_share: float = 0.5
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
    #: stacked with weights fitted on the validation cars), or ``auto`` (every family compared on the
    #: same time-ordered validation cars, the better one kept and the comparison written to the run).
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
                value = {k: list(v) for k, v in value.items()}
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


_TUPLE_FIELDS = {"post_road_sections", "budgets", "shift_start_hours"}


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
    if out.get("staging_dir"):
        out["staging_dir"] = _located(out["staging_dir"], path.parent)
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
    settings = Settings(lake=str(root / "lake"), runs=str(root / "runs"))
    path = Path(config_file) if config_file else root / CONFIG_FILE
    if config_file or path.is_file():
        settings = settings.replace(**_from_toml(path))
    cwd = Path(os.getcwd())
    given = {name: os.environ.get(f"KAFER_{name.upper()}") for name in ("lake", "runs")}
    given.update({name: value for name in ("lake", "runs") if (value := overrides.pop(name, None))})
    settings = settings.replace(**{name: _located(value, cwd) for name, value in given.items() if value})
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
    if not all(0 < b < 1 for b in settings.budgets) or not 0 < settings.operating_budget < 1:
        raise ConfigError("inspection budgets must lie between 0 and 1")
    if not 0 < settings.monitor_alpha < 1 or settings.threshold_tolerance <= 0:
        raise ConfigError("monitor_alpha must lie between 0 and 1 and threshold_tolerance must be positive")
    return settings
