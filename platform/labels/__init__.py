"""Printable QR labels: bed codes for a floor, resident cards (一床一码, 一人一码)."""
