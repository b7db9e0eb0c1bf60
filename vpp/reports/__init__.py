"""Answers and reports from a site's history (the SQLite file ``vpp run`` writes).

- :mod:`vpp.reports.query`: :class:`~vpp.reports.query.HistoryReader`, read-only
  questions answered as plain rows (events, a unit's rows, fleet totals, commands);
- :mod:`vpp.reports.tables`: those rows as a text table or CSV, and CSV read back;
- :mod:`vpp.reports.response`: the response during an event against the expected droop;
- :mod:`vpp.reports.svg` and :mod:`vpp.reports.event_report`: the HTML event report;
- :mod:`vpp.reports.cli`: ``vpp history`` and ``vpp report``.

See docs/history.md.
"""
