"""Close a user's sockets (4003) when they lose access. Filled in by the live-channel work."""
