"""Name attachments and guess content types that a message leaves out.

The tables below are fixed on purpose: ``mimetypes`` reads the machine's
own type files, which would make the names depend on the host.
"""

from __future__ import annotations

from dataclasses import replace

from mailgate.parsing.model import Attachment

_EXTENSION_BY_TYPE: dict[str, str] = {
    "application/json": ".json",
    "application/msword": ".doc",
    "application/ms-tnef": ".dat",
    "application/octet-stream": ".bin",
    "application/pdf": ".pdf",
    "application/pgp-encrypted": ".asc",
    "application/pgp-keys": ".asc",
    "application/pgp-signature": ".asc",
    "application/pkcs7-mime": ".p7m",
    "application/pkcs7-signature": ".p7s",
    "application/rtf": ".rtf",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.oasis.opendocument.text": ".odt",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": (
        ".pptx"
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        ".docx"
    ),
    "application/x-pkcs7-signature": ".p7s",
    "application/xml": ".xml",
    "application/zip": ".zip",
    "audio/mpeg": ".mp3",
    "image/bmp": ".bmp",
    "image/gif": ".gif",
    "image/jpeg": ".jpg",
    "image/png": ".png",
    "image/svg+xml": ".svg",
    "image/tiff": ".tif",
    "image/webp": ".webp",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "message/rfc822": ".eml",
    "text/calendar": ".ics",
    "text/csv": ".csv",
    "text/html": ".html",
    "text/plain": ".txt",
    "text/rfc822-headers": ".txt",
    "text/rtf": ".rtf",
    "text/xml": ".xml",
    "video/mp4": ".mp4",
}

# The usual type of each extension, for files that come without one.
_TYPE_BY_EXTENSION: dict[str, str] = {
    extension: content_type
    for content_type, extension in _EXTENSION_BY_TYPE.items()
    if content_type.startswith(("application/", "image/", "audio/", "video/"))
} | {
    ".csv": "text/csv",
    ".eml": "message/rfc822",
    ".htm": "text/html",
    ".html": "text/html",
    ".ics": "text/calendar",
    ".jpeg": "image/jpeg",
    ".rtf": "application/rtf",
    ".tiff": "image/tiff",
    ".txt": "text/plain",
    ".xml": "application/xml",
}


def extension_for(content_type: str) -> str:
    """Return the file extension, with its dot, for a content type.

    Unknown text types get ".txt", because they open as text. A multipart
    part whose structure could not be parsed is raw MIME text, so it gets
    ".txt" too. Everything else gets ".bin".
    """
    if content_type in _EXTENSION_BY_TYPE:
        return _EXTENSION_BY_TYPE[content_type]
    if content_type.startswith(("text/", "multipart/")):
        return ".txt"
    return ".bin"


def content_type_for(filename: str) -> str:
    """Guess a content type from a file name's extension.

    Returns "application/octet-stream" when the extension is unknown.
    """
    _, dot, extension = filename.rpartition(".")
    if not dot:
        return "application/octet-stream"
    return _TYPE_BY_EXTENSION.get(f".{extension.lower()}", "application/octet-stream")


def generated_filename(content_type: str, number: int) -> str:
    """Return a name such as "attachment-1.pdf" for an unnamed part.

    ``number`` counts the unnamed attachments of a message from 1.
    """
    return f"attachment-{number}{extension_for(content_type)}"


def reference_key(content_id: str) -> str:
    """Return the form of a Content-ID that cid: URLs are matched by.

    RFC 2392 compares message ids case-sensitively, but clients change
    the case of cid: URLs, so matching ignores case.
    """
    return content_id.strip().lower()


class AttachmentList:
    """Collects the attachments of one message in document order.

    Unnamed parts get generated names numbered in the order they are added.
    """

    def __init__(self) -> None:
        self._items: list[Attachment] = []
        self._unnamed = 0

    def add(
        self,
        data: bytes,
        content_type: str,
        filename: str | None,
        content_id: str | None = None,
        inline: bool = False,
    ) -> None:
        """Append one attachment, generating its name when it has none."""
        if not filename:
            self._unnamed += 1
            filename = generated_filename(content_type, self._unnamed)
        self._items.append(
            Attachment(
                filename=filename,
                content_type=content_type,
                data=data,
                content_id=content_id,
                inline=inline,
            )
        )

    def finish(self, referenced_ids: set[str]) -> tuple[Attachment, ...]:
        """Return the attachments, marking those a cid: URL references inline.

        ``referenced_ids`` contains ``reference_key`` forms of the ids.
        """
        finished: list[Attachment] = []
        for item in self._items:
            referenced = item.content_id is not None and (
                reference_key(item.content_id) in referenced_ids
            )
            finished.append(replace(item, inline=True) if referenced else item)
        return tuple(finished)
