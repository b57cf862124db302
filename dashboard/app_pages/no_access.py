"""Shown to a key that can only post events (role ingest)."""

from dashboard.ui import ctx, empty, header

c = ctx()
header("No dashboard access", f"Signed in as {c.identity.name} with role {c.identity.role}.")
empty(
    "This key may only post events",
    "The dashboard needs a reading role (viewer, executive, finance, ops or admin). "
    "Sign out and use another key, or ask an admin for one.",
)
