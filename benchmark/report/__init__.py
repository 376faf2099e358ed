"""Tables and figures: pure functions of the files cells leave behind."""
