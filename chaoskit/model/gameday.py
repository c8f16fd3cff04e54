"""Game-day plans: experiments run in order on a schedule (a cron expression in a time zone),
only inside allowed windows and never on blackout dates, stopping at the first deviation if
asked, with a webhook told how it went. The time window type is shared with site policies."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from ._base import Clock, Date, Model, Name, Version, beyond_schema

__all__ = ["Blackout", "Day", "GameDayPlan", "Notify", "Schedule", "TimeWindow", "time_zone"]

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Ending = Literal["finish", "deviation", "abort", "error"]
_ENDINGS: tuple[Ending, ...] = ("finish", "deviation", "abort", "error")


def time_zone(value: str) -> str:
    """``value`` if it is an IANA time zone name; else a ValueError saying what to write."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a path
        raise beyond_schema(
            f"unknown time zone '{value}': use an IANA name such as 'Europe/Berlin'"
        ) from None
    return value


class TimeWindow(Model):
    """When experiments may run: days of the week and a daily span in a time zone."""

    days: list[Day] = Field(default_factory=lambda: list(_DAYS), min_length=1)
    start: Clock = time(0, 0)
    """Start of the span, ``HH:MM``."""
    end: Clock = time(23, 59, 59)
    """End of the span, ``HH:MM``; an end before the start spans midnight."""
    timezone: str = "UTC"
    """An IANA time zone name, e.g. ``Europe/Berlin``."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)

    def contains(self, moment: datetime) -> bool:
        """True if ``moment`` (timezone-aware) falls inside the window."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        now, day = local.time(), _DAYS[local.weekday()]
        if self.start <= self.end:
            return day in self.days and self.start <= now <= self.end
        if now >= self.start:  # spans midnight: the evening part belongs to today
            return day in self.days
        yesterday = _DAYS[(local.weekday() - 1) % 7]
        return yesterday in self.days and now <= self.end


class Schedule(Model):
    """When the plan runs by itself (``chaoskit gameday schedule``)."""

    cron: str
    """A five-field cron expression, e.g. ``0 10 * * tue`` (10:00 every Tuesday)."""
    timezone: str = "UTC"
    """The IANA time zone the expression is read in, e.g. ``Europe/Berlin``."""

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return time_zone(value)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from cronsim import CronSim, CronSimError  # noqa: PLC0415

        try:
            CronSim(value, datetime(2000, 1, 1))
        except CronSimError as error:
            raise beyond_schema(
                f"'{value}' is not a cron expression ({error}): five fields, minute hour "
                "day-of-month month day-of-week, e.g. '0 10 * * tue'"
            ) from None
        return value


class Blackout(Model):
    """Dates on which the plan never runs (in the plan's time zone), e.g. a release freeze."""

    start: Date
    end: Date | None = None
    """Last blacked-out date (default: ``start``, one day)."""
    reason: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end is not None and self.end < self.start:
            raise beyond_schema(f"the blackout ends ({self.end}) before it starts ({self.start})")
        return self

    def covers(self, day: date) -> bool:
        """True if ``day`` is blacked out."""
        return self.start <= day <= (self.end or self.start)


class Notify(Model):
    """A webhook told how the game day went (an HTTP POST of JSON)."""

    url: str = Field(pattern=r"^https?://")
    on: list[Ending] = Field(default_factory=lambda: list(_ENDINGS))
    """Which endings to tell: every one by default."""


class GameDayPlan(Model):
    """A game day: experiment files run in order, on a schedule, within windows."""

    version: Version = 1
    name: Name
    description: str | None = None
    experiments: list[str] = Field(min_length=1)
    """Experiment files, relative to the plan file."""
    schedule: Schedule | None = None
    timezone: str | None = None
    """The time zone blackout dates are read in (default: the schedule's, else UTC)."""
    windows: list[TimeWindow] = Field(default_factory=list)
    """When the plan may run; none: any time."""
    blackouts: list[Blackout] = Field(default_factory=list)
    stop_on_deviation: bool = True
    """Stop after the first experiment that does not hold (deviated, aborted or failed)."""
    notify: Notify | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        return None if value is None else time_zone(value)

    def zone(self) -> ZoneInfo:
        """The plan's time zone: its own, else its schedule's, else UTC."""
        return ZoneInfo(self.timezone or (self.schedule.timezone if self.schedule else "UTC"))

    def refusals(self, moment: datetime) -> list[str]:
        """Why the plan may not run at ``moment`` (timezone-aware); empty if it may."""
        found = []
        if self.windows and not any(w.contains(moment) for w in self.windows):
            found.append(f"{moment.isoformat(timespec='minutes')} is outside every allowed window")
        day = moment.astimezone(self.zone()).date()
        for blackout in self.blackouts:
            if blackout.covers(day):
                why = f" ({blackout.reason})" if blackout.reason else ""
                found.append(f"{day} is a blackout date{why}")
        return found
