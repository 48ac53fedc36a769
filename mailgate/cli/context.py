"""Helpers shared by the commands: settings, the app, output."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from mailgate.app import App, SchemaOutOfDate
from mailgate.settings import Settings, SettingsError, load_settings

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"]}


def get_settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def open_app(settings: Settings | None = None) -> App:
    try:
        return App.create(settings or get_settings())
    except (SchemaOutOfDate, SettingsError) as error:
        raise click.ClickException(str(error)) from None
    except OperationalError as error:
        raise click.ClickException(f"database unavailable: {error.orig or error}") from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))
