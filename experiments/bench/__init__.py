"""Speed benchmarks that write CSV under results/ (never timed tests)."""
