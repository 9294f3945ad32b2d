"""Payroll: employer wallets, top-up, salary batches to any bank card, payslips, gig payouts, sweep."""
