"""Using what a grid trained: a finished cell's model rebuilt (restore), run on new images (predict),
or written in its backbone's own checkpoint format (export)."""
