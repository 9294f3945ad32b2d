"""zerocontact.common: see proto/zerocontact/common."""
