"""Identity: customers and enterprises, KYC/KYB, multi-factor authentication and tokens.

Every zero-contact journey starts here: a party is registered with validated identity data,
raised through KYC levels with an audit trail, authenticated with one or two factors, and
handed signed tokens (``/.well-known/jwks.json``) that the other services verify with
:mod:`zerocontact.platform.auth`.
"""
