"""Southbound sources: where device payloads come in (the home's MQTT broker, HTTP posts)."""
