"""Speed benchmarks: scripts that print figures (never timed tests). ``make bench`` runs them all."""
