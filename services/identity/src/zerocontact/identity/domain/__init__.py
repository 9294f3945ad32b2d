"""The identity domain: parties, KYC/KYB levels and authentication rules. No I/O here."""
