"""Microsoft Teams: botbuilder's CloudAdapter, Adaptive Cards, proactive messages, app package.

Every botbuilder import of the project lives in this package, so moving to the Microsoft 365
Agents SDK stays a change to this folder.
"""

from adapters.teams.adapter import ROUTE, TeamsAdapter, TeamsConfig
from adapters.teams.auth import OPENID_METADATA_URL
from adapters.teams.connector import RetryPolicy
from adapters.teams.package import PackageError, build_package
from adapters.teams.references import UnreachablePerson, unreachable

__all__ = [
    "OPENID_METADATA_URL",
    "ROUTE",
    "PackageError",
    "RetryPolicy",
    "TeamsAdapter",
    "TeamsConfig",
    "UnreachablePerson",
    "build_package",
    "unreachable",
]
