"""Schema migrations: `concord db upgrade` and the tests apply the same Alembic scripts."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

_SCRIPTS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    # '%' would be read as interpolation by configparser.
    config.set_main_option("concord.database_url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at database_url to the given revision (default: the newest)."""
    command.upgrade(alembic_config(database_url), revision)


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Migrate over an open sync connection (used from AsyncConnection.run_sync)."""
    config = alembic_config("")
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
