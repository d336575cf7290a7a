"""Every router of the registry and access issue, for ``create_app`` to include in one line."""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.platform.audit.router import router as audit_router
from eldercare.platform.auth.users import router as users_router
from eldercare.platform.labels.router import router as labels_router
from eldercare.platform.registry import (
    contacts,
    devices,
    gateways,
    hospital,
    institutions,
    places,
    residents,
    stays,
)
from eldercare.platform.registry.imports.router import router as imports_router
from eldercare.platform.services_apply.router import public as public_router
from eldercare.platform.services_apply.router import router as applications_router

router = APIRouter()
for part in (
    institutions.router,
    places.router,
    residents.router,
    contacts.router,
    stays.router,
    hospital.router,
    devices.router,
    gateways.router,
    imports_router,
    labels_router,
    users_router,
    audit_router,
    applications_router,
    public_router,
):
    router.include_router(part)
