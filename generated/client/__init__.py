"""A client library for accessing TMA <-> CRM support integration"""

from .client import AuthenticatedClient, Client

__all__ = (
    "AuthenticatedClient",
    "Client",
)
