"""One replica of the bot for the multi-process SQLite test: files intakes, then delivers.

Titles are distinct hashes, so the duplicate check stays quiet.

Usage: python -m tests.storage.sqlite_replica DATABASE_URL NAME USERS
Prints one line: ``<NAME> submitted=<n> delivered=<n>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from datetime import UTC, datetime

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Address, ConversationKey, Delivered, Inbound, Reply, Sender

# The people have no business partner of their own: Finance is chosen in the summary, so one BRM is told.
LINES = ("new request", "{title}", "skip", "Both replicas keep every request", "idea", "low", "1",
         "Edit a field", "Business partner", "Finance", "submit")


class Printer:
    platform = "console"

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: Address, reply: Reply) -> Delivered:
        self.sent.append(reply.plain_text().splitlines()[0])
        return Delivered(message_id=None)


async def user(engine: Engine, name: str, n: int) -> int:
    email = f"{name}-{n}@example.com"
    key = ConversationKey("console", "local", "terminal", email)
    submitted = 0
    for step, line in enumerate(LINES):
        inbound = Inbound(
            key=key,
            event_id=f"{name}-{n}-{step}",
            text=line.format(title=hashlib.sha256(f"{name}{n}".encode()).hexdigest()[:24]),
            sender=Sender(email=email),
        )
        replies = await engine.handle(inbound)
        submitted += sum("Submitted as DR-" in r.plain_text() for r in replies)
    return submitted


async def main(url: str, name: str, users: int) -> None:
    from storage.db import Database

    db = Database.connect(url)
    engine = Engine(db, default_flows(), clock=lambda: datetime.now(UTC))
    submitted = sum(await asyncio.gather(*(user(engine, name, n) for n in range(users))))
    printer = Printer()
    worker = DeliveryWorker(db, {}, clock=lambda: datetime.now(UTC), fallback=printer)
    while await worker.run_once(limit=5):
        pass
    await db.dispose()
    print(f"{name} submitted={submitted} delivered={len(printer.sent)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
