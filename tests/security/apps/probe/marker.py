"""What the probe reports as the code it ran: a test edits caches to change it."""

VALUE = "as built"
