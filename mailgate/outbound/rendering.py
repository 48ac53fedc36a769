"""The Jinja2 environment of our mail templates."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape


def templates_dir() -> Path:
    """Return the folder of mail templates.

    A wheel installs them inside the package; a source checkout or an
    editable install keeps them in ``templates/`` at the repository's top.
    """
    installed = importlib.resources.files("mailgate") / "templates"
    if installed.is_dir():
        return Path(str(installed))
    return Path(__file__).resolve().parents[2] / "templates"


def make_environment(override: Path | None = None) -> Environment:
    """Return the template environment; templates in ``override`` replace
    the packaged ones of the same name."""
    folders = [str(override)] if override else []
    return Environment(
        loader=FileSystemLoader([*folders, str(templates_dir())]),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str


def render_mail(environment: Environment, name: str, **context: Any) -> RenderedMail:
    """Render ``name/subject.txt``, ``name/body.txt`` and ``name/body.html``."""
    subject = environment.get_template(f"{name}/subject.txt").render(**context)
    return RenderedMail(
        subject=" ".join(subject.split()),
        text=environment.get_template(f"{name}/body.txt").render(**context),
        html=environment.get_template(f"{name}/body.html").render(**context),
    )
