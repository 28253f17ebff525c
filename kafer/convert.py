"""Convert the models an older Käfer kept (a pickle, a ``.keras`` file) into arrays that load without running code.

``kafer models convert`` is run once, by whoever administers the lake, after upgrading Käfer: until
then a model kept by an older Käfer is refused wherever it would score (its record is still read).
For each version whose artifact is of format 1 or 2, it

1. reads the boosting member through an unpickler that accepts only the scikit-learn and NumPy
   types a Käfer boosting model is made of (:data:`TRUSTED`), refusing anything else, and only
   with the scikit-learn version that pickled it; the network member through Keras's safe mode;
2. turns them into arrays (:mod:`kafer.scorers`) and checks, on up to :data:`CHECK_CARS` of the
   lake's latest cars, that the arrays give the probabilities the old estimators give;
3. writes the new artifact under a new immutable key and points the version at it (the registry's
   lock held): its entry and registered hash, training cars, kept scores and the decisions naming
   it stay as they were; the old artifact stays where it was, no longer read.

This is the one moment a pickle from the lake is read, by a person who chose to: convert a lake
whose writers you trust, and keep its models' artifacts writable by the desk's service account only.
"""

from __future__ import annotations

import getpass
import io
import pickle
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import catalog, registry
from .config import Settings, load_settings
from .errors import KaferError, ModelError
from .facts import empty_facts
from .lake import Lake, utc_now_iso
from .model import FORMAT, PICKLED_FORMATS, ArtifactParts, Model, artifact_parts, assemble, load_model
from .readers import Progress
from .scorers import Network, Trees

#: The (module, name) pairs a pickled Käfer boosting model refers to: scikit-learn's gradient boosting,
#: its loss, binning and category encoding, and NumPy's arrays and random generators. A pickle naming
#: anything else was not made by Käfer and is not read. NumPy 1 and 2 name their core differently.
TRUSTED = frozenset({
    ("builtins", "slice"), ("functools", "partial"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy", "float64"),
    ("numpy._core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pcg64", "PCG64"), ("numpy.random._mt19937", "MT19937"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__generator_ctor"),
    ("numpy.random._pickle", "__randomstate_ctor"), ("numpy.random.mtrand", "RandomState"),
    ("numpy.random.bit_generator", "SeedSequence"), ("numpy.random.bit_generator", "__pyx_unpickle_SeedSequence"),
    ("sklearn._loss._loss", "CyHalfBinomialLoss"), ("sklearn._loss.link", "Interval"),
    ("sklearn._loss.link", "LogitLink"), ("sklearn._loss.loss", "HalfBinomialLoss"),
    ("sklearn.compose._column_transformer", "ColumnTransformer"),
    ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper"),
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting", "HistGradientBoostingClassifier"),
    ("sklearn.ensemble._hist_gradient_boosting.predictor", "TreePredictor"),
    ("sklearn.preprocessing._encoders", "OrdinalEncoder"),
    ("sklearn.preprocessing._function_transformer", "FunctionTransformer"),
    ("sklearn.preprocessing._label", "LabelEncoder"), ("sklearn.utils.validation", "check_array"),
})
#: Where a format-1 or -2 artifact kept each family's estimator.
OLD_FILES = {"hgb": "estimator.pkl", "keras": "estimator.keras"}
#: The lake's latest cars on which a conversion is checked, at most.
CHECK_CARS = 2000
#: Largest difference allowed between old and new probabilities: the trees' are equal bit for bit, the
#: network's to float32 rounding.
TOLERANCE = {"hgb": 1e-12, "keras": 1e-5}


@dataclass(frozen=True)
class Conversion:
    """What ``kafer models convert`` did with one model version.

    ``outcome`` is ``converted``, ``already safe`` or ``refused``; ``words`` says what happened and,
    when refused, what to do; ``cars`` and ``difference`` are the check's (cars scored both ways,
    largest difference between their probabilities).
    """

    version: str
    family: str
    outcome: str
    words: str
    cars: int = 0
    difference: float | None = None


def convert_models(lake: Lake, *, by: str | None = None, settings: Settings | None = None,
                   progress: Progress | None = None) -> list[Conversion]:
    """Convert every model version of the lake whose artifact an older Käfer wrote (see the module).

    Parameters
    ----------
    lake : Lake
    by : str, optional
        Who converts (recorded); the operating system's user name when omitted.
    settings : Settings, optional
        For the registry lock's timeout.
    progress : callable, optional
        Told about each version as it is done.

    Returns
    -------
    list of Conversion
        One per model version, oldest first.
    """
    settings = settings or load_settings()
    by = by or getpass.getuser()
    cars = _check_cars(lake)
    done = []
    for entry in registry.versions(lake):
        try:
            result = convert_version(lake, entry, cars=cars, by=by, settings=settings)
        except KaferError as exc:
            result = Conversion(entry["version"], entry.get("family") or "?", "refused",
                                f"{_named(entry)}: not converted: {exc}")
        if progress:
            progress(result.words)
        done.append(result)
    return done


def convert_version(lake: Lake, entry: dict, *, cars: tuple[pd.DataFrame, Any], by: str,
                    settings: Settings) -> Conversion:
    """Convert one version (its registry ``entry``); checked on ``cars`` (a curated table and its facts).

    Raises
    ------
    ModelError
        When its pickle names a type outside :data:`TRUSTED`, was made by another scikit-learn, or
        the arrays do not give the old estimators' probabilities.
    """
    version = entry["version"]
    data = registry.load_artifact(lake, version)
    parts = artifact_parts(data)
    if parts.format == FORMAT:
        return Conversion(version, parts.family, "already safe",
                          f"{_named(entry)}: already arrays and JSON (format {FORMAT}), nothing to do")
    if parts.format not in PICKLED_FORMATS:
        raise ModelError(f"its artifact is of format {parts.format}, which this Käfer does not know")
    old = {family: _old_estimator(family, parts) for family in parts.families}
    new = {family: Trees.from_sklearn(est) if family == "hgb" else Network.from_keras(est)
           for family, est in old.items()}
    replaced = (catalog.artifact_pointer(lake, version) or entry)["sha256"]
    record = {"from_format": parts.format, "from_sha256": replaced, "converted_at": utc_now_iso(), "by": by}
    model = assemble(parts, new, meta={**parts.meta, "converted": record})
    checked, difference = _checked(model, old, cars)
    artifact = model.to_bytes()
    if checked and not np.array_equal(load_model(artifact).predict_proba(*cars), model.predict_proba(*cars)):
        raise ModelError("the converted artifact, read back, does not score as it was written")
    from . import __version__

    pointer = registry.replace_artifact(lake, version, artifact, {
        **record, "kafer": __version__, "checked_on_cars": checked, "largest_difference": difference},
        replaces=replaced, settings=settings)
    kept = len(catalog.kept_score_versions(lake, version))
    named = sum(1 for d in registry.decisions(lake) if version in (d.get("before"), d.get("after"), d.get("candidate")))
    what = {1: "a pickle (boosting, without facts)", 2: "a pickle and a .keras file" if len(parts.families) > 1
            else ("a pickle" if parts.families == ("hgb",) else "a .keras file")}[parts.format]
    check = (f"on {checked:,} of the lake's cars the arrays give the old estimators' probabilities (largest "
             f"difference {difference:.1e})" if checked else "the lake holds no car to check it on")
    words = (f"{_named(entry)}: converted from format {parts.format} ({what}) to format {FORMAT} (arrays and JSON, "
             f"read without running code); {check}. Its registry entry and registered hash, training cars, "
             f"{kept} set{'s' if kept != 1 else ''} of kept scores and the {named} decision{'s' if named != 1 else ''} "
             f"naming it are unchanged; the old artifact stays at {catalog.original_artifact_key(version)}, no longer "
             f"read; the new one is {pointer['key']}.")
    return Conversion(version, parts.family, "converted", words, checked, difference)


def _named(entry: dict) -> str:
    status = entry.get("status")
    return f"{entry['version']} ({entry.get('family') or '?'}{', ' + status if status else ''})"


def _old_estimator(family: str, parts: ArtifactParts) -> Any:
    """The estimator an older Käfer kept for ``family``: the boosting pickle through :data:`TRUSTED` only
    and only with the scikit-learn that wrote it; the network through Keras's safe mode."""
    blob = parts.files.get(OLD_FILES[family])
    if blob is None:
        raise ModelError(f"its artifact holds no {OLD_FILES[family]} for the {family} member")
    recorded = _member_meta(parts, family).get("versions") or parts.meta.get("versions") or {}
    if family == "hgb":
        import sklearn

        made_with = recorded.get("scikit-learn")
        if made_with != sklearn.__version__:
            raise ModelError(f"its boosting member was pickled by scikit-learn {made_with or 'of an unknown version'} "
                             f"and this Käfer has {sklearn.__version__}: scikit-learn does not promise a pickle reads "
                             f"the same under another version. Convert where scikit-learn {made_with} is installed "
                             f"(this Käfer in a venv with `pip install scikit-learn=={made_with}`), or retrain")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return _TrustedUnpickler(io.BytesIO(blob)).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
                    ValueError) as exc:
                raise ModelError(f"its boosting pickle cannot be read ({exc!r}): retrain") from None
    from .model import _tensorflow

    keras, _ = _tensorflow()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / OLD_FILES[family]
        path.write_bytes(blob)
        try:
            return keras.saving.load_model(path, compile=False, safe_mode=True)
        except Exception as exc:  # Keras raises many kinds on a file it cannot read
            raise ModelError(f"its network cannot be read by Keras {keras.__version__} in safe mode "
                             f"({type(exc).__name__}: {exc}); it was saved with Keras {recorded.get('keras')}") from None


def _member_meta(parts: ArtifactParts, family: str) -> dict:
    return next((m for m in parts.members if m["family"] == family), {})


class _TrustedUnpickler(pickle.Unpickler):
    """An unpickler that builds only the types in :data:`TRUSTED`."""

    def find_class(self, module: str, name: str):
        if (module, name) not in TRUSTED:
            raise ModelError(f"its boosting pickle names {module}.{name}, which is not one of the scikit-learn and "
                             "NumPy types a Käfer boosting model is made of: it was not written by Käfer and is not "
                             "read; retrain, and find out who wrote the lake's models")
        return super().find_class(module, name)


def _check_cars(lake: Lake) -> tuple[pd.DataFrame, Any]:
    """The lake's latest cars (at most :data:`CHECK_CARS`) and their facts, to check conversions on."""
    version = catalog.current_version(lake)
    if version is None:
        return pd.DataFrame(), None
    table = catalog.features(lake, version)
    table = table.sort_values("produced_at", kind="stable").tail(CHECK_CARS).reset_index(drop=True)
    if not catalog.has_facts(lake, version):
        return table, empty_facts()
    import pyarrow as pa

    return table, catalog.facts(lake, version, cars=pa.array(table["KNR"].astype(str), pa.string()))


def _checked(model: Model, old: dict, cars: tuple[pd.DataFrame, Any]) -> tuple[int, float | None]:
    """How many cars the converted members were checked on, and their largest difference from the old ones.

    Raises
    ------
    ModelError
        When a member's probabilities differ by more than :data:`TOLERANCE`, or the cars lack its inputs.
    """
    table, facts = cars
    if table.empty:
        return 0, None
    raw = model.preprocessing.raw(model.inputs(table, facts))
    members = model.estimator if isinstance(model.estimator, tuple) else (model,)
    largest = 0.0
    for member in members:
        if member.family == "hgb":
            before = old["hgb"].predict_proba(model.preprocessing.matrix_of(raw))[:, 1]
            after = member.estimator.predict(model.preprocessing.matrix_of(raw))
        else:
            scaled = model.preprocessing.scaled_of(raw, dtype=np.float32)
            before = np.asarray(old["keras"](scaled, training=False), dtype=float)[:, 0]
            after = member.estimator.predict(scaled)
        difference = float(np.max(np.abs(after - before))) if len(raw) else 0.0
        if difference > TOLERANCE[member.family]:
            raise ModelError(f"its {member.family} member as arrays differs from the old one by up to {difference:.1e} "
                             "on the lake's cars: not converted; retrain")
        largest = max(largest, difference)
    return len(raw), largest


def conversion_summary(done: list[Conversion]) -> str:
    """The conversions in a sentence: how many converted, already safe, refused."""
    count = {k: sum(1 for c in done if c.outcome == k) for k in ("converted", "already safe", "refused")}
    if not done:
        return "The lake holds no model version: nothing to convert."
    text = (f"{count['converted']} model version{'s' if count['converted'] != 1 else ''} converted, "
            f"{count['already safe']} already in the safe format, {count['refused']} refused.")
    if count["refused"]:
        text += (" A refused version still refuses to score (its record is read); convert it as its line says, or "
                 "retrain and keep a new model.")
    return text
