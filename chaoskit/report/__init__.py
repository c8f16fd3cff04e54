"""What people read: the console during a run (and, as they land, the report files)."""
