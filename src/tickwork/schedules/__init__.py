"""Schedules: functions of time that give the next planned run (``next_after``-style)."""

from tickwork.schedules.cron import CronExpression

__all__ = ["CronExpression"]
