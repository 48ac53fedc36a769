"""The peer case: django-helpdesk's ingestion of a local mail folder
(``manage.py get_email`` with a "local" mailbox) against mailgate over SMTP,
on the same mails in one run.

django-helpdesk is installed in a virtual environment of the benchmark's
own, never in mailgate's, and is not a dependency of mailgate. The
environment is kept between runs under ``MAILGATE_BENCH_PEER_VENV``
(default ``~/.cache/mailgate-benchmarks/django-helpdesk``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.cases import Figure, embedded_gateway, end_to_end
from benchmarks.mails import corpus_set

PEER_REQUIREMENT = "django-helpdesk[teams]==2.6.1"
PEER_SCRIPT = Path(__file__).resolve().parent / "peer_helpdesk.py"


def peer_venv() -> Path:
    default = Path.home() / ".cache" / "mailgate-benchmarks" / "django-helpdesk"
    return Path(os.environ.get("MAILGATE_BENCH_PEER_VENV", default))


def ensure_peer_python(install: bool = True) -> Path | None:
    """Return the peer environment's python, creating the environment and
    installing django-helpdesk first when ``install`` is set. Return None
    when it is absent and ``install`` is not set.

    Raises CalledProcessError when venv or pip fails.
    """
    venv = peer_venv()
    python = venv / "bin" / "python"
    marker = venv / "installed.txt"
    if marker.is_file() and marker.read_text().strip() == PEER_REQUIREMENT:
        return python
    if not install:
        return None
    print(f"peer: installing {PEER_REQUIREMENT} into {venv}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", PEER_REQUIREMENT],
        check=True, timeout=900, stdout=subprocess.DEVNULL,
    )
    marker.write_text(PEER_REQUIREMENT + "\n")
    return python


def run_peer(python: Path, work: Path, mails: list[tuple[str, str, bytes]]) -> dict:
    """Write ``mails`` as .eml files to a folder and let django-helpdesk
    ingest it; return what ``peer_helpdesk.py`` printed."""
    work.mkdir(parents=True)
    folder = work / "mail"
    folder.mkdir()
    for number, (_, _, raw) in enumerate(mails):
        (folder / f"{number:05d}.eml").write_bytes(raw)
    # PYTHONUTF8: the peer opens each file as text in the locale's encoding;
    # UTF-8 mode makes that UTF-8 whatever the locale of the machine.
    result = subprocess.run(
        [str(python), str(PEER_SCRIPT), str(work), str(folder)],
        capture_output=True, text=True, timeout=3600,
        env={**os.environ, "PYTHONUTF8": "1"}, cwd=work,
    )
    if result.returncode != 0:
        raise RuntimeError(f"django-helpdesk run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def peer(work: Path, count: int, connections: int, install: bool = True) -> list[Figure]:
    """Run both on the mails django-helpdesk can read, then both on the
    whole set of ``count`` mails, and return the figures."""
    python = ensure_peer_python(install)
    if python is None:
        print(f"peer: skipped, no django-helpdesk environment at {peer_venv()}", flush=True)
        return []
    mails = corpus_set(count)
    readable = [mail for mail in mails if _is_utf8(mail[2])]
    peer_readable = run_peer(python, work / "peer-readable", readable)
    peer_all = run_peer(python, work / "peer-all", mails)
    with embedded_gateway(work, f"peer-mailgate-{connections}") as gateway:
        ours_readable = end_to_end(
            gateway, readable, connections, "peer-mailgate",
            "corpus mails readable as UTF-8 to tickets",
        )
    with embedded_gateway(work, f"peer-mailgate-all-{connections}") as gateway:
        ours_all = end_to_end(
            gateway, mails, connections, "peer-mailgate-all", "whole corpus set to tickets",
        )
    peer_rate = peer_readable["tickets"] / peer_readable["seconds"]
    return [
        Figure(
            "peer-helpdesk", "django-helpdesk get_email over a local folder, mails readable as UTF-8",
            peer_readable["tickets"], peer_readable["seconds"], ratio_base=peer_rate,
            ratio_name="django-helpdesk",
            detail=f"{peer_readable['files']} files, {peer_readable['left_in_folder']} left in the folder, "
            f"stopped by: {peer_readable['error'] or 'nothing'}",
        ),
        _against(ours_readable, peer_rate),
        Figure(
            "peer-helpdesk-all", "django-helpdesk get_email over the whole set (ticket count)",
            peer_all["tickets"], peer_all["seconds"], ratio_base=len(mails), ratio_name="the set",
            unit="tickets", value=peer_all["tickets"],
            detail=f"{peer_all['files']} files, {peer_all['left_in_folder']} left in the folder, "
            f"stopped by: {peer_all['error'] or 'nothing'}",
        ),
        Figure(
            "peer-mailgate-all", "mailgate over SMTP, whole set (ticket count)",
            ours_all.count, ours_all.seconds, ratio_base=len(mails), ratio_name="the set",
            unit="tickets", value=ours_all.tickets, connections=connections,
            detail=f"{ours_all.count} mails acknowledged and processed, {ours_all.detail}",
        ),
    ]


def _against(figure: Figure, peer_rate: float) -> Figure:
    figure.ratio_base = peer_rate
    figure.ratio_name = "django-helpdesk"
    return figure


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
