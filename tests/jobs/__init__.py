"""Tests of the jobs layer: schedules, status, drives, run-on-connect."""
