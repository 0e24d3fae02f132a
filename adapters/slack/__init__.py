"""Slack: the engine behind slack-bolt, over HTTP or Socket Mode.

The public surface is small: the adapter, and the two pure converters at its edges.
"""

from adapters.slack.adapter import SlackAdapter
from adapters.slack.inbound import to_inbound
from adapters.slack.render import render

__all__ = ["SlackAdapter", "render", "to_inbound"]
