"""Commissioning a deployment: ``vpp bench --commission`` measures on the target what
the site depends on (per-frame pipeline, frame to setpoint through the real drivers,
ticker lateness, memory and start-up of each process), checks the real-time settings,
compares each figure with the site's requirements and writes a JSON record
(docs/deploy.md). Everything it runs ships in the package."""
