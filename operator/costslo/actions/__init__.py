"""What the operator does with a verdict: status, annotations and events (rollout gate and scaling later)."""
