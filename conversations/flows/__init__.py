"""The flows the bot knows. ``default_flows()`` is what every adapter serves."""

from __future__ import annotations

from conversations.engine import Flow
from conversations.flows.intake import IntakeFlow
from conversations.flows.lifecycle import WorkflowFlow
from conversations.flows.menu import MenuFlow
from conversations.flows.requests import MyRequestsFlow, StatusFlow


def default_flows() -> list[Flow]:
    flows: list[Flow] = [IntakeFlow(), MyRequestsFlow(), StatusFlow(), WorkflowFlow()]
    return [*flows, MenuFlow(flows)]


__all__ = ["default_flows"]
