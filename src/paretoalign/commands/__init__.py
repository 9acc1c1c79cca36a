"""One module per paretoalign command."""
