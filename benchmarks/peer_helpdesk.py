"""Time django-helpdesk's mail ingestion over a local folder of .eml files.

Runs in the peer's own virtual environment (see ``benchmarks/peer.py``),
never in mailgate's: it imports only Django and django-helpdesk. It sets up
a fresh SQLite database, one queue whose mailbox is the folder (the
"local" mailbox type), and runs ``helpdesk.email.process_email``, the code
behind ``manage.py get_email``. Outgoing mail goes to Django's in-memory
backend. It prints one JSON line: files, tickets, seconds and the error
that stopped the run, if one did.

    python peer_helpdesk.py WORK_DIR MAIL_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def configure(work: Path) -> None:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        DATABASES={
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(work / "helpdesk.db")}
        },
        INSTALLED_APPS=[
            "django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions",
            "django.contrib.sites", "django.contrib.humanize", "django.contrib.messages",
            "django.contrib.admin", "rest_framework", "account", "pinax.invitations",
            "pinax.teams", "reversion", "helpdesk",
        ],
        SITE_ID=1,
        USE_TZ=True,
        MEDIA_ROOT=str(work / "media"),
        EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
        DEFAULT_FROM_EMAIL="support@support.example.org",
        # The links in its mails name the "helpdesk" URL namespace.
        ROOT_URLCONF=__name__,
        TEMPLATES=[{
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "APP_DIRS": True,
            "OPTIONS": {"context_processors": ["django.contrib.auth.context_processors.auth"]},
        }],
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.urls import include, path

    sys.modules[__name__].urlpatterns = [path("helpdesk/", include("helpdesk.urls"))]  # type: ignore[attr-defined]


def main(work: Path, mail_dir: Path) -> None:
    configure(work)
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from helpdesk.email import process_email
    from helpdesk.models import FollowUp, Queue, Ticket

    Queue.objects.create(
        title="Support", slug="support", email_address="support@support.example.org",
        allow_email_submission=True, email_box_type="local",
        email_box_local_dir=str(mail_dir), email_box_interval=0,
        logging_type="error",
    )
    files = len(list(mail_dir.iterdir()))
    # process_email logs and swallows the error that stops a queue; the
    # error is read back from its logger.
    errors: list[str] = []

    import logging

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                errors.append(f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"[:200])

    logging.getLogger("django.helpdesk.queue.support").addHandler(Collect())
    started = time.perf_counter()
    process_email(quiet=True)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "files": files,
        "tickets": Ticket.objects.count(),
        "followups": FollowUp.objects.count(),
        "left_in_folder": len(list(mail_dir.iterdir())),
        "seconds": seconds,
        "error": errors[0] if errors else None,
    }))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
