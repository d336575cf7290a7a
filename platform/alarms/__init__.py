"""Alarms: raised from device events, acknowledged, attended and resolved by staff."""
