"""Protocol layer: register maps and the device drivers built on them."""
