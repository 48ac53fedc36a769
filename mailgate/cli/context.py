"""Helpers shared by the commands: settings, the app, output."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy.exc import ArgumentError, OperationalError

from mailgate.app import App, DatabaseMissing, SchemaOutOfDate
from mailgate.settings import Settings, SettingsError, load_settings

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def get_settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def open_app(settings: Settings | None = None, *, must_exist: bool = True) -> App:
    """Open the app; by default the database must exist already."""
    try:
        return App.create(settings or get_settings(), must_exist=must_exist)
    except (SchemaOutOfDate, SettingsError, DatabaseMissing) as error:
        raise click.ClickException(str(error)) from None
    except ArgumentError as error:
        raise click.ClickException(f"MAILGATE_DATABASE_URL is invalid: {error}") from None
    except OperationalError as error:
        raise click.ClickException(f"database unavailable: {error.orig or error}") from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
