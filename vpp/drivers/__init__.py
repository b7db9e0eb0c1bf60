"""Protocol layer: register maps as data, and the transports to field devices
(for now the C37.118 PDC client and UDP receiver)."""
