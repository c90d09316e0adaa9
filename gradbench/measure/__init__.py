"""One module per thing measured. Each measures one step of one model and knows nothing of sweeps or files."""
