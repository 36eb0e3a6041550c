"""Tests of the cron engine (tickwork.schedules.cron)."""
