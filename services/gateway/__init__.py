"""The partner gateway (``zerocontact.gateway``): gRPC over mTLS in front of the services."""
