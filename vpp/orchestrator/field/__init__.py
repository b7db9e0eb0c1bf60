"""The field controller process: per-unit pipelines fed by the PMU stream, setpoints
to the inverters."""
