"""A Router per visit: its producers and consumers, and the privilege rule (P1) as structure.

A privileged (attorney) visit's router refuses recorder and monitor consumers whoever asks:
the refusal lives here, below every API, so no caller can bypass it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from sfu.router.consumer import Consumer, ConsumerRole
from sfu.router.frames import Kind
from sfu.router.keyframes import SendPli
from sfu.router.producer import Producer

_ids = itertools.count(1)


class PrivilegeViolationError(Exception):
    """Rule P1: a privileged visit is never recorded and never monitored."""


class Router:
    def __init__(self, visit_id: str, *, privileged: bool,
                 on_refusal: Callable[[str, ConsumerRole], None] | None = None) -> None:
        self.visit_id = visit_id
        self.privileged = privileged
        self._producers: dict[str, Producer] = {}
        self._on_refusal = on_refusal
        self.closed = False

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    def add_producer(self, participant_id: str, kind: Kind, send_pli: SendPli) -> Producer:
        producer = Producer(f"p{next(_ids)}", participant_id, kind, send_pli)
        self._producers[producer.id] = producer
        return producer

    async def remove_producer(self, producer: Producer) -> None:
        self._producers.pop(producer.id, None)
        await producer.close()

    def admit(self, consumer_id: str, role: ConsumerRole) -> None:
        """Check before a recorder or monitor is even set up: on a privileged visit it is refused
        (and the refusal reported), whether or not anything is published yet."""
        if self.privileged and role != "peer":
            if self._on_refusal is not None:
                self._on_refusal(consumer_id, role)
            raise PrivilegeViolationError(f"visit {self.visit_id} is privileged: no {role} may attach (rule P1)")

    def consume(self, producer: Producer, consumer_id: str, role: ConsumerRole) -> Consumer:
        self.admit(consumer_id, role)
        if producer.id not in self._producers:
            raise KeyError(f"producer {producer.id} is not in this router")
        return producer.add_consumer(consumer_id, role)

    async def close(self) -> None:
        self.closed = True
        for producer in list(self._producers.values()):
            await producer.close()
        self._producers.clear()
