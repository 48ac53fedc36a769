"""The routing rules editor, for admins (permission admin.rules)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
