"""What the adapter registers with Slack, recorded as it registers it.

The app manifest (``manifest.yaml``) must ask Slack for exactly these: a command Slack
doesn't know never arrives, and an event subscribed but not handled costs traffic and a
scope for nothing. A test compares this record with the manifest both ways.

Example::

    features = Features()
    features.command("/brm")
    assert features.commands == {"/brm"}
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Features:
    """Commands, message shortcuts (callback ids) and bot events (manifest names, ``message.im``)."""

    commands: set[str] = field(default_factory=set)
    message_shortcuts: set[str] = field(default_factory=set)
    global_shortcuts: set[str] = field(default_factory=set)
    events: set[str] = field(default_factory=set)
    uses_interactivity: bool = False

    def command(self, name: str) -> None:
        self.commands.add(name)

    def message_shortcut(self, callback_id: str) -> None:
        self.message_shortcuts.add(callback_id)
        self.uses_interactivity = True

    def event(self, manifest_name: str) -> None:
        self.events.add(manifest_name)

    def interactivity(self) -> None:
        self.uses_interactivity = True
