from pydantic_settings import BaseSettings, SettingsConfigDict


class LineageSettings(BaseSettings):
    """Where the lineage store lives; every service's settings extend this."""

    model_config = SettingsConfigDict(env_prefix="CONCORD_", extra="ignore")

    # Plain URLs only (sqlite:///PATH, postgresql://USER@HOST:PORT/DB); lineage.db picks drivers.
    database_url: str = "sqlite:///concord.db"
    database_echo: bool = False
