"""Reply-token signing keys: from settings, or generated into the home."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from mailgate.settings import Settings, SettingsError
from mailgate.tokens import SigningKey, format_key, generate_key, parse_keys

log = logging.getLogger(__name__)

KEY_FILE_NAME = "signing-keys"


def load_signing_keys(settings: Settings) -> list[SigningKey]:
    """Return the signing keys, the one that signs first; retired keys last.

    Without ``MAILGATE_SIGNING_KEYS`` the keys live in ``$MAILGATE_HOME/
    signing-keys``, created with mode 0600 on first use.
    """
    if settings.signing_keys:
        try:
            return parse_keys(settings.signing_keys)
        except ValueError as error:
            raise SettingsError(f"MAILGATE_SIGNING_KEYS is invalid: {error}") from None
    path = settings.home / KEY_FILE_NAME
    if not path.exists():
        _create_key_file(path)
    try:
        return parse_keys(path.read_text())
    except ValueError as error:
        raise SettingsError(f"{path} is invalid: {error}") from None


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    # O_EXCL: when two processes start at once, one creates the file and the
    # other reads it.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w") as file:
        file.write("# reply-token signing keys, kid:hexsecret; the first one signs\n")
        file.write("# append :retired to a key to stop its tokens working\n")
        file.write(format_key(key) + "\n")
    log.info("generated reply-token signing key %s in %s", key.key_id, path)
