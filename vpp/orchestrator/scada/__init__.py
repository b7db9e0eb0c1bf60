"""SCADA integration: IEC 60870-5-104 and DNP3 outstations serving the plant's points
to the load despatch centre and taking its commands (docs/scada.md)."""
