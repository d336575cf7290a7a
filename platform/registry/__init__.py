"""The registry: institutions, places, beds, residents, devices, gateways (一院一码, 一床一码, 一人一码)."""
