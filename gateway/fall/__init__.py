"""Edge fall detection for wearables: features, the streaming detector, training and scoring."""
