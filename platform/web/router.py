"""The web part's one router for ``create_app``: the pages and the read endpoints they need."""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.platform.web import api, page_routes

router = APIRouter()
router.include_router(api.router)
router.include_router(page_routes.router)
