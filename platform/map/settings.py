"""The map's settings, from ``ELDERCARE_MAP_*`` environment variables (or the state directory's env file)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings

from eldercare.platform.config import settings_config
from eldercare.platform.map.geo import Crs


class MapSettings(BaseSettings):
    model_config = settings_config()

    map_tile_url: str = Field(
        default="",
        description="tile URL template ({z}/{x}/{y}, optional {s}); empty: no tiles, the plain background",
    )
    map_tile_attribution: str = ""
    map_tile_crs: Crs = Field(
        default=Crs.WGS84,
        description="the system the tiles are drawn in: gcj02 for AutoNavi, Tencent and other Chinese providers",
    )
    map_tile_max_zoom: int = Field(default=18, ge=1, le=22)
    map_centre_lon: float = Field(default=111.29, ge=73, le=136)  # Yichang, the city of the seeds
    map_centre_lat: float = Field(default=30.70, ge=3, le=54)
    map_zoom: int = Field(default=11, ge=1, le=22)
    map_cache_ttl_s: float = Field(default=30.0, ge=0, le=3600)
    map_cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    map_rate_per_s: float = Field(default=10.0, gt=0)
    map_burst: float = Field(default=60.0, ge=1)
    map_export_cost: float = Field(default=20.0, ge=1, description="tokens an export takes from the bucket")

    @field_validator("map_tile_url")
    @classmethod
    def _template(cls, value: str) -> str:
        if value and not all(part in value for part in ("{z}", "{x}", "{y}")):
            raise ValueError("a tile URL template needs {z}, {x} and {y}")
        return value
