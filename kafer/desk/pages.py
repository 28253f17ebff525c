"""The desk's pages around the decision: their words, the navigation bar and the language chosen.

Every page of the desk carries the same bar: Decision · Bring exports · Retrain · Inspection lists,
each link shown only to a person whose role gives its right (the server refuses the action anyway,
:mod:`kafer.desk.loop`), who is signed in and their role, and the language switch (English /
Português). The language is the person's choice, kept in a cookie (:data:`LANGUAGE_COOKIE`); without
one, the plant's setting ``language``. All words are here, marked with :func:`kafer.i18n.tr`, so the
templates (``kafer/templates/desk/*.html``) hold none of their own and ``make messages`` sees them all.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from ..config import Settings
from ..i18n import current, language_code, tr
from .rights import Person, allowed, role_names

#: The cookie that keeps a person's language on this desk.
LANGUAGE_COOKIE = "kafer-desk-lang"
#: The languages the switch offers, each named in its own language.
LANGUAGE_NAMES = {"en": "English", "pt-BR": "Português"}
TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).resolve().parent.parent / "templates" / "desk"),
                        autoescape=True)
#: The desk's pages in the bar: route (under the desk's address), the right the page needs.
PAGES = (("", "read"), ("exports", "upload"), ("retrain", "read"), ("lists", "download"))


def chosen_language(cookie: str | None, settings: Settings) -> str:
    """The language a request is answered in: the person's cookie when it names one Käfer speaks,
    else the plant's setting ``language``."""
    if cookie:
        try:
            return language_code(cookie)
        except ValueError:
            pass
    return language_code(settings.language)


def page_names() -> dict[str, str]:
    """Each page's name in the bar, in the current language."""
    return {"": tr("Decision"), "exports": tr("Bring exports"), "retrain": tr("Retrain"),
            "lists": tr("Inspection lists")}


def nav(person: Person | None, *, base: str, here: str, xsrf_form_html: str, next_url: str) -> str:
    """The navigation bar (HTML) for ``person`` on page ``here`` (a route of :data:`PAGES`)."""
    names = page_names()
    links = [{"href": base + route, "name": names[route], "here": route == here}
             for route, right in PAGES if allowed(person, right)]
    roles = role_names(person.roles) if person else ""
    return TEMPLATES.get_template("nav.html").render(
        links=links, person=person, roles=roles, language=current(), languages=LANGUAGE_NAMES,
        action=base + "language", xsrf_form_html=xsrf_form_html, next=next_url,
        who=tr("Signed in: {name} ({roles})", name=person.name, roles=roles) if person else "",
        switch=tr("Language"), signout=tr("Sign out") if person and person.source == "account" else "",
        signout_href=base + "logout")


def words() -> dict[str, str]:
    """The words of the loop's pages and their script, in the current language."""
    return {
        "exports_title": tr("Bring the month's exports"),
        "exports_intro": tr("Choose or drop the month's export files (workbooks .xlsx, csv or csv.gz: the layouts "
                            "kafer ingest reads). They travel in pieces; the desk then reads them with ingest's own "
                            "checks. A refused upload changes nothing in the lake."),
        "drop": tr("Drop the files here, or choose them"),
        "send": tr("Send the files"),
        "sending": tr("Sending…"),
        "checking": tr("Every file arrived; reading them with ingest's checks…"),
        "ready": tr("Ready: every file passed ingest's checks."),
        "start_retrain": tr("Start the retrain"),
        "no_retrain_right": tr("Starting a retrain takes the analyst role."),
        "failed": tr("The desk could not answer; try again."),
        "no_files": tr("Choose at least one file first."),
        "retrain_title": tr("Retrain"),
        "retrain_intro": tr("The retrain runs on the desk's server: closing this page does not stop it. Everyone "
                            "signed in sees its progress here."),
        "no_job": tr("No retrain has run on this desk yet."),
        "progress_lines": tr("What it says as it works"),
        "open_decision": tr("Open the comparison and the decision"),
        "lists_title": tr("Inspection lists"),
        "latest_heading": tr("The latest list issued"),
        "no_list": tr("No list has been issued from this lake yet."),
        "download_latest": tr("Download the latest list (workbook)"),
        "score_heading": tr("Score an export into a list"),
        "score_intro": tr("Drop an export: its cars are scored with the production model into a list, recorded in "
                          "the lake as issued by you, and downloaded as a workbook."),
        "score": tr("Score into a list"),
        "scoring": tr("Scoring the cars with the production model…"),
        "download_list": tr("Download the list (workbook)"),
        "car_heading": tr("One car by its KNR"),
        "knr": tr("The car's KNR"),
        "look_up": tr("Score this car"),
        "rank": tr("Its rank"),
        "risk": tr("Its road-test risk"),
        "budget": tr("In the inspection budget?"),
        "stage": tr("Where it is"),
        "why": tr("Why (strongest first)"),
    }
