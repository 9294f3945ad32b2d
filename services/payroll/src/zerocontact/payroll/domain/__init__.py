"""The payroll domain, pure: cards, batches, payslips, tax withholding, sweep. No I/O here."""
