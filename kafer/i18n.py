"""The plant's language: messages, numbers and dates in English or Brazilian Portuguese (pt-BR).

English text is the message id, gettext style: ``tr("{cars} cars read", cars=number(n))`` gives the
translation in the current language with the values filled in, or the English text itself. The
translations live in ``kafer/locales/<locale>/LC_MESSAGES/kafer.po``, committed as text and read at
run time with Babel (compiled in memory, so a clean clone needs no compile step); a message with no
translation yet reads in English.

The current language is a context variable, so deep code asks :func:`current` instead of being
handed a language: :func:`using` sets it for a block (the CLI for the whole command, from the
settings' ``language``; the desk per request, from a person's choice). Where nobody set it (a new
thread, a notebook's kernel) it is ``$KAFER_LANG``, else English; ``using(..., environ=True)`` sets
that variable too, so threads and child processes speak the same language.

Numbers, percentages and dates go through Babel's CLDR data: ``1.234,5``, ``12,5 %``, ``06/12/2026``
and ``06/12/2026 14:05`` in pt-BR; ``1,234.5``, ``12.5%``, ``2026-12-06`` and ``2026-12-06 14:05`` in
English, as Käfer wrote them before.

``make messages`` lists the marked messages a catalog lacks, adds them to it untranslated and drops
those no code marks any more (:func:`main`).
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import datetime as dt
import functools
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: Languages Käfer speaks, as BCP 47 tags (what a setting, a cookie or ``KAFER_LANG`` holds).
LANGUAGES = ("en", "pt-BR")
#: The language of the message ids, and of every text until a setting says otherwise.
DEFAULT = "en"
#: The environment variable that names the language where no context set one (kernels, threads).
ENVIRONMENT = "KAFER_LANG"
#: Where the catalogs live: ``<LOCALES>/<locale>/LC_MESSAGES/kafer.po``.
LOCALES = Path(__file__).resolve().parent / "locales"
DOMAIN = "kafer"
#: The functions that mark a message for translation: their first argument is the message id
#: (``ntr``: the first two, singular and plural), a literal string.
MARKERS = {"tr": 1, "ntr": 2, "mark": 1}

#: Babel's locale of each language.
_LOCALE = {"en": "en", "pt-BR": "pt_BR"}
#: How each language writes a share and a moment (English: as Käfer always did).
_PERCENT_SUFFIX = {"en": "%", "pt-BR": "\u00a0%"}
_DATE = {"en": "yyyy-MM-dd", "pt-BR": "dd/MM/yyyy"}
_TIME = " HH:mm"

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("kafer_language", default=None)


def language_code(value: str) -> str:
    """The language ``value`` names, as one of :data:`LANGUAGES` (``pt_BR``, ``pt-br`` and ``pt`` are
    ``pt-BR``; ``en-US`` and ``en_GB`` are ``en``).

    Raises
    ------
    ConfigError
        When it names no language Käfer speaks.
    """
    text = str(value).strip().replace("_", "-").lower()
    if text == "pt" or text == "pt-br":
        return "pt-BR"
    if text == "en" or text.startswith("en-"):
        return "en"
    from .errors import ConfigError

    raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}, not {value!r} "
                      f"(the setting language, or ${ENVIRONMENT})")


def current() -> str:
    """The language of the current context: set by :func:`using`, else ``$KAFER_LANG`` (English
    when it names no language Käfer speaks: a message must never fail for its language), else English."""
    language = _CURRENT.get()
    if language is not None:
        return language
    try:
        return language_code(os.environ.get(ENVIRONMENT) or DEFAULT)
    except ValueError:
        return DEFAULT


@contextlib.contextmanager
def using(language: str | None, *, environ: bool = False) -> Iterator[str]:
    """Speak ``language`` inside the block (``None``: keep the current one).

    Parameters
    ----------
    language : str or None
        A language :func:`language_code` accepts.
    environ : bool
        Also set ``$KAFER_LANG`` for the block, so that threads started in it and child processes
        (a retrain's notebooks) speak it too. For a process that does one thing at a time (the
        CLI); a server serving several people at once sets the context only.

    Yields
    ------
    str
        The language spoken in the block.

    Raises
    ------
    ConfigError
        When ``language`` names no language Käfer speaks.
    """
    code = current() if language is None else language_code(language)
    token = _CURRENT.set(code)
    before = os.environ.get(ENVIRONMENT)
    if environ:
        os.environ[ENVIRONMENT] = code
    try:
        yield code
    finally:
        _CURRENT.reset(token)
        if environ:
            if before is None:
                os.environ.pop(ENVIRONMENT, None)
            else:
                os.environ[ENVIRONMENT] = before


# -- messages ---------------------------------------------------------------------------------------

def tr(message: str, /, **values) -> str:
    """``message`` in the current language, its ``{placeholders}`` filled with ``values``.

    Numbers and dates among ``values`` should come formatted (:func:`number`, :func:`date`…), so
    that they read as the language writes them; a message without a translation reads in English.
    """
    text = _translations(current()).gettext(message)
    return text.format(**values) if values else text


def ntr(singular: str, plural: str, count: int, /, **values) -> str:
    """The singular or plural message, as the current language chooses for ``count``; ``{count}``
    is ``count`` written as the language writes numbers, the other placeholders ``values``."""
    text = _translations(current()).ngettext(singular, plural, count)
    return text.format(count=number(count), **values)


def mark(message: str) -> str:
    """``message`` itself, marked for translation where it is defined (a table of texts): it is
    translated where it is shown, with :func:`tr`."""
    return message


def catalog_path(language: str) -> Path:
    """The ``.po`` file that holds ``language``'s translations."""
    return LOCALES / _LOCALE[language_code(language)] / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.lru_cache(maxsize=None)
def _translations(language: str):
    """The translations of ``language``, read from its catalog once per process (English: none)."""
    import gettext

    if language == DEFAULT:
        return gettext.NullTranslations()
    import io

    from babel.messages.mofile import write_mo

    compiled = io.BytesIO()
    write_mo(compiled, read_catalog(language))  # fuzzy entries are left out: they read in English
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def read_catalog(language: str):
    """The Babel catalog of ``language`` (its ``.po`` file).

    Raises
    ------
    ConfigError
        When the catalog is missing or cannot be parsed (a broken installation).
    """
    from babel.messages.pofile import PoFileError, read_po

    from .errors import ConfigError

    path = catalog_path(language)
    try:
        with open(path, "rb") as fh:
            return read_po(fh, locale=_LOCALE[language_code(language)], domain=DOMAIN, abort_invalid=True)
    except (OSError, PoFileError) as exc:
        raise ConfigError(f"{path}: cannot read the {language} translations ({exc}): reinstall Käfer") from None


# -- numbers and dates -------------------------------------------------------------------------------

def number(x: float, digits: int = 0) -> str:
    """``x`` with ``digits`` decimals and grouped thousands: ``1.234,5`` in pt-BR, ``1,234.5`` in
    English; never ``-0``."""
    from babel.numbers import format_decimal

    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "")
    return format_decimal(round(float(x), digits) + 0.0, format=pattern, locale=_LOCALE[current()])


def percent(share: float, digits: int = 1) -> str:
    """A share (0.125) as a percentage: ``12,5 %`` in pt-BR (a no-break space before the sign, as
    Brazilian style guides write it), ``12.5%`` in English."""
    from babel.numbers import format_percent

    language = current()
    pattern = "#,##0" + ("." + "0" * digits if digits > 0 else "") + _PERCENT_SUFFIX[language]
    return format_percent(round(float(share), digits + 2) + 0.0, format=pattern, locale=_LOCALE[language])


def megabytes(size: int, digits: int = 1) -> str:
    """A size in bytes as megabytes (10⁶ bytes, as Käfer counts them): ``124,3 MB``."""
    return f"{number(size / 1e6, digits)} MB"


def date(day: dt.date | dt.datetime | str) -> str:
    """A day: ``06/12/2026`` in pt-BR, ``2026-12-06`` in English (ISO text is accepted too)."""
    from babel.dates import format_date

    language = current()
    return format_date(_moment(day), format=_DATE[language], locale=_LOCALE[language])


def datetime(moment: dt.datetime | str) -> str:
    """A moment to the minute: ``06/12/2026 14:05`` in pt-BR, ``2026-12-06 14:05`` in English.

    ISO text is accepted (Käfer's records keep moments so); the moment is shown in its own time
    zone (UTC, for every moment Käfer records), never converted.
    """
    from babel.dates import format_datetime

    language = current()
    moment = _moment(moment)
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.combine(moment, dt.time())
    return format_datetime(moment, format=_DATE[language] + _TIME, tzinfo=moment.tzinfo, locale=_LOCALE[language])


def _moment(value: dt.date | dt.datetime | str) -> dt.date | dt.datetime:
    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


# -- the catalogs' upkeep ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Marked:
    """A message the code marks for translation: its id (``(singular, plural)`` for :func:`ntr`),
    and where (file and line); ``problem`` says why it cannot be translated (not a literal)."""

    id: str | tuple[str, str]
    file: str
    line: int
    problem: str | None = None


def marked_messages(root: str | os.PathLike = Path(__file__).resolve().parent) -> list[Marked]:
    """Every call of :func:`tr`, :func:`ntr` and :func:`mark` in the Python files below ``root``
    (read as syntax trees, never imported), in file and line order."""
    root = Path(root)
    found: list[Marked] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        where = str(path.relative_to(root.parent))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else \
                node.func.attr if isinstance(node.func, ast.Attribute) else None
            if name not in MARKERS:
                continue
            args = node.args[:MARKERS[name]]
            ids = [arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None for arg in args]
            if None not in ids and len(ids) == MARKERS[name]:
                found.append(Marked(ids[0] if len(ids) == 1 else tuple(ids), where, node.lineno))
            elif name == "mark" or any(_built(arg) for arg in args) or len(ids) < MARKERS[name]:
                found.append(Marked("", where, node.lineno, f"{name}() needs a literal message id, its values "
                                    "in {placeholders} (a text built at run time has no translation)"))
    return sorted(found, key=lambda m: (m.file, m.line))


def _built(node: ast.AST) -> bool:
    """Whether a message id is text built at run time (an f-string, a sum, a ``.format``), not a
    text marked elsewhere and looked up by :func:`tr` (``tr(HEADERS[name])``)."""
    return (isinstance(node, ast.JoinedStr) or isinstance(node, ast.BinOp)
            or isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format")


def placeholders(text: str) -> frozenset[str]:
    """The ``{fields}`` of a message, with their conversions and formats (``{cars}``, ``{value!r}``)."""
    fields = set()
    for _, field, spec, conversion in string.Formatter().parse(text):
        if field is not None:
            fields.add("{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return frozenset(fields)


def catalog_problems(language: str, messages: list[Marked] | None = None) -> list[str]:
    """What keeps ``language``'s catalog from translating the code: marked messages without a
    translation (or only a fuzzy one), translations whose placeholders are not their id's,
    entries that no code marks any more, and marks that are no literal message. Empty when whole."""
    messages = marked_messages() if messages is None else messages
    catalog = read_catalog(language)
    problems = [f"{m.file}:{m.line}: {m.problem}" for m in messages if m.problem]
    wanted = {m.id: m for m in messages if not m.problem}
    for key, where in wanted.items():
        entry = catalog.get(_key(key))
        texts = [] if entry is None or entry.fuzzy else list(_forms(entry.string))
        if not texts or not all(texts):
            problems.append(f"{where.file}:{where.line}: no {language} translation of {key!r}")
            continue
        if isinstance(key, tuple):  # a plural form may leave {count} out ("one car")
            expected = placeholders(key[0]) | placeholders(key[1]) | {"{count}"}
            wrong = [t for t in texts if placeholders(t) - {"{count}"} != expected - {"{count}"}
                     or not placeholders(t) <= expected]
        else:
            expected = placeholders(key)
            wrong = [t for t in texts if placeholders(t) != expected]
        problems += [f"{where.file}:{where.line}: the {language} translation {text!r} of {key!r} has placeholders "
                     f"{sorted(placeholders(text))}, its id {sorted(expected)}" for text in wrong]
    ids = {_key(key) for key in wanted}
    problems += [f"{catalog_path(language)}: {entry.id!r} is marked nowhere in the code any more"
                 for entry in catalog if entry.id and _key(entry.id) not in ids]
    return problems


def _key(message_id: str | tuple[str, ...]) -> str:
    """How a catalog finds a message: by its id, or a plural message by its singular."""
    return message_id[0] if isinstance(message_id, tuple) else message_id


def _forms(text: str | tuple[str, ...]) -> tuple[str, ...]:
    """A translation's texts: one, or one per plural form."""
    return text if isinstance(text, tuple) else (text,)


def update_catalog(language: str) -> Path:
    """Add the marked messages ``language``'s catalog lacks (untranslated), drop those no code marks
    any more, and write it back sorted by id; its path."""
    from babel.messages.pofile import write_po

    catalog = read_catalog(language)
    marked = [m for m in marked_messages() if not m.problem]
    keep = {_key(m.id) for m in marked}
    for entry in list(catalog):
        if entry.id and _key(entry.id) not in keep:
            catalog.delete(entry.id)
    for m in marked:
        if catalog.get(_key(m.id)) is None:
            catalog.add(m.id, ("", "") if isinstance(m.id, tuple) else "", locations=[(m.file, m.line)])
    path = catalog_path(language)
    with open(path, "wb") as fh:
        write_po(fh, catalog, width=100, sort_output=True, omit_header=False, include_lineno=False)
    _translations.cache_clear()
    return path


def main(argv: list[str] | None = None) -> int:
    """``make messages`` (``--update``): what each catalog lacks; with ``--update``, add it."""
    import argparse

    parser = argparse.ArgumentParser(prog="make messages", description="what each catalog of translations lacks")
    parser.add_argument("--update", action="store_true", help="add the missing messages, untranslated")
    args = parser.parse_args(argv)
    status = 0
    for language in LANGUAGES:
        if language == DEFAULT:
            continue
        if args.update:
            print(f"updated {update_catalog(language)}")
        problems = catalog_problems(language)
        print("\n".join(problems) or f"{language}: every marked message is translated")
        status = status or int(bool(problems))
    return status
