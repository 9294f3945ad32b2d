"""zerocontact.signals: see proto/zerocontact/signals."""
