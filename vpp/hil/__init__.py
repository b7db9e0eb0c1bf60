"""Hardware-in-the-loop test harness: ``vpp hil run PLAN.yaml`` (docs/hil.md).

A plan names a target and its cases; each case plays a frequency profile through a real
C37.118 PMU server into the target, records every frame, evaluates a procedure's
criteria on the record and writes COMTRADE, CSV, an HTML report and JUnit XML.

- :mod:`vpp.hil.plan`: the plan and procedure models and their loading;
- :mod:`vpp.hil.profiles`: frequency profiles as a PMU's frequency source;
- :mod:`vpp.hil.runner`: one case in real time against the simulated target;
- :mod:`vpp.hil.criteria`: pass or fail per criterion from a case's record;
- :mod:`vpp.hil.agc_plan`, :mod:`vpp.hil.agc_target`, :mod:`vpp.hil.agc_criteria`: the
  AGC (secondary reserve) procedure: its plan models, the campus in the loop as its
  target, its criteria;
- :mod:`vpp.hil.comtrade`: COMTRADE (IEEE C37.111-1999) export and import;
- :mod:`vpp.hil.report`: CSV, HTML and JUnit outputs;
- :mod:`vpp.hil.cli`: the ``vpp hil`` command.
"""
