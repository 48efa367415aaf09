"""SLA deadlines: a number of minutes after opening, counted in business hours (in the desk's
timezone, skipping weekends and holidays) or around the clock, as each priority says."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from triage.config import BusinessHours, TriageSettings


def in_business_hours(moment: datetime, settings: TriageSettings) -> bool:
    hours = settings.business_hours
    local = moment.astimezone(ZoneInfo(hours.timezone))
    return _working_day(local, hours) and hours.start <= local.time().replace(tzinfo=None) < hours.end


def _working_day(local: datetime, hours: BusinessHours) -> bool:
    return local.weekday() in hours.days and local.date() not in hours.holidays


def add_business_minutes(start: datetime, minutes: float, hours: BusinessHours) -> datetime:
    """The moment `minutes` of business time after `start` (an aware datetime)."""
    zone = ZoneInfo(hours.timezone)
    local = start.astimezone(zone)
    left = timedelta(minutes=minutes)
    for _ in range(3660):  # at most ten years of days: a configuration with no working day stops here
        day = local.date()
        opens = datetime.combine(day, hours.start, zone)
        closes = datetime.combine(day, hours.end, zone)
        if _working_day(local, hours) and local < closes:
            begin = max(local, opens)
            if begin + left <= closes:
                return (begin + left).astimezone(start.tzinfo)
            left -= closes - begin
        # Next day's opening, built from the calendar date so DST changes are respected.
        local = datetime.combine(day + timedelta(days=1), hours.start, zone)
    raise ValueError("no business hours found: check triage.business_hours")


def deadlines(opened_at: datetime, priority: str, settings: TriageSettings) -> tuple[datetime, datetime]:
    """(first response due, resolution due) of a ticket opened at `opened_at`."""
    sla = settings.sla[priority]
    if not sla.business_hours:
        return (
            opened_at + timedelta(minutes=sla.first_response_minutes),
            opened_at + timedelta(minutes=sla.resolution_minutes),
        )
    hours = settings.business_hours
    return (
        add_business_minutes(opened_at, sla.first_response_minutes, hours),
        add_business_minutes(opened_at, sla.resolution_minutes, hours),
    )


def business_minutes_between(a: datetime, b: datetime, settings: TriageSettings) -> float:
    """Business minutes from a to b (0 when b is not after a)."""
    hours = settings.business_hours
    zone = ZoneInfo(hours.timezone)
    local, end = a.astimezone(zone), b.astimezone(zone)
    total = 0.0
    while local < end:
        day = local.date()
        opens = datetime.combine(day, hours.start, zone)
        closes = datetime.combine(day, hours.end, zone)
        if _working_day(local, hours):
            begin, finish = max(local, opens), min(end, closes)
            if finish > begin:
                total += (finish - begin).total_seconds() / 60
        local = datetime.combine(day + timedelta(days=1), time(0, 0), zone)
    return total
