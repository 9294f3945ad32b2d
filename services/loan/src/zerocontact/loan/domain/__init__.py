"""The loan domain: pure rules, no I/O (schedules, products, decisions, loans, co-lending)."""
