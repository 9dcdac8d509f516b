"""A small object model for the libvirt XML the panel writes and reads (never string formatting)."""
