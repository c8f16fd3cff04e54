"""Safety: the site policy (checked before anything is touched), later the valve and watchdog."""
