"""Protocol layer: register maps as data, the base protocol class, the protocol factory,
the resource communicator, the Modbus TCP driver and the C37.118 transports."""
