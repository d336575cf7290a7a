"""Days in the world: bodies, devices, incidents, transports, ground truth."""
