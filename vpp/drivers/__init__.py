"""Protocol layer: transports to field devices (for now the C37.118 PDC client)."""
