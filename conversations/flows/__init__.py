"""The flows the bot knows. ``default_flows()`` is what every adapter serves."""

from __future__ import annotations

from conversations.engine import Flow
from conversations.flows.digest import DigestFlow
from conversations.flows.drafts import DraftsFlow
from conversations.flows.intake import IntakeFlow
from conversations.flows.lifecycle import WorkflowFlow
from conversations.flows.menu import MenuFlow
from conversations.flows.pulse import FollowUpFlow, PulseFlow
from conversations.flows.relationships import MaturityFlow, NudgeFlow, RelationshipsFlow, TouchpointFlow
from conversations.flows.requests import MyRequestsFlow, StatusFlow
from conversations.flows.surveys import SurveyFlow
from conversations.flows.value import ValueFlow


def default_flows() -> list[Flow]:
    intake = IntakeFlow()
    flows: list[Flow] = [intake, MyRequestsFlow(), StatusFlow(), WorkflowFlow()]
    touchpoint = TouchpointFlow()
    flows += [RelationshipsFlow(), touchpoint, MaturityFlow(), NudgeFlow(touchpoint), DraftsFlow(intake), SurveyFlow()]
    flows += [PulseFlow(), FollowUpFlow()]
    flows += [DigestFlow(), ValueFlow()]
    return [*flows, MenuFlow(flows)]


__all__ = ["default_flows"]
