"""zerocontact.loan: see proto/zerocontact/loan."""
