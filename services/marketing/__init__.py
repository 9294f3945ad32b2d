"""Zero-contact marketing: profiles, segments, campaigns, triggers, studios (issue 9)."""
