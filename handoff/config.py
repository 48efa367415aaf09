"""The handoff settings of `guichet.yml`: level-2 queues, the rules that route a ticket to one,
and the delivery schedule. A queue's signing secret never sits in the file: it comes from the
environment variable the queue names, or Guichet makes one and keeps it in its store."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from handoff.webhook import SCHEDULE
from triage.config import PRIORITIES

_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QueueSettings(_Frozen):
    url: str = Field(description="where the level-2 system receives tickets (POST)")
    secret_env: str | None = Field(None, description="environment variable holding the whsec_… secret")
    timeout_seconds: float = Field(10.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        if not re.match(r"^https?://[^\s/]+", url):
            raise ValueError("the queue URL must start with http:// or https://")
        return url

    @field_validator("secret_env")
    @classmethod
    def _env_name(cls, name: str | None) -> str | None:
        if not name:  # "" (e.g. an unset ${VARIABLE:-}): Guichet makes the secret
            return None
        if not _ENV_NAME.match(name):
            raise ValueError(
                "secret_env is the NAME of an environment variable, e.g. GUICHET_QUEUE_SUPPORT_SECRET"
            )
        return name


class RouteSettings(_Frozen):
    """One routing rule: the first rule whose conditions all hold picks the queue."""

    queue: str
    categories: tuple[str, ...] = ()
    priorities: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    # True: only during business hours; False: only outside them; unset: always.
    business_hours: bool | None = None

    @field_validator("priorities")
    @classmethod
    def _known(cls, priorities: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [p for p in priorities if p not in PRIORITIES]
        if unknown:
            raise ValueError(f"unknown priorities {unknown}: use P1, P2, P3 or P4")
        return priorities


class HandoffSettings(_Frozen):
    queues: Mapping[str, QueueSettings] = Field(default_factory=dict)
    routes: tuple[RouteSettings, ...] = ()
    default_queue: str | None = None
    # Standard Webhooks' schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then a dead letter.
    retry_schedule_seconds: tuple[float, ...] = SCHEDULE
    # Where level 2 posts its events back, as level 2 reaches this server (behind a proxy, say so).
    events_url: str | None = None
    event_tolerance_seconds: int = Field(300, ge=10, le=3600)

    @model_validator(mode="after")
    def _queues_exist(self) -> HandoffSettings:
        names = set(self.queues)
        for route in self.routes:
            if route.queue not in names:
                raise ValueError(f"route to unknown queue {route.queue!r}; queues: {sorted(names) or 'none'}")
        if self.default_queue is not None and self.default_queue not in names:
            raise ValueError(f"default_queue {self.default_queue!r} is not one of the queues {sorted(names)}")
        if (
            self.queues
            and self.default_queue is None
            and not any(
                not (r.categories or r.priorities or r.languages or r.business_hours is not None)
                for r in self.routes
            )
        ):
            raise ValueError("set default_queue: a ticket no route matches must still go somewhere")
        if not self.retry_schedule_seconds or any(s <= 0 for s in self.retry_schedule_seconds):
            raise ValueError("retry_schedule_seconds needs at least one positive delay")
        return self
